"""Orchestrator processes, and what their engines did, for the fault tests and the soak.

Double runs are measured from the engines' side: the demo engine logs every simulated
order it sends (engine option ``order_log``) with the time, the process and the lease
epoch; two processes ordering for one strategy at the same time is a double run,
whatever ``status`` says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from strategy_manager.core.context import safe_dirname

ORDER_LOG = json.dumps({"demo": {"order_log": True}})


def demo_document(index: int, user: str = "f", bar_seconds: float = 0.005) -> dict[str, Any]:
    """A demo strategy that trades often (a fast crossover on fast bars), always on."""
    return {
        "user_id": user,
        "symbol": f"F{index}",
        "strategy_key": "k",
        "engine": "demo",
        "params": {"bar_seconds": bar_seconds, "fast": 2, "slow": 3},
        "schedule": {"mode": "always"},
    }


def run_env(data_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a ``run`` process: ``lease_seconds=3`` becomes QSM_LEASE_SECONDS=3."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSM_", "MONGO_"))}
    env["QSM_DATA_DIR"] = str(data_dir)
    config = data_dir.parent / f"{data_dir.name}-config"  # empty: every setting from here
    config.mkdir(parents=True, exist_ok=True)
    env["QSM_CONFIG_DIR"] = str(config)
    env["QSM_ENGINE_OPTIONS"] = ORDER_LOG
    for name, value in settings.items():
        key = name.upper() if name.startswith("mongo_") else f"QSM_{name.upper()}"
        env[key] = str(value)
    return env


def spawn_run(env: dict[str, str], log: Path, prefix: tuple[str, ...] = ()) -> subprocess.Popen[bytes]:
    """``strategy-manager run`` in its own process (after ``prefix``, e.g. unshare)."""
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "strategy_manager.cli", "run", "--poll-interval", "0.2"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )


def _order_log(data_dir: Path, strategy_id: str) -> Path:
    return data_dir / "engines" / "demo" / safe_dirname(strategy_id) / "orders.jsonl"


def has_orders(data_dir: Path, strategy_id: str) -> bool:
    """Cheap: whether any order was logged for the strategy (reads no file)."""
    path = _order_log(data_dir, strategy_id)
    return path.exists() and path.stat().st_size > 0


def orders(data_dir: Path, strategy_id: str) -> list[dict[str, Any]]:
    """Every order the demo engines of every process sent for one strategy, by time."""
    path = _order_log(data_dir, strategy_id)
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue  # a line being written right now
    return sorted(records, key=lambda r: r["t"])


def tenures(records: list[dict[str, Any]], gap: float = 0.5) -> dict[str, list[tuple[float, float]]]:
    """Per process, the spans in which it kept ordering (orders less than ``gap`` apart)."""
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        mine = spans[record["process"]]
        if mine and record["t"] - mine[-1][1] <= gap:
            mine[-1] = (mine[-1][0], record["t"])
        else:
            mine.append((record["t"], record["t"]))
    return dict(spans)


def overlap(records: list[dict[str, Any]], gap: float = 0.5) -> float:
    """Seconds in which two processes were both ordering for the strategy, plus any
    interleaving: an order of one process between two of another's counts too."""
    spans = tenures(records, gap)
    total = 0.0
    names = sorted(spans)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            for a0, a1 in spans[a]:
                for b0, b1 in spans[b]:
                    if min(a1, b1) >= max(a0, b0):
                        total += max(min(a1, b1) - max(a0, b0), 1e-6)
    return total


def epochs_in_order(records: list[dict[str, Any]]) -> bool:
    """Every order of epoch e came before every order of epoch e + 1."""
    epochs = [r["epoch"] for r in records]
    return epochs == sorted(epochs)


def stop(*procs: subprocess.Popen[bytes], timeout: float = 30.0) -> list[int | None]:
    """SIGTERM each process, then wait; kill what does not exit in time."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    codes = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            codes.append(None)
    return codes
