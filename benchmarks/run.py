"""The benchmark harness: scale, reaction time and overhead, printed with PASS/FAIL.

    python benchmarks/run.py [--quick] [--markdown FILE]

Each figure is a median over repetitions where the measurement is short; peers are
measured side by side in the same run. Not part of the test suite: timings on a
shared machine are noisy, and a test must not fail on noise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from typing import Any

import attrs

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.core.worker import WorkerState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import noop_engine  # noqa: E402  (benchmarks/ is not a package)
import scale  # noqa: E402

#: (engine, N, anchor seconds, seconds to all RUNNING): the growth table.
GROWTH: list[tuple[str, int, float, float]] = []

ROWS: list[tuple[str, str, str]] = []  # (what, figure, verdict)


def row(what: str, figure: str, target: str | None = None, ok: bool | None = None) -> None:
    verdict = "" if ok is None else ("PASS" if ok else "FAIL") + (f" (target {target})" if target else "")
    ROWS.append((what, figure, verdict))
    print(f"{what:<58} {figure:<28} {verdict}", flush=True)


def registry(settings: Settings) -> EngineRegistry:
    reg = EngineRegistry(settings)
    reg.add_plugin("noop", noop_engine)
    reg.add_plugin("noop-inplace", noop_engine.InPlace)
    return reg


def fill(store: Any, n: int, engine: str = "noop") -> None:
    for doc in scale.documents(n, engine):
        store.upsert_strategy(doc)


def wait_until(predicate: Any, timeout: float, poll: float = 0.005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll)
    return False


def all_running(orch: MultiStrategyOrchestrator, n: int) -> bool:
    slots = list(orch.slots.values())
    return len(slots) == n and all(s.state is WorkerState.RUNNING for s in slots)


#: Runs the wire server in a process of its own, as a real MongoDB would be: in the
#: benchmark's process it would compete with the orchestrator for the interpreter.
WIRE_SERVER = """
import sys
from mongoeco._pytest_runtime import ProxyThread
server = ProxyThread("sqlite", sys.argv[1], "7.0", "auto-installed")
print(server.start(), flush=True)
sys.stdin.read()
server.close()
"""


@contextmanager
def wire_server():
    with tempfile.TemporaryDirectory() as folder:
        proc = subprocess.Popen(
            [sys.executable, "-c", WIRE_SERVER, folder],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            yield proc.stdout.readline().strip()
        finally:
            proc.terminate()
            proc.wait(30)


# -- 1. cold start, against the anchor of the same N in the same run ---------------
def bench_cold_start(sizes: list[int], tmp: Path, repeat: int) -> None:
    """Each figure next to the least any orchestrator of N strategies does here
    (``benchmarks/scale.py``); the 10,000-demo figure has a target."""
    for engine in ("demo", "noop"):
        for n in sizes:
            base, figure = scale.measure(n, engine, repeat, tmp)
            GROWTH.append((engine, n, base, figure))
            ratio = figure / base
            target = n >= 10_000 and engine == "demo"
            row(
                f"cold start, {n} {engine} strategies, embedded",
                f"{figure:.2f} s, anchor {base:.2f} s: {ratio:.1f}x",
                "<= 2x anchor" if target else None,
                ratio <= 2.0 if target else None,
            )


def mongo_anchor(uri: str, n: int) -> float:
    """The anchor on a MongoDB server: one find of N documents, N threads waiting on
    an Event, one bulk write of N status documents."""
    from pymongo import MongoClient, ReplaceOne

    client: MongoClient[dict[str, Any]] = MongoClient(uri)
    db = client[f"anchor{n}_{time.monotonic_ns()}"]
    db.docs.insert_many([{"_id": f"bench:{d['symbol']}:k", **d} for d in scale.documents(n, "noop")])
    release = threading.Event()
    t0 = time.perf_counter()
    docs = list(db.docs.find({}))
    threads = [threading.Thread(target=release.wait, daemon=True) for _ in docs]
    for thread in threads:
        thread.start()
    db.status.bulk_write(
        [ReplaceOne({"_id": d["_id"]}, {"state": "RUNNING"}, upsert=True) for d in docs], ordered=False
    )
    elapsed = time.perf_counter() - t0
    release.set()
    client.drop_database(db.name)
    client.close()
    return elapsed


def cold_start(settings: Settings, n: int, stored: bool = False) -> float:
    """Seconds from ``start()`` to all ``n`` strategies RUNNING; with ``stored`` (MongoDB),
    until the store's status rows say so too (the anchor writes N status rows as well)."""
    store = open_store(settings)
    fill(store, n)
    orch = MultiStrategyOrchestrator(settings, store, registry(settings))
    t0 = time.perf_counter()
    orch.start()
    ok = wait_until(lambda: all_running(orch, n), 300)
    if ok and stored:  # a count every 0.1 s: reading every row would load the server it measures
        from pymongo import MongoClient

        with MongoClient(settings.mongo_uri) as client:
            status = client[settings.mongo_db][settings.status_collection]
            ok = wait_until(lambda: status.count_documents({"state": "RUNNING"}) == n, 300, poll=0.1)
    elapsed = time.perf_counter() - t0
    orch.stop()
    store.close()
    return elapsed if ok else float("inf")


