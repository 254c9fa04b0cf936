"""``hosts``: the orchestrator processes the store knows of, from their heartbeat
records; and how ``status`` shows where each strategy runs."""

from __future__ import annotations

import attrs
import click

from strategy_manager.cli.app import App, pass_app
from strategy_manager.cli.output import emit_json, shown_time, table
from strategy_manager.core.clock import SystemClock
from strategy_manager.core.store import OwnerRecord


def shown_place(host: str | None, pid: int | None, node: str | None) -> str:
    """Where a strategy runs, for ``status``: host:pid, and the Ray node if any."""
    if host is None:
        return "-"
    return f"{host}:{pid} node {node[:12]}" if node else f"{host}:{pid}"


def host_state(owner: OwnerRecord, lease_seconds: float, now: float) -> str:
    """stopped (a clean exit), silent (no renewal for a lease: frozen, cut off or gone),
    or alive."""
    if owner.stopped:
        return "stopped"
    if owner.heartbeat is None or now - owner.heartbeat.timestamp() >= lease_seconds:
        return "silent"
    return "alive"


@click.command()
@click.option("--all", "show_all", is_flag=True, help="Include processes that stopped cleanly.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def hosts(app: App, show_all: bool, as_json: bool) -> None:
    """The orchestrator processes (Ray hosts too) by their heartbeats: host, pid, Ray
    node, strategies held, last renewal, and whether they are alive, silent (no renewal
    for a lease: frozen, cut off or gone) or stopped."""
    now = SystemClock().now().timestamp()
    lease = app.settings.lease_seconds
    owners = [o for o in app.store().read_owners() if show_all or not o.stopped]
    owners.sort(key=lambda o: (o.stopped, -(o.heartbeat.timestamp() if o.heartbeat else 0.0), o.owner))
    if as_json:
        emit_json(
            [
                attrs.asdict(o, recurse=False)
                | {"node": o.details.get("ray_node"), "state": host_state(o, lease, now)}
                for o in owners
            ]
        )
        return
    if not owners:
        click.echo(
            "no orchestrator has run against this store" + ("" if show_all else " (--all: stopped ones too)")
        )
        return
    rows = [
        [
            o.owner,
            (o.details.get("ray_node") or "-")[:12],
            o.leases,
            shown_time(o.heartbeat),
            f"{now - o.heartbeat.timestamp():.1f}s" if o.heartbeat else "-",
            host_state(o, lease, now),
        ]
        for o in owners
    ]
    for line in table(["OWNER", "NODE", "STRATEGIES", "LAST RENEWAL", "AGO", "STATE"], rows, right=(2, 4)):
        click.echo(line)


def register(cli: click.Group) -> None:
    cli.add_command(hosts)
