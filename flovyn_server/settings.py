"""Server settings from flags, FLOVYN_* environment variables and defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "flovyn"


@dataclass
class Settings:
    """Everything the server needs to start; `from_env` fills it from FLOVYN_* variables."""

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = field(default_factory=default_data_dir)
    database: str | None = None  # sqlite:///path or postgresql://...; default: SQLite in data_dir
    admin_key: str | None = None
    max_body_bytes: int = 1024 * 1024
    # A worker silent this long is OFFLINE and loses what it held.
    liveness_timeout_ms: int = 30_000
    heartbeat_interval_ms: int = 5_000
    max_poll_timeout_ms: int = 60_000
    postgres_pool_size: int = 10
    # Streams: a `: keep-alive` comment this often, and the reconnect delay they suggest.
    stream_keepalive_s: float = 15.0
    stream_retry_ms: int = 2000
    # How long task progress reports, stream data and tenant-feed changes are kept for
    # streams to replay (histories, task attempts and logs live as long as executions).
    stream_retention_s: int = 7 * 24 * 3600
    # Finished executions are removed this long after they ended (None: kept forever);
    # a tenant's own retentionSeconds overrides it.
    execution_retention_s: int | None = None

    @property
    def database_url(self) -> str:
        if self.database:
            return self.database
        return f"sqlite:///{self.data_dir / 'flovyn.db'}"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: object) -> Settings:
        """Defaults, then FLOVYN_* variables, then explicit overrides that are not None."""
        env = dict(os.environ) if env is None else env
        s = cls()
        if v := env.get("FLOVYN_HOST"):
            s.host = v
        if v := env.get("FLOVYN_PORT"):
            s.port = int(v)
        if v := env.get("FLOVYN_DATA_DIR"):
            s.data_dir = Path(v)
        if v := env.get("FLOVYN_DATABASE") or env.get("FLOVYN_DATABASE_URL"):
            s.database = v
        if v := env.get("FLOVYN_ADMIN_KEY"):
            s.admin_key = v
        if v := env.get("FLOVYN_MAX_BODY_BYTES"):
            s.max_body_bytes = int(v)
        if v := env.get("FLOVYN_LIVENESS_TIMEOUT_MS"):
            s.liveness_timeout_ms = int(v)
        if v := env.get("FLOVYN_HEARTBEAT_INTERVAL_MS"):
            s.heartbeat_interval_ms = int(v)
        if v := env.get("FLOVYN_POSTGRES_POOL_SIZE"):
            s.postgres_pool_size = int(v)
        if v := env.get("FLOVYN_STREAM_KEEPALIVE_S"):
            s.stream_keepalive_s = float(v)
        if v := env.get("FLOVYN_STREAM_RETENTION_S"):
            s.stream_retention_s = int(v)
        if v := env.get("FLOVYN_EXECUTION_RETENTION_S"):
            s.execution_retention_s = int(v)
        for key, value in overrides.items():
            if value is not None:
                if key == "data_dir":
                    value = Path(str(value))
                setattr(s, key, value)
        return s