def bench_mongo_cold_start(tmp: Path, uri: str, n: int, repeat: int) -> None:
    anchors, figures = [], []
    for i in range(repeat):
        anchors.append(mongo_anchor(uri, n))
        settings = Settings(
            data_dir=str(tmp / f"mongo{i}"), poll_interval=0.2, mongo_uri=uri, mongo_db=f"cold{i}"
        )
        figures.append(cold_start(settings, n, stored=True))
    base, figure = statistics.median(anchors), statistics.median(figures)
    print("  anchors", [round(a, 2) for a in anchors], "figures", [round(f, 2) for f in figures], flush=True)
    row(
        f"cold start, {n} no-op strategies, MongoDB wire server (to RUNNING in the store)",
        f"{figure:.2f} s, anchor {base:.2f} s: {figure / base:.1f}x",
        "<= 2x anchor",
        figure <= 2 * base,
    )


# -- 2. hot reload -----------------------------------------------------------------
def bench_hot_reload(tmp: Path, changes: int, mongo_uri: str | None) -> None:
    for kind in ("embedded", "mongodb"):
        if kind == "mongodb" and mongo_uri is None:
            continue
        settings = Settings(data_dir=str(tmp / f"reload-{kind}"), poll_interval=0.2)
        if kind == "mongodb":
            settings = attrs.evolve(settings, mongo_uri=mongo_uri, mongo_db="reload")
        store = open_store(settings)
        fill(store, 20)
        started = threading.Event()

        def on_event(kind: str, ident: str, detail: str, started: threading.Event = started) -> None:
            if kind == "started" and ident == "bench:S00000.SH:k":
                started.set()

        orch = MultiStrategyOrchestrator(settings, store, registry(settings), on_event=on_event)
        orch.start()
        wait_until(lambda orch=orch: all_running(orch, 20), 30)
        notifications = "change stream" if store.watch() is not None else "polling"
        latencies = []
        for i in range(changes):
            started.clear()
            t0 = time.perf_counter()
            store.update_strategy("bench:S00000.SH:k", {"params": {"n": i}})
            if started.wait(10):
                latencies.append(time.perf_counter() - t0)
        orch.stop()
        store.close()
        p50 = statistics.median(latencies)
        p95 = statistics.quantiles(latencies, n=20)[18]
        limit = (settings.poll_interval if notifications == "polling" else 0.0) + 0.05
        row(
            f"hot reload, {kind} ({notifications}, poll {settings.poll_interval}s), {len(latencies)} edits",
            f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
            f"p95 <= {limit * 1000:.0f} ms",
            p95 <= limit,
        )
    if mongo_uri is not None:
        row("hot reload, change streams", "not measured: the wire server has no change streams")


