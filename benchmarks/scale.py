"""Cold start against the physical limit: the growth table.

    python benchmarks/scale.py [--sizes 100,1000,5000,10000] [--engines demo,noop] [--repeat 3]

For each size N the anchor is what any orchestrator of N strategies must at least do
on this machine, measured in the same process right before the orchestrator run:
one SELECT of N documents (decoded), N threads that each wait on an Event, and one
SQLite transaction writing N status rows. The figure is ``start()`` until all N
strategies are RUNNING, on the embedded store. Each cell is the median of
``--repeat`` (anchor, orchestrator) pairs, each pair in a fresh process of its own
(what one run leaves behind, threads winding down and garbage, does not weigh on the
next); the ratio is figure / anchor.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from strategy_manager.core.worker import WorkerState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import noop_engine  # noqa: E402  (benchmarks/ is not a package)

#: Each orchestrator is given this long to bring every strategy up.
START_LIMIT_SECONDS = 300.0


def documents(n: int, engine: str) -> list[dict[str, Any]]:
    return [
        {
            "user_id": "bench",
            "symbol": f"S{i:05d}.SH",
            "strategy_key": "k",
            "engine": engine,
            "params": {},
            "schedule": {"mode": "always"},
        }
        for i in range(n)
    ]


def anchor(n: int, folder: Path) -> float:
    """Seconds for the least any orchestrator of ``n`` strategies does."""
    path = folder / f"anchor-{n}-{time.monotonic_ns()}.db"
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("create table docs (id text primary key, body text)")
    db.execute("create table status (id text primary key, body text)")
    with db:
        db.executemany(
            "insert into docs values (?, ?)",
            [(f"bench:S{i:05d}.SH:k", json.dumps(d)) for i, d in enumerate(documents(n, "noop"))],
        )
    release = threading.Event()
    t0 = time.perf_counter()
    docs = [json.loads(body) for _id, body in db.execute("select id, body from docs")]
    threads = [threading.Thread(target=release.wait, daemon=True) for _ in docs]
    for thread in threads:
        thread.start()
    with db:
        db.executemany(
            "insert or replace into status values (?, ?)",
            [
                (f"{d['user_id']}:{d['symbol']}:{d['strategy_key']}", json.dumps({"state": "RUNNING"}))
                for d in docs
            ],
        )
    elapsed = time.perf_counter() - t0
    release.set()
    for thread in threads:
        thread.join()
    db.close()
    path.unlink()
    return elapsed


def cold_start(n: int, engine: str, folder: Path) -> float:
    settings = Settings(data_dir=str(folder / f"orch-{engine}-{n}-{time.monotonic_ns()}"), poll_interval=0.2)
    store = open_store(settings)
    for doc in documents(n, engine):
        store.upsert_strategy(doc)
    registry = EngineRegistry.from_entry_points(settings)
    registry.add_plugin("noop", noop_engine)
    orch = MultiStrategyOrchestrator(settings, store, registry)
    running = threading.Event()
    count = [0]

    def on_event(kind: str, _ident: str, _detail: str) -> None:
        if kind == "started":
            count[0] += 1
            if count[0] >= n:
                running.set()

    orch.on_event = on_event
    t0 = time.perf_counter()
    orch.start()
    ok = running.wait(START_LIMIT_SECONDS)
    elapsed = time.perf_counter() - t0
    states = {s.state for s in orch.slots.values()}
    orch.stop()
    store.close()
    if not ok or states != {WorkerState.RUNNING}:
        return float("inf")
    return elapsed


def measure(n: int, engine: str, repeat: int, folder: Path) -> tuple[float, float]:
    """Medians of ``repeat`` pairs, each measured in a fresh process."""
    anchors, figures = [], []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, __file__, "--pair", str(n), engine, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        pair = json.loads(out.stdout.strip().splitlines()[-1])
        anchors.append(pair["anchor"])
        figures.append(pair["figure"])
    return statistics.median(anchors), statistics.median(figures)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100,1000,5000,10000")
    parser.add_argument("--engines", default="demo,noop")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pair", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.pair:
        n, engine, folder = int(args.pair[0]), args.pair[1], Path(args.pair[2])
        print(json.dumps({"anchor": anchor(n, folder), "figure": cold_start(n, engine, folder)}))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{'engine':<6} {'N':>6} {'anchor':>9} {'to RUNNING':>11} {'ratio':>7}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for engine in args.engines.split(","):
            for n in sizes:
                base, figure = measure(n, engine, args.repeat, Path(tmp))
                print(f"{engine:<6} {n:>6} {base:>8.2f}s {figure:>10.2f}s {figure / base:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
