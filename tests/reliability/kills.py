"""The process-kill scenario, shared by the test suite (5 kills) and `make soak` (30+).

An orchestrator process runs demo strategies; it is SIGKILLed at a random moment
and started again, over and over. After each restart every strategy must run again
within 5 s, restored from its latest committed snapshot, owned by the new process
alone, and every snapshot must decode with sequence numbers that only grow. Double
runs are counted from the demo engines' order logs: two processes ordering for one
strategy at once, or an older lease epoch ordering after a newer one.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from attrs import define, field

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import owned_by
from tests.reliability.harness import ORDER_LOG, epochs_in_order, orders, overlap

RESTART_LIMIT = 5.0


@define
class KillReport:
    kills: int = 0
    restored: int = 0
    duplicates: int = 0
    snapshots_lost: int = 0
    corrupt: int = 0
    slowest_restart: float = 0.0
    problems: list[str] = field(factory=list)


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.1"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def run_kills(folder: Path, kills: int, strategies: int = 5, seed: int = 1) -> KillReport:
    rng = random.Random(seed)
    data = folder / "data"
    env = {
        **os.environ,
        "QSM_DATA_DIR": str(data),
        "QSM_SNAPSHOT_INTERVAL": "0.2",
        "QSM_ENGINE_OPTIONS": ORDER_LOG,
    }
    store = open_store(Settings(data_dir=str(data)))
    ids = []
    for i in range(strategies):
        store.upsert_strategy(
            {
                "user_id": "kill",
                "symbol": f"K{i}",
                "strategy_key": "k",
                "engine": "demo",
                "params": {"bar_seconds": 0.01},
                "schedule": {"mode": "always"},
            }
        )
        ids.append(f"kill:K{i}:k")
    report = KillReport()
    log = folder / "orchestrator.log"
    proc = _spawn(env, log)
    try:
        deadline = time.monotonic() + 20  # every strategy has a snapshot before the first kill
        while not all(store.latest_snapshot(i) for i in ids) and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 1.5))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            report.kills += 1
            committed = {i: store.latest_snapshot(i) for i in ids}
            t0 = time.monotonic()
            proc = _spawn(env, log)
            while time.monotonic() - t0 < RESTART_LIMIT * 3:
                status = {r.strategy_id: r for r in store.read_status()}
                if all(
                    i in status and status[i].state == "RUNNING" and owned_by(status[i].owner, proc.pid)
                    for i in ids
                ):
                    break
                time.sleep(0.05)
            elapsed = time.monotonic() - t0
            report.slowest_restart = max(report.slowest_restart, elapsed)
            if elapsed > RESTART_LIMIT:
                report.problems.append(f"kill {report.kills}: strategies running again after {elapsed:.1f}s")
            status = {r.strategy_id: r for r in store.read_status()}
            for ident in ids:
                record = status.get(ident)
                expected = committed[ident].seq if committed[ident] else None
                restored = (record.details or {}).get("restored_seq") if record else None
                if expected is not None and restored != expected:
                    report.snapshots_lost += 1
                    report.problems.append(f"{ident}: restored #{restored}, latest committed #{expected}")
                elif expected is not None:
                    report.restored += 1
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
    for ident in ids:  # double runs, from what the engines did: their order logs
        records = orders(data, ident)
        if overlap(records) > 0 or not epochs_in_order(records):
            report.duplicates += 1
            report.problems.append(f"{ident}: two processes ordered at once, or an old epoch after a new one")
    for ident in ids:
        seqs = [s.seq for s in store.snapshot_history(ident, limit=1000)]
        if seqs != sorted(set(seqs), reverse=True):
            report.corrupt += 1
            report.problems.append(f"{ident}: snapshot sequence {seqs[:10]} not strictly growing")
    return report