def bench_params_edit(tmp: Path, changes: int) -> None:
    """An edit of params alone, restarted (``noop``) or taken in place (``noop-inplace``),
    side by side: from the edit to the new params running, once as the poll finds it
    and once with the orchestrator woken at once (what the apply itself costs). Polled
    edits come at a random moment of the poll interval: one made right after the last
    one was applied would keep the same phase against the poll every time."""
    rng = random.Random(7)
    sid = "bench:S00000.SH:k"
    for woken in (False, True):
        for engine in ("noop", "noop-inplace"):
            settings = Settings(data_dir=str(tmp / f"edit-{engine}-{woken}"), poll_interval=0.2)
            store = open_store(settings)
            fill(store, 20, engine)
            applied = threading.Event()

            def on_event(kind: str, ident: str, detail: str, applied: threading.Event = applied) -> None:
                if ident == sid and (kind == "started" or (kind == "reload" and "in place" in detail)):
                    applied.set()

            orch = MultiStrategyOrchestrator(settings, store, registry(settings), on_event=on_event)
            orch.start()
            wait_until(lambda orch=orch: all_running(orch, 20), 30)
            latencies = []
            for i in range(changes):
                applied.clear()
                if not woken:
                    time.sleep(rng.uniform(0, settings.poll_interval))
                t0 = time.perf_counter()
                store.update_strategy(sid, {"params": {"n": i}})
                if woken:
                    orch.wake()
                if applied.wait(10):
                    latencies.append(time.perf_counter() - t0)
            orch.stop()
            store.close()
            p50 = statistics.median(latencies)
            p95 = statistics.quantiles(latencies, n=20)[18]
            how = "taken in place" if engine == "noop-inplace" else "restart"
            when = "woken at once" if woken else f"poll {settings.poll_interval}s"
            row(
                f"params edit, {how} ({when}), {len(latencies)} edits",
                f"p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms",
            )


