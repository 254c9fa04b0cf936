"""``run``, ``status`` and ``schedule``: the main job and the views of it."""

from __future__ import annotations

import logging
import os
import re
import signal
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs
import click

from strategy_manager.cli.app import App, pass_app, quiet_option
from strategy_manager.cli.completion import strategy_ids
from strategy_manager.cli.logs import log_file_set
from strategy_manager.cli.output import (
    ATTENTION,
    emit_json,
    emit_json_line,
    paint_state,
    shown_time,
    table,
)
from strategy_manager.core.clock import Clock, SimClock, SystemClock
from strategy_manager.core.errors import QsmError

#: How many strategies needing attention a run's summary names; status lists them all.
SUMMARY_ATTENTION_LINES = 20

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``6h``, ``2d`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 6h")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def parse_instant(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not an ISO time such as 2026-11-24T09:00+08:00", param_hint=option
        ) from None
    if value.tzinfo is None:
        raise click.BadParameter(
            f"{text!r} needs a UTC offset, e.g. 2026-11-24T09:00+08:00", param_hint=option
        )
    return value


def make_clock(kind: str, start: str | None, speed: float) -> Clock:
    if kind == "sim":
        if not start:
            raise click.UsageError("--clock sim needs --start")
        return SimClock(parse_instant(start, "--start"), speed)
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
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    default=60.0,
    show_default=True,
    help="Simulated clock speed.",
)
@click.option(
    "--poll-interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds between store polls.",
)
@click.option(
    "--events",
    "events_format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Transitions as text lines, or JSON lines (one object per event, then the summary).",
)
@click.option(
    "--http",
    "http_listen",
    default=None,
    metavar="HOST:PORT",
    help="Serve the dashboard, the HTTP API and /metrics here (setting http_listen; needs the web extra).",
)
@click.option(
    "--executor",
    type=click.Choice(["threads", "ray"]),
    default=None,
    help="threads: this process runs every strategy (the default); ray: spread over a Ray cluster.",
)
@click.option("--ray-address", default=None, help="With --executor ray: the cluster, host:port or auto.")
@quiet_option
@pass_app
def run(
    app: App,
    duration: str | None,
    clock_kind: str,
    start: str | None,
    speed: float,
    poll_interval: float | None,
    events_format: str,
    executor: str | None,
    ray_address: str | None,
    http_listen: str | None,
) -> None:
    """Run the orchestrator: start, pause and stop strategies by their schedule.

    Prints each transition as it happens, then a summary: the count of strategies in
    each state and those needing attention ('status' lists them all). -q prints
    neither; --events json prints both as JSON lines.

    With --http (or the setting http_listen) it also serves a live dashboard at /,
    a JSON API under /api, Prometheus metrics at /metrics and the probes /healthz and
    /readyz; it binds to 127.0.0.1 unless told otherwise.
    """
    from strategy_manager.core.orchestrator import MultiStrategyOrchestrator

    settings = app.settings
    if poll_interval is not None:
        settings = attrs.evolve(settings, poll_interval=poll_interval)
    if executor is not None:
        settings = attrs.evolve(settings, executor=executor)
    if ray_address is not None:
        settings = attrs.evolve(settings, ray_address=ray_address)
    listen = http_listen or settings.http_listen
    if settings.executor == "ray":
        if clock_kind == "sim":
            raise click.UsageError("--clock sim runs in one process; it needs --executor threads")
        if listen:
            raise click.UsageError(
                "--http serves the orchestrator of this process; with --executor ray the strategies run "
                "in the hosts, which serve no HTTP: unset http_listen, or use --executor threads"
            )
        if not settings.ray_address:
            raise click.UsageError(
                "executor ray needs the cluster's address: --ray-address host:port "
                "(or QSM_RAY_ADDRESS; 'auto' for the cluster this machine belongs to)"
            )
    clock = make_clock(clock_kind, start, speed)
    seconds = parse_duration(duration) if duration else None
    as_json = events_format == "json"

    # Simulated runs speak in the time zone their start was given in.
    zone = parse_instant(start, "--start").tzinfo if clock_kind == "sim" and start else None

    def show(kind: str, ident: str, detail: str) -> None:
        if as_json:
            emit_json_line({"time": clock.now(), "event": kind, "strategy_id": ident, "detail": detail})
        elif not app.quiet:
            click.echo(f"{shown_time(clock.now(), zone)}  {kind:<9} {ident}  {detail}")

    events_log = logging.getLogger("strategy_manager.events")
    if not app.quiet and not log_file_set():
        # The events are printed above; the same records on stderr would say it twice.
        events_log.disabled = True
        click.get_current_context().call_on_close(lambda: setattr(events_log, "disabled", False))
    store = app.store(create=True)
    if settings.executor == "ray":
        _run_on_ray(app, settings, store, seconds, show, as_json)
        return
    web = _web_server(app, settings, listen, clock) if listen else None
    sink = show
    if web is not None:
        from strategy_manager.core.telemetry import TimedStore

        store = TimedStore(store, web.metrics)

        def sink(kind: str, ident: str, detail: str) -> None:
            show(kind, ident, detail)
            web.on_event(kind, ident, detail)

    orchestrator = MultiStrategyOrchestrator(
        settings, store, app.registry, clock, on_event=sink, telemetry=web.metrics if web else None
    )
    if web is not None:
        web.serve(orchestrator, store)
    sim = f" from {start} at x{speed:g}" if clock_kind == "sim" else ""
    if as_json:
        emit_json_line(
            {
                "time": clock.now(),
                "event": "begin",
                "owner": orchestrator.owner,
                "store": f"{store.kind} at {store.location}",
                "clock": clock_kind + sim,
            }
        )
    elif not app.quiet:
        where = f"store {store.kind} at {store.location}"
        click.echo(f"orchestrator {orchestrator.owner}: {where}; clock {clock_kind}{sim}")
    if web is not None:
        if as_json:
            emit_json_line({"time": clock.now(), "event": "http", "url": web.url})
        elif not app.quiet:
            click.echo(f"http: dashboard {web.url}/  api {web.url}/api  metrics {web.url}/metrics")

    _stop_on_signals(
        lambda: orchestrator._stopping.is_set(),
        orchestrator.request_stop,
        "snapshotting and stopping every worker",
    )
    try:
        orchestrator.run(seconds)
    finally:
        if web is not None:
            web.stop()
    workers = orchestrator.list_workers()
    if as_json:
        emit_json_line({"time": clock.now(), "event": "summary", **summarize(workers)})
    elif not app.quiet:
        for line in summary_lines(workers, app.color):
            click.echo(line)
    if orchestrator.fatal is not None:
        click.echo(f"error: {orchestrator.fatal}", err=True)
    _exit_despite_leaked_threads(1 if orchestrator.fatal is not None else 0)
    if orchestrator.fatal is not None:
        raise SystemExit(1)


def _run_on_ray(app: App, settings: Any, store: Any, seconds: float | None, show: Any, as_json: bool) -> None:
    """The driver of a Ray fleet: hosts on the cluster's nodes run the strategies."""
    from strategy_manager.scaleout.ray_driver import RayDriver

    driver = RayDriver(
        settings,
        store,
        settings.ray_address,
        on_event=show,
        log_level=logging.getLogger().getEffectiveLevel(),
        log_to_driver=not app.quiet,
    )
    where = f"{store.kind} at {store.location}"
    if as_json:
        begin = {"event": "begin", "executor": "ray", "cluster": settings.ray_address, "store": where}
        emit_json_line({"time": SystemClock().now(), **begin})
    elif not app.quiet:
        click.echo(f"ray driver: cluster {settings.ray_address}; store {where}")

    _stop_on_signals(lambda: driver.stopping, driver.request_stop, "stopping every host")
    driver.run(seconds)
    workers = [attrs.asdict(r) for r in store.read_status()]
    if as_json:
        emit_json_line({"time": SystemClock().now(), "event": "summary", **summarize(workers)})
    elif not app.quiet:
        for line in summary_lines(workers, app.color):
            click.echo(line)


def _stop_on_signals(stopping: Callable[[], bool], request_stop: Callable[[], None], what: str) -> None:
    """SIGTERM and SIGINT ask for an orderly stop (``what`` it does); a second one exits at once."""

    def on_signal(signum: int, _frame: Any) -> None:
        if stopping():
            click.echo("second signal: exiting now", err=True)
            os._exit(130)
        click.echo(f"{signal.Signals(signum).name}: {what}...", err=True)
        request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)


def _web_server(app: App, settings: Any, listen: str, clock: Clock) -> Any:
    """The HTTP server, built before the orchestrator (which reports to it)."""
    try:
        from strategy_manager.web.server import WebServer
    except ImportError as exc:
        raise QsmError(
            f"--http needs the web extra (pip install 'quant-strategy-manager[web]'): {exc}"
        ) from None
    guard = app.guard
    redactor = guard.redactor if guard is not None else None
    if redactor is None:
        from strategy_manager.core.masking import Redactor

        redactor = Redactor.for_settings(settings, app.registry.secret_options())
    return WebServer(settings, listen, redactor, clock.now)


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


def needs_attention(worker: dict[str, Any]) -> bool:
    return worker["state"] in ATTENTION or bool(worker.get("last_error"))


def summarize(workers: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per state, and every strategy needing attention (as JSON data)."""
    counts = Counter(w["state"] for w in workers)
    return {
        "strategies": len(workers),
        "counts": dict(sorted(counts.items())),
        "attention": [
            {k: w.get(k) for k in ("strategy_id", "state", "restarts", "last_error")}
            for w in workers
            if needs_attention(w)
        ],
    }


def summary_lines(workers: list[dict[str, Any]], color: bool = False) -> list[str]:
    """A summary that stays short at any fleet size: one line of counts per state, then
    at most SUMMARY_ATTENTION_LINES strategies that need attention."""
    data = summarize(workers)
    lines = [
        f"summary: {data['strategies']} strategies; "
        + ", ".join(f"{n} {paint_state(state, color=color)}" for state, n in data["counts"].items())
    ]
    attention = data["attention"]
    if not attention:
        return lines
    lines.append(f"needing attention ({len(attention)}):")
    shown = attention[:SUMMARY_ATTENTION_LINES]
    rows = [[w["strategy_id"], w["state"], f"restarts={w['restarts']}", w["last_error"] or ""] for w in shown]
    lines += [
        "  " + line
        for line in table(["", "", "", ""], rows, paint={1: lambda s, n: paint_state(s, n, color)})[1:]
    ]
    if len(attention) > len(shown):
        lines.append(f"  ... and {len(attention) - len(shown)} more: strategy-manager status")
    return lines


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--check", is_flag=True, help="Exit 1 if any strategy is FAILED, BLOCKED or STALE (for monitoring)."
)
@pass_app
def status(app: App, as_json: bool, check: bool) -> None:
    """Every strategy's runtime state, as its orchestrator last wrote it, and where it
    runs (HOST: host:pid, and the Ray node with executor ray).

    A strategy whose orchestrator has not renewed its heartbeat within lease_seconds
    (killed, frozen or cut off) shows as STALE, with the state it last reported.
    HEARTBEAT is the owner's. Times are in the local zone, with their UTC offset.
    """
    from strategy_manager.core import status as fleet

    views = fleet.current(app.store(), SystemClock().now(), app.settings.lease_seconds)
    needing = [v for v in views if v.state in fleet.ATTENTION]
    if as_json:
        emit_json([v.as_dict() for v in views])
    elif not views:
        click.echo("no status yet: start the orchestrator with 'strategy-manager run'")
    else:
        _status_table(app, views)
    if check and needing:
        if not as_json:
            click.echo(f"{len(needing)} strategies need attention", err=True)
        raise SystemExit(1)


def _status_table(app: App, views: list[Any]) -> None:
    from strategy_manager.cli.hosts import shown_place

    rows = []
    for v in views:
        r = v.record
        nxt = (
            f"{r.next_transition} {shown_time(r.next_transition_at)}"
            if r.next_transition and r.next_transition_at
            else "-"
        )
        state = f"{v.state} (was {r.state})" if v.stale else v.state
        place = shown_place(v.host, v.pid, v.node)
        rows.append([r.strategy_id, state, r.engine, r.restarts, shown_time(v.owner_heartbeat), nxt, place])
    lines = table(
        ["STRATEGY", "STATE", "ENGINE", "RESTARTS", "HEARTBEAT", "NEXT", "HOST"],
        rows,
        right=(3,),
        paint={1: lambda s, n: paint_state(s, n, app.color)},
    )
    click.echo(lines[0])
    for v, line in zip(views, lines[1:], strict=True):
        click.echo(line)
        if v.stale:
            click.echo(f"    stale: its orchestrator ({v.record.owner}) stopped renewing; is it gone?")
        if v.record.last_error:
            click.echo(f"    error: {v.record.last_error}")


@click.command()
@click.argument("ident", metavar="[ID]", required=False, shell_complete=strategy_ids)
@click.option(
    "--next", "count", type=click.IntRange(min=1), default=6, show_default=True, help="Transitions to show."
)
@click.option("--at", "at", default=None, help="Preview from this ISO time instead of now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@pass_app
def schedule(app: App, ident: str | None, count: int, at: str | None, as_json: bool) -> None:
    """Preview each strategy's next transitions, in exchange and local time (with UTC offsets)."""
    from strategy_manager.core.lifecycle import LifecycleManager
    from strategy_manager.core.spec import parse_strategy

    lifecycle = LifecycleManager(app.settings)
    now = parse_instant(at, "--at") if at else SystemClock().now()
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
            exchange, local = (datetime.fromisoformat(t[k]) for k in ("exchange_time", "local_time"))
            when = f"{shown_time(exchange, exchange.tzinfo)}  (local {shown_time(local)})"
            click.echo(f"  {t['kind']:<6} {when}  {t['why']}")
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
                        "exchange_time": when.astimezone(tz).isoformat(),
                        "local_time": when.astimezone().isoformat(),
                    }
                )
    return result


def _matches(document: dict[str, Any], ident: str) -> bool:
    natural = ":".join(str(document.get(k)) for k in ("user_id", "symbol", "strategy_key"))
    return ident in (natural, str(document.get("_id")))


def register(cli: click.Group) -> None:
    from strategy_manager.cli import hosts

    cli.add_command(run)
    hosts.register(cli)
    cli.add_command(status)
    cli.add_command(schedule)
