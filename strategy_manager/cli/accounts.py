"""``strategy-manager accounts``: broker accounts, their sessions, strategies and net
positions; ``accounts halt`` and ``accounts resume``, the kill switch."""

from __future__ import annotations

import getpass
import socket

import click

from strategy_manager.cli.app import App, pass_app
from strategy_manager.cli.output import emit_json, paint_state, shown_time, table
from strategy_manager.core.account_view import AccountLine, overview
from strategy_manager.core.errors import QsmError
from strategy_manager.core.store import AccountHalt


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
@click.pass_context
def accounts(ctx: click.Context, app: App, as_json: bool) -> None:
    """Broker accounts: session, strategies and net positions per symbol.

    Positions are summed over each strategy's latest snapshot. 'accounts halt NAME'
    stops every strategy of an account at once, in every orchestrator, until
    'accounts resume NAME'.
    """
    if ctx.invoked_subcommand is not None:
        return
    lines = overview(app.settings, app.store(), app.registry)
    if as_json:
        emit_json([line.as_dict() for line in lines])
        return
    if not lines:
        click.echo("no accounts: define them in the 'accounts' setting, name them in documents")
        return
    for line in lines:
        for text in _lines(line, app.color):
            click.echo(text)


def _lines(line: AccountLine, color: bool) -> list[str]:
    where = "settings" if line.defined else "derived" if line.strategies else "not in the settings"
    head = f"{line.name}  engine {line.engine or '-'} ({where})  session {line.session or '-'}"
    out = [head]
    if line.halt is not None:
        halt = line.halt
        by = f" by {halt.by}" if halt.by else ""
        cancel = "; open orders cancelled" if halt.cancel_orders else ""
        reason = f": {halt.reason}" if halt.reason else ""
        out.append(f"  HALTED{by} {shown_time(halt.halted_at)}{reason}{cancel}")
    if line.session_error:
        out.append(f"  session: {line.session_error}")
    if line.strategies:
        rows = [[s.strategy_id, s.state, _positions(s.positions) or s.note or "-"] for s in line.strategies]
        lines = table(
            ["STRATEGY", "STATE", "POSITION"], rows, paint={1: lambda s, n: paint_state(s, n, color)}
        )
        out += ["  " + text for text in lines]
    else:
        out.append("  no strategies")
    net = _positions(line.positions)
    out.append(f"  net: {net or 'flat'}")
    return out


def _positions(positions: dict[str, float] | None) -> str:
    return ", ".join(f"{symbol} {quantity:g}" for symbol, quantity in sorted((positions or {}).items()))


def _known(app: App, name: str) -> AccountLine:
    lines = {line.name: line for line in overview(app.settings, app.store(create=True), app.registry)}
    if name not in lines:
        known = ", ".join(sorted(lines)) or "none"
        raise QsmError(
            f"account '{name}' is neither in the settings nor named by any strategy (accounts: {known})"
        )
    return lines[name]


@accounts.command()
@click.argument("name")
@click.option(
    "--cancel-orders",
    is_flag=True,
    help="Also cancel every open order of the account at the broker, and disconnect its session.",
)
@click.option("--reason", default="", help="Why, shown in status and in 'accounts'.")
@pass_app
def halt(app: App, name: str, cancel_orders: bool, reason: str) -> None:
    """Stop every strategy of account NAME at once, and keep them stopped.

    Every orchestrator sees the halt within its poll interval, also after a restart:
    no order of the account passes from then on, each strategy stops with a final
    snapshot, and none starts until 'accounts resume NAME'.
    """
    from strategy_manager.core.clock import SystemClock

    line = _known(app, name)
    record = AccountHalt(name, reason, cancel_orders, SystemClock().now(), by=_who())
    app.store().halt_account(record)
    count = len(line.strategies)
    strategies = "its strategy stops" if count == 1 else f"its {count} strategies stop"
    cancel = "; open orders are cancelled" if cancel_orders else ""
    click.echo(f"halted account {name}: {strategies}{cancel} ('accounts resume {name}' undoes it)")


@accounts.command()
@click.argument("name")
@pass_app
def resume(app: App, name: str) -> None:
    """Undo 'accounts halt NAME': its strategies may start again (from their snapshots)."""
    if app.store(create=True).resume_account(name):
        click.echo(f"resumed account {name}: its strategies start again as their schedules say")
    else:
        click.echo(f"account {name} was not halted")


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # no user name in a bare container
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def register(cli: click.Group) -> None:
    cli.add_command(accounts)


__all__ = ["accounts", "register"]