# -- 3. idle cost (in a child process, so memory is its own) -------------------------
def idle_child(n: int, seconds: float, data_dir: str, engine: str) -> dict[str, float]:
    settings = Settings(data_dir=data_dir)
    store = open_store(settings)
    for doc in scale.documents(n, engine):
        store.upsert_strategy(doc)
    rss0 = rss_mib()
    orch = MultiStrategyOrchestrator(settings, store, registry(settings))
    orch.start()
    wait_until(lambda: all_running(orch, n), 60)
    time.sleep(2)  # let start-up settle
    cpu0, t0, rss1 = cpu_seconds(), time.monotonic(), rss_mib()
    time.sleep(seconds)
    cpu = (cpu_seconds() - cpu0) / (time.monotonic() - t0)
    rss2 = rss_mib()
    orch.stop()
    return {"cpu_percent": cpu * 100, "rss_before": rss0, "rss_running": max(rss1, rss2)}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_child(*args: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_idle(tmp: Path, seconds: float) -> None:
    core = run_child("--idle-child", "1000", str(seconds), str(tmp / "idle-noop"), "noop")
    big = run_child("--idle-child", "1000", str(seconds), str(tmp / "idle1000"), "demo")
    small = run_child("--idle-child", "100", str(seconds), str(tmp / "idle100"), "demo")
    row(
        f"idle, 1000 running no-op strategies (the core's share), CPU over {seconds:.0f} s",
        f"{core['cpu_percent']:.2f} % of a core",
        "<= 1 %",
        core["cpu_percent"] <= 1,
    )
    row(
        f"idle, 1000 running demo strategies (60 s bars), CPU over {seconds:.0f} s",
        f"{big['cpu_percent']:.2f} % of a core",
    )
    row(
        "idle, 1000 running workers, RSS",
        f"{big['rss_running']:.0f} MiB",
        "< 400 MB",
        big["rss_running"] * 1.048576 < 400,
    )
    per = (big["rss_running"] - small["rss_running"]) / 900 * 1024
    row("RSS per additional worker (1000 vs 100)", f"{per:.1f} KiB")


# -- 4. snapshot round ---------------------------------------------------------------
def bench_snapshot(tmp: Path, n: int) -> None:
    settings = Settings(data_dir=str(tmp / "snap"), snapshot_interval=3600)
    store = open_store(settings)
    fill(store, n)
    orch = MultiStrategyOrchestrator(settings, store, registry(settings))
    orch.start()
    wait_until(lambda: all_running(orch, n), 60)
    times = []
    for _ in range(5):
        # A round: every running engine asked, each state written to the store.
        wait_until(lambda: not any(orch._busy(s) for s in orch.slots.values()), 30)
        t0 = time.perf_counter()
        written = orch.snapshot_all()
        futures.wait(orch._snapshot_round, timeout=60)
        wait_until(lambda: not orch.snapshots.pending_ids(), 60)
        times.append(time.perf_counter() - t0)
    size = sum(len(json.dumps(s.worker.snapshot())) for s in orch.slots.values() if s.worker)
    orch.stop()
    median = statistics.median(times)
    row(
        f"snapshot round, {written} workers",
        f"{median * 1000:.0f} ms, {size / 1024:.0f} KiB",
        "< 1 s",
        median < 1.0,
    )


# -- 5. schedule cost --------------------------------------------------------------
def bench_schedule(n: int) -> None:
    from strategy_manager.core.lifecycle import LifecycleManager
    from strategy_manager.core.spec import parse_strategy

    lifecycle = LifecycleManager(Settings())
    symbols = ["600000.SH", "0700.HK", "AAPL"]
    specs = [
        parse_strategy(
            {
                "user_id": "b",
                "symbol": symbols[i % 3],
                "strategy_key": f"k{i}",
                "engine": "noop",
                "schedule": {"lunch_break": ("pause", "keep_running")[i % 2]},
            }
        )
        for i in range(n)
    ]
    policies = [lifecycle.policy_for(s) for s in specs]
    now = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)
    end = datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    lifecycle.phase(policies[0], now)  # build the calendars first: that is start-up, not schedule
    cpu0, wakeups = cpu_seconds(), 0
    while now < end:
        # What the control loop does at each transition: every strategy's phase, then the next one.
        for policy in policies:
            lifecycle.phase(policy, now)
        nxt = lifecycle.next_transition(policies, now)
        wakeups += 1
        if nxt is None:
            break
        now = nxt
    cpu = cpu_seconds() - cpu0
    row(
        f"schedule, {n} strategies on 3 calendars, one simulated day",
        f"{cpu * 1000:.0f} ms CPU, {wakeups} wake-ups",
    )


# -- 6. engines command --------------------------------------------------------------
def bench_engines() -> None:
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "strategy_manager.cli", "engines", "--json"],
            capture_output=True,
            check=True,
        )
        times.append(time.perf_counter() - t0)
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import sys\nfrom click.testing import CliRunner\nfrom strategy_manager.cli import cli\n"
                "CliRunner().invoke(cli, ['engines', '--json'])\n"
                "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
                "               & {'vnpy', 'PySide6', 'backtrader', 'pandas'})\n"
                "print(len(sys.modules), heavy)"
            ),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split(" ", 1)
    median = statistics.median(times)
    row("strategy-manager engines, wall time", f"{median:.2f} s", "<= 0.2 s", median <= 0.2)
    row("strategy-manager engines, modules imported", f"{probe[0]}, heavy: {probe[1].strip()}")


# -- 7. adapters -------------------------------------------------------------------
def bench_adapters(quick: bool) -> None:
    for script in ("backtrader_overhead.py", "vnpy_overhead.py"):
        path = HERE / script
        if not path.exists():
            row(f"adapter overhead ({script})", "not available")
            continue
        args = ["--bars", "5000", "--repeat", "3"] if quick else []
        out = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, check=False)
        last = (out.stdout.strip().splitlines() or ["(no output)"])[-1]
        target = ADAPTER_TARGETS[script]
        ratio = _percent(last)
        row(
            f"adapter overhead ({script})",
            last,
            f">= {target} % of the engine alone",
            None if ratio is None else ratio >= target,
        )


