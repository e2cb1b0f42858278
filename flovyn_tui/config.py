"""Where the `flovyn` command finds its server: flags, then FLOVYN_* variables, then a
profile of `~/.config/flovyn/config.toml` (`$XDG_CONFIG_HOME/flovyn/config.toml`).

    current = "local"

    [profiles.local]
    server = "http://127.0.0.1:8000"
    tenant = "acme"
    api-key = "flovyn_sk_..."

The file holds API keys, so it is written readable by its owner only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

DEFAULT_SERVER = "http://127.0.0.1:8000"
KEYS = ("server", "tenant", "api-key")
ENV = {"server": "FLOVYN_SERVER", "tenant": "FLOVYN_TENANT", "api-key": "FLOVYN_API_KEY"}
DEFAULT_PROFILE = "default"


class ConfigError(Exception):
    """A config file that cannot be read, or a profile that does not exist."""


def config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "flovyn" / "config.toml"


def load() -> dict[str, Any]:
    path = config_path()
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None


def save(config: dict[str, Any]) -> Path:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(config, f)
    temp.replace(path)  # whole or not at all
    return path


def profiles(config: dict[str, Any]) -> dict[str, dict[str, str]]:
    found = config.get("profiles", {})
    return found if isinstance(found, dict) else {}


def current_profile(config: dict[str, Any], chosen: str | None) -> str:
    """`--profile`, else FLOVYN_PROFILE, else the file's `current`, else "default"."""
    name = chosen or os.environ.get("FLOVYN_PROFILE") or config.get("current")
    return str(name) if name else DEFAULT_PROFILE


@dataclass(frozen=True)
class Connection:
    server: str
    tenant: str | None
    api_key: str | None
    profile: str
    explicit: bool = False  # the server came from a flag, a variable or a profile


def resolve(
    *, server: str | None, tenant: str | None, api_key: str | None, profile: str | None
) -> Connection:
    """Each setting from its flag, else its variable, else the profile, else a default.
    A profile named by flag or FLOVYN_PROFILE must exist."""
    config = load()
    name = current_profile(config, profile)
    values = profiles(config).get(name)
    if values is None:
        if profile or os.environ.get("FLOVYN_PROFILE"):
            known = ", ".join(sorted(profiles(config))) or "none yet"
            raise ConfigError(f"no profile {name!r} in {config_path()} (profiles: {known})")
        values = {}
    flags = {"server": server, "tenant": tenant, "api-key": api_key}

    def pick(key: str) -> str | None:
        value = flags[key] or os.environ.get(ENV[key]) or values.get(key)
        return str(value) if value else None

    server = pick("server")
    return Connection(
        server or DEFAULT_SERVER, pick("tenant"), pick("api-key"), name, explicit=bool(server)
    )
