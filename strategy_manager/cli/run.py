"""``run``, ``status`` and ``schedule``: the main job and the views of it."""

from __future__ import annotations

import os
import re
import signal
from collections import Counter
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import click

from strategy_manager.cli.app import App, emit_json, pass_app
from strategy_manager.core.clock import Clock, SimClock, SystemClock
from strategy_manager.core.errors import QsmError

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``2d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 6h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_instant(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO time such as 2026-11-24T09:00+08:00") from None
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs a UTC offset, e.g. 2026-11-24T09:00+08:00")
    return value


def make_clock(kind: str, start: str | None, speed: float) -> Clock:
    if kind == "sim":
        if not start:
            raise click.UsageError("--clock sim needs --start")
        return SimClock(parse_instant(start), speed)
    return SystemClock()


@click.command()
@click.option("--for", "duration", default=None, help="Stop after this much clock time (90s, 15m, 6h).")
@click.option(
    "--clock",
    "clock_kind",
    type=click.Choice(["system", "sim"]),
    default="system",
    help="sim: a simulated clock from --start running --speed times faster.",
)
@click.option("--start", default=None, help="Simulated start, ISO with offset: 2026-11-24T09:00+08:00.")
@click.option("--speed", type=float, default=60.0, show_default=True, help="Simulated clock speed.")
@click.option("--poll-interval", type=float, default=None, help="Seconds between store polls.")
@pass_app
def run(
    app: App,
    duration: str | None,
    clock_kind: str,
    start: str | None,
    speed: float,
    poll_interval: float | None,
) -> None:
    """Run the orchestrator: start, pause and stop strategies by their schedule."""
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator

    settings = app.settings
    if poll_interval is not None:
        settings = attrs.evolve(settings, poll_interval=poll_interval)
    clock = make_clock(clock_kind, start, speed)
    seconds = parse_duration(duration) if duration else None

    # Simulated runs speak in the time zone their start was given in.
    zone = parse_instant(start).tzinfo if clock_kind == "sim" and start else None

    def show(kind: str, ident: str, detail: str) -> None:
        stamp = clock.now().astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")
        click.echo(f"{stamp}  {kind:<9} {ident}  {detail}")

    store = app.store()
    orchestrator = MultiStrategyOrchestrator(settings, store, app.registry, clock, on_event=show)
    click.echo(
        f"orchestrator {orchestrator.owner}: store {store.kind} at {store.location}; "
        f"clock {clock_kind}" + (f" from {start} at x{speed:g}" if clock_kind == "sim" else "")
    )

    def on_signal(signum: int, _frame: Any) -> None:
        if orchestrator._stopping.is_set():
            click.echo("second signal: exiting now", err=True)
            os._exit(130)
        click.echo(f"{signal.Signals(signum).name}: snapshotting and stopping every worker...", err=True)
        orchestrator.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    orchestrator.run(seconds)
    summary(orchestrator.list_workers())
    if orchestrator.fatal is not None:
        click.echo(f"error: {orchestrator.fatal}", err=True)
    _exit_despite_leaked_threads(1 if orchestrator.fatal is not None else 0)
    if orchestrator.fatal is not None:
        raise SystemExit(1)


def _exit_despite_leaked_threads(code: int) -> None:
    """An engine that leaked a non-daemon thread must not keep the process alive
    after the shutdown: name the threads and exit now."""
    import sys
    import threading

    leaked = [
        t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon and t.is_alive()
    ]
    if not leaked:
        return
    names = ", ".join(sorted(t.name for t in leaked))
    click.echo(f"warning: exiting despite threads an engine left running: {names}", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def summary(workers: list[dict[str, Any]]) -> None:
    counts = Counter(w["state"] for w in workers)
    click.echo(
        f"summary: {len(workers)} strategies; "
        + ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    )
    for w in workers:
        problem = f"  ({w['last_error']})" if w.get("last_error") else ""
        click.echo(
            f"  {w['strategy_id']:<40} {w['state']:<9} starts={w['starts']} restarts={w['restarts']}{problem}"
        )


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def status(app: App, as_json: bool) -> None:
    """Every strategy's runtime state, as the running orchestrator last wrote it."""
    records = sorted(app.store().read_status(), key=lambda r: r.strategy_id)
    if as_json:
        emit_json([attrs.asdict(r) for r in records])
        return
    if not records:
        click.echo("no status yet: start the orchestrator with 'strategy-manager run'")
        return
    click.echo(f"{'STRATEGY':<36} {'STATE':<9} {'ENGINE':<10} {'RESTARTS':>8}  {'HEARTBEAT':<20} NEXT")
    for r in records:
        beat = r.heartbeat.astimezone().strftime("%Y-%m-%d %H:%M:%S") if r.heartbeat else "-"
        nxt = (
            f"{r.next_transition} {r.next_transition_at.astimezone().strftime('%m-%d %H:%M')}"
            if r.next_transition and r.next_transition_at
            else "-"
        )
        click.echo(
            f"{r.strategy_id:<36} {r.state:<9} {r.engine or '-':<10} {r.restarts:>8}  {beat:<20} {nxt}"
        )
        if r.last_error:
            click.echo(f"    error: {r.last_error}")


@click.command()
@click.argument("ident", required=False)
@click.option("--next", "count", type=int, default=6, show_default=True, help="Transitions to show.")
@click.option("--at", "at", default=None, help="Preview from this ISO time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def schedule(app: App, ident: str | None, count: int, at: str | None, as_json: bool) -> None:
    """Preview each strategy's next transitions, in exchange and local time."""
    from strategy_manager.core.lifecycle import LifecycleManager
    from strategy_manager.core.spec import parse_strategy

    lifecycle = LifecycleManager(app.settings)
    now = parse_instant(at) if at else SystemClock().now()
    documents = app.store().list_strategies()
    if ident is not None:
        documents = [d for d in documents if _matches(d, ident)]
        if not documents:
            raise QsmError(f"strategy '{ident}' not found")
    out: list[dict[str, Any]] = []
    for document in documents:
        try:
            spec = parse_strategy(document)
        except QsmError as exc:
            out.append({"strategy_id": str(document.get("_id")), "error": str(exc)})
            continue
        policy = lifecycle.policy_for(spec)
        tz = ZoneInfo(str(lifecycle.calendars.calendar(policy.calendar).tz))
        out.append(
            {
                "strategy_id": spec.id,
                "calendar": policy.calendar,
                "mode": policy.mode,
                "lunch_break": policy.lunch_break,
                "transitions": _transitions(lifecycle, policy, now, count, tz),
            }
        )
    if as_json:
        emit_json(out)
        return
    for item in out:
        if "error" in item:
            click.echo(f"{item['strategy_id']}: {item['error']}")
            continue
        click.echo(
            f"{item['strategy_id']}  calendar {item['calendar']}, mode {item['mode']}, "
            f"lunch break {item['lunch_break']}"
        )
        for t in item["transitions"]:
            click.echo(f"  {t['kind']:<6} {t['exchange_time']}  (local {t['local_time']})  {t['why']}")
        if not item["transitions"]:
            click.echo("  runs continuously" if item["mode"] == "always" else "  nothing scheduled")


def _transitions(
    lifecycle: Any, policy: Any, now: datetime, count: int, tz: ZoneInfo
) -> list[dict[str, str]]:
    if policy.mode == "always":
        return []
    result: list[dict[str, str]] = []
    for w in lifecycle.calendars.windows(policy, now):
        for when, kind, why in (
            (w.start, "start", w.starts_at),
            (w.end, "pause" if w.ends_at == "break" else "stop", w.ends_at),
        ):
            if when > now and len(result) < count:
                result.append(
                    {
                        "kind": kind,
                        "why": why + (" (assumed regular hours)" if w.assumed else ""),
                        "utc": when.astimezone(ZoneInfo("UTC")).isoformat(),
                        "exchange_time": when.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z"),
                        "local_time": when.astimezone().strftime("%Y-%m-%d %H:%M %Z"),
                    }
                )
    return result


def _matches(document: dict[str, Any], ident: str) -> bool:
    natural = ":".join(str(document.get(k)) for k in ("user_id", "symbol", "strategy_key"))
    return ident in (natural, str(document.get("_id")))


def register(cli: click.Group) -> None:
    cli.add_command(run)
    cli.add_command(status)
    cli.add_command(schedule)