#: Each adapter's throughput as a share of its engine alone, in per cent.
ADAPTER_TARGETS = {"backtrader_overhead.py": 95, "vnpy_overhead.py": 90}


def _percent(line: str) -> float | None:
    """The first ``NN.N%`` figure of an overhead script's last line."""
    import re

    found = re.search(r"(\d+(?:\.\d+)?)%", line)
    return float(found.group(1)) if found else None


def markdown(command: str) -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    lines = [
        "| measurement | figure | verdict |",
        "|---|---|---|",
        *[f"| {what} | {figure} | {verdict} |" for what, figure, verdict in ROWS],
        "",
        "Growth, embedded store: seconds from `start()` to all RUNNING, and the anchor of the same N.",
        "",
        "| N | demo | demo anchor | ratio | no-op | no-op anchor | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    by = {(engine, n): (base, figure) for engine, n, base, figure in GROWTH}
    for n in sorted({n for _engine, n, _b, _f in GROWTH}):
        cells = []
        for engine in ("demo", "noop"):
            base, figure = by.get((engine, n), (float("nan"), float("nan")))
            cells += [f"{figure:.2f}", f"{base:.2f}", f"{figure / base:.1f}x"]
        lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(
        [
            f"Measured {datetime.now(UTC).date()} with `{command}` on {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, "
            f"quant-strategy-manager {version('quant-strategy-manager')}.",
            "",
            *lines,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller N, shorter idle window")
    parser.add_argument("--markdown", type=Path, help="also write the results table to this file")
    parser.add_argument("--mongo-uri", help="a real MongoDB to measure instead of the mongoeco wire server")
    parser.add_argument(
        "--mongo-max",
        type=int,
        default=1000,
        help="largest N for cold start on MongoDB (the wire server is slow per query)",
    )
    parser.add_argument(
        "--params-edit", action="store_true", help="only the params edit: restart against in place"
    )
    parser.add_argument(
        "--mongo-cold-start", action="store_true", help="only the cold start on MongoDB (or the wire server)"
    )
    parser.add_argument("--idle-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mongo_cold_start:
        server = contextlib.nullcontext(args.mongo_uri) if args.mongo_uri else wire_server()
        with tempfile.TemporaryDirectory() as folder, server as uri:
            bench_mongo_cold_start(Path(folder), uri, min(args.mongo_max, 1000), 1 if args.quick else 3)
        return
    if args.params_edit:
        with tempfile.TemporaryDirectory() as folder:
            bench_params_edit(Path(folder), 50 if args.quick else 200)
        return
    if args.idle_child:
        n, seconds, data_dir, engine = args.idle_child
        print(json.dumps(idle_child(int(n), float(seconds), data_dir, engine)))
        return
    sizes = [100, 1000] if args.quick else [100, 1000, 5000, 10_000]
    repeat = 1 if args.quick else 3
    server = contextlib.nullcontext(args.mongo_uri) if args.mongo_uri else wire_server()
    with tempfile.TemporaryDirectory() as folder, server as uri:
        tmp = Path(folder)
        bench_cold_start(sizes, tmp, repeat)
        bench_mongo_cold_start(tmp, uri, min(args.mongo_max, 1000), repeat)
        bench_hot_reload(tmp, 50 if args.quick else 200, uri)
        bench_params_edit(tmp, 50 if args.quick else 200)
        bench_idle(tmp, 10 if args.quick else 60)
        bench_snapshot(tmp, 1000)
    bench_schedule(1000)
    bench_engines()
    bench_adapters(args.quick)
    if args.markdown:
        command = "python benchmarks/run.py" + (" --quick" if args.quick else "")
        args.markdown.write_text(markdown(command))
        print(f"wrote {args.markdown}")


if __name__ == "__main__":
    main()
