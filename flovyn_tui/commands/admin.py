"""`flovyn tenant ...`, `flovyn api-key create` and `flovyn worker-token create`."""

from __future__ import annotations

from typing import Any

import click
from rich.text import Text

from flovyn_tui.commands.base import CONTEXT, options, run
from flovyn_tui.commands.common import emit, subcommand
from flovyn_tui.output import human_seconds, local_time, table
from flovyn_worker import Client


@click.group(context_settings=CONTEXT)
def tenant() -> None:
    """Tenants (creating and changing one takes the server's admin key)."""


def _tenant_table(t: dict[str, Any]) -> Any:
    keep = t["retentionSeconds"]
    return table(
        ("FIELD", "VALUE"),
        [
            ("id", t["id"]),
            ("name", t["name"]),
            ("slug", t["slug"]),
            ("tier", t["tier"]),
            ("region", t["region"] or "-"),
            ("retention", "server default" if keep is None else human_seconds(keep)),
            ("created", local_time(t["createdAt"])),
        ],
    )


@subcommand(tenant, "create")
@click.argument("slug")
@click.option("--name", help="Display name (default: the slug).")
@click.option("--tier", type=click.Choice(["FREE", "PRO", "ENTERPRISE"]), help="Default FREE.")
@click.option("--region")
@click.option(
    "--retention",
    type=click.IntRange(60),
    metavar="SECONDS",
    help="Keep finished executions this long.",
)
def tenant_create(
    slug: str, name: str | None, tier: str | None, region: str | None, retention: int | None
) -> None:
    """Create tenant SLUG (with the admin key).

    \b
    Example:
      flovyn tenant create acme --name "Acme Inc." --api-key "$(cat ~/.local/share/flovyn/admin.key)"
    """

    async def work(client: Client) -> None:
        created = await client.create_tenant(
            name or slug, slug, tier=tier, region=region, retention_seconds=retention
        )
        emit(created, lambda: _tenant_table(dict(created)))

    run(work, tenant=False)


@subcommand(tenant, "get")
@click.argument("slug", required=False)
def tenant_get(slug: str | None) -> None:
    """A tenant (by default the one chosen by --tenant).

    \b
    Example:
      flovyn tenant get acme
    """
    if slug:
        options().tenant = slug

    async def work(client: Client) -> None:
        found = await client.get_tenant()
        emit(found, lambda: _tenant_table(dict(found)))

    run(work)


@subcommand(tenant, "update")
@click.argument("slug")
@click.option(
    "--retention",
    metavar="SECONDS|default",
    required=True,
    help="Seconds (60 or more), or `default` for the server's.",
)
def tenant_update(slug: str, retention: str) -> None:
    """Change a tenant's settings (with the admin key).

    \b
    Example:
      flovyn tenant update acme --retention 2592000
    """
    if retention == "default":
        seconds: int | None = None
    elif retention.isdigit():
        seconds = int(retention)
    else:
        raise click.BadParameter("a number of seconds, or `default`", param_hint="--retention")

    async def work(client: Client) -> None:
        changed = await client.update_tenant(slug, retention_seconds=seconds)
        emit(changed, lambda: _tenant_table(dict(changed)))

    run(work, tenant=False)


@click.group("api-key", context_settings=CONTEXT)
def api_key() -> None:
    """API keys for a tenant's REST API."""


@subcommand(api_key, "create")
@click.option("--name", "display_name", default="cli", show_default=True, help="Display name.")
def api_key_create(display_name: str) -> None:
    """Create an API key for the tenant; it is shown this once.

    \b
    Example:
      flovyn api-key create --tenant acme --name ci --api-key "$ADMIN_KEY"
    """

    async def work(client: Client) -> None:
        made = await client.create_api_key(display_name)
        emit(
            made,
            lambda: Text.assemble(("API key ", "bold"), made["key"], ("  (shown once)", "dim")),
        )

    run(work)


@click.group("worker-token", context_settings=CONTEXT)
def worker_token() -> None:
    """Worker tokens: what a worker connects with."""


@subcommand(worker_token, "create")
@click.option("--name", "display_name", default="worker", show_default=True, help="Display name.")
def worker_token_create(display_name: str) -> None:
    """Create a worker token for the tenant; it is shown this once.

    \b
    Example:
      flovyn worker-token create --tenant acme --name billing-workers
    """

    async def work(client: Client) -> None:
        made = await client.create_worker_token(display_name)
        emit(
            made,
            lambda: Text.assemble(
                ("worker token ", "bold"), made["token"], ("  (shown once)", "dim")
            ),
        )

    run(work)


COMMANDS = [tenant, api_key, worker_token]
