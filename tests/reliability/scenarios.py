"""The double-run scenarios, shared by the test suite (small) and `make soak` (large).

Each runs real ``strategy-manager run`` processes, injects one fault, and reports
what the engines themselves did, from their order logs (see harness.py): how long
two processes ordered for one strategy at once, whether any older epoch ordered
after a newer one, how many strategies changed hands, and how long a takeover took.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from attrs import define, field

from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store
from tests.conftest import wait_for
from tests.reliability.faults import TcpRelay
from tests.reliability.harness import (
    demo_document,
    epochs_in_order,
    has_orders,
    orders,
    overlap,
    run_env,
    spawn_run,
    stop,
)

LEASE = 3.0
FAST_LEASES = {"lease_seconds": LEASE, "lease_renew_seconds": 0.5, "snapshot_interval": 0.5}


@define
class DoubleRunReport:
    scenario: str
    strategies: int = 0
    #: Seconds two processes ordered for one strategy at once, summed over strategies.
    overlap: float = 0.0
    #: Strategies where an older lease epoch ordered after a newer one.
    epoch_violations: int = 0
    #: Strategies that changed hands (orders from more than one process).
    moved: int = 0
    #: Orders the faulty process sent after another one took the strategy over.
    late_orders: int = 0
    #: The longest time from the fault to the new owner's first order, seconds.
    takeover: float = 0.0
    exit_codes: list[int | None] = field(factory=list)
    problems: list[str] = field(factory=list)

    @property
    def double_runs(self) -> int:
        return int(self.overlap > 0) + self.epoch_violations + self.late_orders


def _ids(n: int, user: str) -> list[str]:
    return [f"{user}:F{i}:k" for i in range(n)]


def _processes(data: Path, ident: str) -> set[str]:
    return {r["process"] for r in orders(data, ident)}


def _measure(report: DoubleRunReport, data: Path, ids: list[str]) -> None:
    for ident in ids:
        records = orders(data, ident)
        if not records:
            report.problems.append(f"{ident}: no orders at all")
            continue
        report.overlap += overlap(records)
        report.epoch_violations += not epochs_in_order(records)
        report.moved += len({r["process"] for r in records}) > 1


def _handover(
    report: DoubleRunReport,
    data: Path,
    ids: list[str],
    faulty: str,
    fault_at: float,
    expiries: dict[str, float] | None = None,
) -> None:
    """For a fault in process ``faulty`` at ``fault_at``: late orders and takeover times;
    with ``expiries`` (each lease's expiry in the store at the fault), a takeover before
    its lease expired is a problem."""
    for ident in ids:
        records = orders(data, ident)
        theirs = [r["t"] for r in records if r["process"] != faulty and r["t"] > fault_at]
        if not theirs:
            report.problems.append(f"{ident}: never taken over")
            continue
        if expiries is not None and theirs[0] < expiries[ident]:
            early = expiries[ident] - theirs[0]
            report.problems.append(
                f"{ident}: the new owner ordered {early:.3f}s before the old lease expired"
            )
        report.late_orders += sum(r["process"] == faulty and r["t"] > theirs[0] for r in records)
        report.takeover = max(report.takeover, theirs[0] - fault_at)


def _seed(store_settings: Settings, ids: list[str], user: str, bar_seconds: float = 0.005) -> object:
    store = open_store(store_settings)
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i, user, bar_seconds=bar_seconds))
    return store


def partition(folder: Path, mongo_uri: str, strategies: int = 20, cut_leases: float = 3.0) -> DoubleRunReport:
    """Two processes on MongoDB; the network to the one running everything is cut
    (a TCP relay switched off) for ``cut_leases`` leases, then restored."""
    report = DoubleRunReport("partition", strategies)
    target = urlsplit(mongo_uri)
    relay = TcpRelay((target.hostname or "127.0.0.1", target.port or 0))
    port = relay.up()
    db, data, ids = f"part_{folder.name[-12:]}", folder / "data", _ids(strategies, "p")
    store = _seed(Settings(data_dir=str(data), mongo_uri=mongo_uri, mongo_db=db), ids, "p")
    common = {**FAST_LEASES, "mongo_db": db, "mongo_timeout_ms": 500}
    cut_off = spawn_run(
        run_env(data, mongo_uri=f"mongodb://127.0.0.1:{port}/?directConnection=true", **common),
        folder / "a.log",
    )
    procs = [cut_off]
    try:
        wait_for(lambda: all(_processes(data, i) for i in ids), 60, "the first process ordering", poll=0.25)
        first = next(iter(_processes(data, ids[0])))
        procs.append(spawn_run(run_env(data, mongo_uri=mongo_uri, **common), folder / "b.log"))
        wait_for(lambda: len(store.read_owners()) == 2, 60, "the second process's heartbeat")  # type: ignore[attr-defined]
        relay.down()
        cut_at = time.time()
        # As renewed last before the cut (a renewal still in flight could only make them later).
        expiries = {sid: lease.expires_at.timestamp() for sid, lease in store.read_leases(ids).items()}  # type: ignore[attr-defined]
        wait_for(lambda: all(len(_processes(data, i)) == 2 for i in ids), 60, "the takeover", poll=0.25)
        wait_for(lambda: time.time() > cut_at + cut_leases * LEASE, 60, "the cut to last")
        relay.up()
        wait_for(
            lambda: any(
                o.pid == cut_off.pid and o.heartbeat and o.heartbeat.timestamp() > cut_at + cut_leases * LEASE
                for o in store.read_owners()  # type: ignore[attr-defined]
            ),
            60,
            "the cut-off process back in touch",
        )
        time.sleep(1.0)  # running with the store back, where a double run would show
    finally:
        relay.down()
        report.exit_codes = stop(*procs)
    _measure(report, data, ids)
    _handover(report, data, ids, first, cut_at, expiries)
    for ident in ids:
        mine = [r["t"] for r in orders(data, ident) if r["process"] == first]
        if mine and max(mine) >= cut_at + LEASE:
            report.problems.append(f"{ident}: the cut-off process ordered after its lease could expire")
    return report


def paused_owner(folder: Path, strategies: int = 5, paused_leases: float = 2.0) -> DoubleRunReport:
    """Two processes on the embedded store; the owner is frozen with SIGSTOP past its
    lease, the other takes over, then the owner is let go with SIGCONT."""
    report = DoubleRunReport("SIGSTOP", strategies)
    data, ids = folder / "data", _ids(strategies, "s")
    store = _seed(Settings(data_dir=str(data)), ids, "s")
    env = run_env(data, **FAST_LEASES)
    paused = spawn_run(env, folder / "a.log")
    procs = [paused]
    try:
        wait_for(lambda: all(_processes(data, i) for i in ids), 60, "the first process ordering", poll=0.25)
        first = next(iter(_processes(data, ids[0])))
        procs.append(spawn_run(env, folder / "b.log"))
        wait_for(lambda: len(store.read_owners()) == 2, 60, "the second process's heartbeat")  # type: ignore[attr-defined]
        paused.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        wait_for(lambda: all(len(_processes(data, i)) == 2 for i in ids), 60, "the takeover", poll=0.25)
        wait_for(lambda: time.time() > paused_at + paused_leases * LEASE, 60, "the pause to last")
        paused.send_signal(signal.SIGCONT)
        wait_for(
            lambda: any(
                o.pid == paused.pid
                and o.heartbeat
                and o.heartbeat.timestamp() > paused_at + paused_leases * LEASE
                for o in store.read_owners()  # type: ignore[attr-defined]
            ),
            60,
            "the paused process running again",
        )
        time.sleep(1.0)  # where a late order or write would show
    finally:
        with contextlib.suppress(OSError):
            paused.send_signal(signal.SIGCONT)
        report.exit_codes = stop(*procs)
    _measure(report, data, ids)
    _handover(report, data, ids, first, paused_at)
    for ident in ids:  # and nothing the paused process wrote landed after the takeover
        history = sorted(store.snapshot_history(ident, limit=10_000), key=lambda s: s.seq)  # type: ignore[attr-defined]
        epochs = [s.lease[1] for s in history if s.lease]
        if epochs != sorted(epochs):
            report.problems.append(f"{ident}: a stale owner's snapshot after the takeover")
    return report


def unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


def same_pid(folder: Path, strategies: int = 10, seconds: float = 2 * LEASE) -> DoubleRunReport:
    """Two processes, each pid 1 in a PID namespace of its own, on one embedded store."""
    report = DoubleRunReport("same pid", strategies)
    data, ids = folder / "data", _ids(strategies, "n")
    store = _seed(Settings(data_dir=str(data)), ids, "n")
    env = run_env(data, **FAST_LEASES)
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    procs = [spawn_run(env, folder / f"{n}.log", prefix) for n in "ab"]
    try:
        wait_for(lambda: all(_processes(data, i) for i in ids), 60, "orders for every strategy", poll=0.25)
        wait_for(lambda: len(store.read_owners()) == 2, 60, "both heartbeats")  # type: ignore[attr-defined]
        pids = {o.pid for o in store.read_owners()}  # type: ignore[attr-defined]
        if pids != {1}:
            report.problems.append(f"the processes' pids were {pids}, not both 1")
        time.sleep(seconds)  # the scenario: nothing happens for this long
    finally:
        for proc in procs:  # unshare does not pass SIGTERM on: tell its child
            with contextlib.suppress(OSError, IndexError, ValueError):
                child = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]
                os.kill(int(child), signal.SIGTERM)
        report.exit_codes = stop(*procs)
    _measure(report, data, ids)
    return report


def healthy_pair(
    folder: Path, mongo_uri: str, strategies: int = 200, seconds: float = 120.0
) -> DoubleRunReport:
    """Two healthy orchestrators on MongoDB side by side for ``seconds``, no fault:
    nothing may change hands."""
    from pymongo import MongoClient

    report = DoubleRunReport("no fault, two orchestrators", strategies)
    db, data, ids = f"flap_{folder.name[-12:]}", folder / "data", _ids(strategies, "h")
    _seed(Settings(data_dir=str(data), mongo_uri=mongo_uri, mongo_db=db), ids, "h", bar_seconds=0.1)
    env = run_env(data, mongo_uri=mongo_uri, mongo_db=db)
    procs = [spawn_run(env, folder / f"{n}.log") for n in "ab"]
    try:
        # Poll lightly: a wire server in this process would starve under a busy test.
        wait_for(lambda: all(has_orders(data, i) for i in ids), 120, "orders for every strategy", poll=0.5)
        time.sleep(seconds)  # the scenario: nothing happens for this long
        before_shutdown: Callable[[str], set[str]] = lambda i: _processes(data, i)  # noqa: E731
        ran_by = {i: before_shutdown(i) for i in ids}
        with MongoClient(mongo_uri) as client:
            epochs = [d["epoch"] for d in client[db]["strategy_leases"].find({}, {"epoch": 1})]
    finally:
        report.exit_codes = stop(*procs)
    _measure(report, data, ids)
    # Whichever process exits first hands its strategies to the other: failover, not
    # flapping; what counts is what moved before the shutdown.
    report.moved = sum(len(p) > 1 for p in ran_by.values())
    if set(epochs) != {1}:
        report.problems.append(f"lease epochs {sorted(set(epochs))}: hand-overs without a fault")
    return report
