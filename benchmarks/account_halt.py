"""How fast ``strategy-manager accounts halt`` stops an account's strategies.

Fifty strategies of one account run in an orchestrator: by default vnpy's
``DoubleMaStrategy`` on a replay account of five symbols (``--engine demo`` for the
built-in demo engine). The halt is written to the store as the command line writes
it, from outside the orchestrator, and three moments are timed from that write:

* picked up: the orchestrator saw the halt (its poll of the store's halts token);
  no order of the account passes from here on (the halt is part of every fence);
* fenced: every engine's fence answers False;
* stopped: every engine has stopped, each with its final snapshot.

Repeated ``--repeat`` times (halt, resume, all running again, halt ...); medians are
printed. Target: every strategy stopped within 1 s of the halt with a poll interval
of 0.2 s (``--poll-interval``; the default setting is 1 s, which the pick-up adds).

    python benchmarks/account_halt.py [--engine vnpy|demo] [--strategies 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import AccountHalt, open_store
from strategy_manager.core.worker import WorkerState

SYMBOLS = ("002050.SZ", "600000.SH", "000001.SZ", "rb2605.SHFE", "IF2512.CFFEX")
DOUBLE_MA = "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy"
TARGET_SECONDS = 1.0


def documents(engine: str, count: int) -> list[dict[str, Any]]:
    found = []
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        document: dict[str, Any] = {
            "user_id": "bench",
            "symbol": symbol,
            "strategy_key": f"s{n}",
            "engine": engine,
            "account": "paper",
            "schedule": {"mode": "always"},
        }
        if engine == "vnpy":
            document["engine_class"] = DOUBLE_MA
            document["params"] = {
                "fast_window": 10,
                "slow_window": 20,
                "vnpy": {
                    "gateway": {"name": "REPLAY", "setting": {"start": "2026-09-15T09:30:00", "pace": 20}}
                },
            }
        else:
            document["params"] = {"bar_seconds": 0.05}
        found.append(document)
    return found


def wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until ``predicate`` holds (polled every millisecond)."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.001)
    return time.perf_counter() - started


def halt_once(orchestrator: MultiStrategyOrchestrator, store: Any) -> tuple[float, float, float]:
    """Halt the running account; seconds until picked up, fenced, stopped."""
    slots = list(orchestrator.slots.values())
    wait(lambda: all(s.running for s in slots), 120, "every strategy running")
    contexts = [s.worker.context for s in slots if s.worker is not None and s.worker.context is not None]
    store.halt_account(AccountHalt("paper", "benchmark", halted_at=datetime.now(UTC), by="bench"))
    began = time.perf_counter()
    wait(lambda: orchestrator.accounts.halts.get("paper") is not None, 30, "the halt picked up")
    picked = time.perf_counter() - began
    wait(lambda: not any(c.lease_valid() for c in contexts), 30, "every fence down")
    fenced = time.perf_counter() - began

    def stopped() -> bool:
        return all(s.worker is None or s.worker.state is WorkerState.HALTED for s in slots) and not any(
            orchestrator._busy(s) for s in slots
        )

    wait(stopped, 30, "every engine stopped")
    return picked, fenced, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["vnpy", "demo"], default="vnpy")
    parser.add_argument("--strategies", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--poll-interval", type=float, default=0.2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        account: dict[str, Any] = {"engine": args.engine}
        if args.engine == "vnpy":
            from qsm_vnpy import home

            home.prepare(root / "data" / "engines" / "vnpy")
            from qsm_vnpy.examples.minute_bars import write_csv

            for seed, symbol in enumerate(SYMBOLS, start=3):
                write_csv(root / "bars" / f"{symbol}.csv", 25, seed)
            account |= {"gateway": "REPLAY", "setting": {"csv": str(root / "bars")}}
        settings = Settings(
            data_dir=str(root / "data"),
            poll_interval=args.poll_interval,
            snapshot_interval=3600,
            hook_threads=16,
            accounts={"paper": account},
        )
        store = open_store(settings)
        for document in documents(args.engine, args.strategies):
            store.upsert_strategy(document)
        orchestrator = MultiStrategyOrchestrator(settings, store)
        orchestrator.start()
        timings = []
        try:
            for _ in range(args.repeat):
                timings.append(halt_once(orchestrator, store))
                store.resume_account("paper")
        finally:
            orchestrator.stop()
    picked, fenced, stopped = (list(column) for column in zip(*timings, strict=True))
    median = statistics.median
    poll = args.poll_interval
    print(f"{args.strategies} {args.engine} strategies on one account, {args.repeat} halts, poll {poll}s")
    print(f"halt picked up       : {median(picked) * 1000:7.0f} ms (median; max {max(picked) * 1000:.0f} ms)")
    print(f"every fence down     : {median(fenced) * 1000:7.0f} ms (median; max {max(fenced) * 1000:.0f} ms)")
    print(
        f"every engine stopped : {median(stopped) * 1000:7.0f} ms (median; max {max(stopped) * 1000:.0f} ms)"
    )
    verdict = "PASS" if max(stopped) <= TARGET_SECONDS else "FAIL"
    print(
        f"{verdict}: every strategy stopped within {TARGET_SECONDS:g} s of the halt (worst of {args.repeat})"
    )


if __name__ == "__main__":
    main()
