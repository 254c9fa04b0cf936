"""No strategy ever trades in two processes at once: a partition, a paused process,
two processes with one pid, and two healthy orchestrators side by side.

Measured from the engines' own order logs (see harness.py), not from ``status``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pymongo import MongoClient

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
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

LEASE = 3.0
FAST_LEASES = {"lease_seconds": LEASE, "lease_renew_seconds": 0.5, "snapshot_interval": 0.5}


def _ids(n: int, user: str = "f") -> list[str]:
    return [f"{user}:F{i}:k" for i in range(n)]


def _processes(data: Path, ident: str) -> set[str]:
    return {r["process"] for r in orders(data, ident)}


def _by(data: Path, ident: str, process: str) -> list[dict]:
    return [r for r in orders(data, ident) if r["process"] == process]


def _only_process(data: Path, ident: str) -> str | None:
    found = _processes(data, ident)
    return next(iter(found)) if len(found) == 1 else None


def _assert_no_double_run(data: Path, ids: list[str]) -> None:
    for ident in ids:
        records = orders(data, ident)
        assert records, f"{ident}: no orders at all"
        assert overlap(records) == 0.0, f"{ident}: two processes ordered at once"
        assert epochs_in_order(records), f"{ident}: an older epoch ordered after a newer one"


@pytest.mark.slow
def test_a_partitioned_owner_stops_ordering_before_the_other_takes_over(tmp_path, mongoeco_uri):  # noqa: F811
    target = urlsplit(mongoeco_uri)
    relay = TcpRelay((target.hostname, target.port))
    port = relay.up()
    db = f"part_{tmp_path.name[-12:]}"
    data = tmp_path / "data"
    ids = _ids(20)
    store = open_store(Settings(data_dir=str(data), mongo_uri=mongoeco_uri, mongo_db=db))
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i))
    common = {**FAST_LEASES, "mongo_db": db, "mongo_timeout_ms": 500}
    cut_off = spawn_run(
        run_env(data, mongo_uri=f"mongodb://127.0.0.1:{port}/?directConnection=true", **common),
        tmp_path / "a.log",
    )
    other = None
    try:
        wait_for(
            lambda: all(_processes(data, i) for i in ids), 30, "the first process ordering for all", poll=0.25
        )
        first = _only_process(data, ids[0])
        other = spawn_run(run_env(data, mongo_uri=mongoeco_uri, **common), tmp_path / "b.log")
        wait_for(lambda: len(store.read_owners()) == 2, 30, "the second process's heartbeat")
        relay.down()
        cut_at = time.time()
        wait_for(
            lambda: all(len(_processes(data, i)) == 2 for i in ids),
            30,
            "the takeover of every strategy",
            poll=0.25,
        )
        wait_for(lambda: time.time() > cut_at + 3 * LEASE, 30, "three leases' time cut off")
        relay.up()
        # The cut-off process learns it lost everything, and orders nothing more.
        wait_for(
            lambda: any(
                o.heartbeat and o.heartbeat.timestamp() > cut_at + 3 * LEASE
                for o in store.read_owners()
                if o.pid == cut_off.pid
            ),
            30,
            "the first process back in touch",
        )
        time.sleep(1.0)  # let it run with the store back, where a double run would show
    finally:
        relay.down()
        codes = stop(cut_off, *([other] if other else []))
    assert codes == [0, 0], (tmp_path / "a.log").read_text()[-2000:]
    _assert_no_double_run(data, ids)
    for ident in ids:
        mine = _by(data, ident, first)
        theirs = [r for r in orders(data, ident) if r["process"] != first]
        # One handover each: the first process's last order comes before the second's first.
        assert mine and theirs and mine[-1]["t"] < theirs[0]["t"], ident
        assert mine[-1]["t"] < cut_at + LEASE, ident  # fenced before its lease could expire
    status = {r.strategy_id: r for r in store.read_status()}
    assert {status[i].owner.split(":")[-2] for i in ids} == {str(other.pid)}


@pytest.mark.slow
def test_a_paused_owner_orders_and_writes_nothing_after_the_takeover(tmp_path):
    data = tmp_path / "data"
    ids = _ids(5, "p")
    store = open_store(Settings(data_dir=str(data)))
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i, "p"))
    env = run_env(data, **FAST_LEASES)
    paused = spawn_run(env, tmp_path / "a.log")
    other = None
    try:
        wait_for(lambda: all(_processes(data, i) for i in ids), 30, "the first process ordering", poll=0.25)
        first = _only_process(data, ids[0])
        other = spawn_run(env, tmp_path / "b.log")
        wait_for(lambda: len(store.read_owners()) == 2, 30, "the second process's heartbeat")
        paused.send_signal(signal.SIGSTOP)
        paused_at = time.time()
        wait_for(lambda: all(len(_processes(data, i)) == 2 for i in ids), 30, "the takeover", poll=0.25)
        wait_for(lambda: time.time() > paused_at + 2 * LEASE, 30, "two leases' time paused")
        taken_at = {i: min(r["t"] for r in orders(data, i) if r["process"] != first) for i in ids}
        paused.send_signal(signal.SIGCONT)
        wait_for(
            lambda: any(
                o.pid == paused.pid and o.heartbeat.timestamp() > paused_at + 2 * LEASE
                for o in store.read_owners()
            ),
            30,
            "the paused process running again",
        )
        time.sleep(1.0)  # where a late order or write would show
    finally:
        if paused.poll() is None:
            paused.send_signal(signal.SIGCONT)
        codes = stop(paused, *([other] if other else []))
    assert codes == [0, 0]
    _assert_no_double_run(data, ids)
    for ident in ids:
        assert all(r["t"] < taken_at[ident] for r in _by(data, ident, first)), ident
        history = sorted(store.snapshot_history(ident, limit=1000), key=lambda s: s.seq)
        epochs = [s.lease[1] for s in history if s.lease]
        assert epochs == sorted(epochs), f"{ident}: a stale owner's snapshot after the takeover"
        late = [
            s for s in history if s.lease and s.lease[1] == 1 and s.taken_at.timestamp() > taken_at[ident]
        ]
        assert late == [], ident
    owners = {r.owner for r in store.read_status() if r.strategy_id in ids}
    assert len(owners) == 1 and owners.pop().split(":")[-2] == str(other.pid)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True, check=False
    )
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _unshare_works(), reason="no PID namespaces here (unshare --pid needs privileges)")
def test_two_processes_with_the_same_pid_in_separate_namespaces_never_share_a_strategy(tmp_path):
    data = tmp_path / "data"
    ids = _ids(10, "n")
    store = open_store(Settings(data_dir=str(data)))
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i, "n"))
    env = run_env(data, **FAST_LEASES)
    prefix = ("unshare", "--pid", "--fork", "--mount-proc")
    one = spawn_run(env, tmp_path / "a.log", prefix)
    two = spawn_run(env, tmp_path / "b.log", prefix)
    try:
        wait_for(lambda: all(_processes(data, i) for i in ids), 30, "orders for every strategy", poll=0.25)
        wait_for(lambda: len(store.read_owners()) == 2, 30, "both heartbeats")
        owners = store.read_owners()
        assert {o.pid for o in owners} == {1}  # the same pid, in two namespaces
        assert len({o.owner for o in owners}) == 2
        t0 = time.time()
        wait_for(lambda: time.time() > t0 + 2 * LEASE, 30, "two leases' time")
    finally:
        for proc in (one, two):  # unshare does not pass SIGTERM on: tell its child
            with contextlib.suppress(OSError, IndexError, ValueError):
                child = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()[0]
                os.kill(int(child), signal.SIGTERM)
        codes = stop(one, two)
    assert codes == [0, 0]
    _assert_no_double_run(data, ids)
    assert all(len(_processes(data, i)) == 1 for i in ids)
    assert {r["pid"] for i in ids for r in orders(data, i)} == {1}


@pytest.mark.slow
def test_two_healthy_orchestrators_share_the_fleet_without_a_hand_over(tmp_path, mongoeco_uri):  # noqa: F811
    seconds = float(os.environ.get("QSM_FLAP_SECONDS", "120"))
    db = f"flap_{tmp_path.name[-12:]}"
    data = tmp_path / "data"
    ids = _ids(200, "h")
    store = open_store(Settings(data_dir=str(data), mongo_uri=mongoeco_uri, mongo_db=db))
    for i in range(len(ids)):
        store.upsert_strategy(demo_document(i, "h", bar_seconds=0.1))
    env = run_env(data, mongo_uri=mongoeco_uri, mongo_db=db)
    procs = [spawn_run(env, tmp_path / f"{n}.log") for n in "ab"]
    try:
        # Poll lightly: the wire server runs in this process, and a busy test starves it.
        wait_for(lambda: all(has_orders(data, i) for i in ids), 60, "orders for every strategy")
        time.sleep(seconds)  # the scenario is "nothing happens for this long"
        # What ran where, before the shutdown (whichever process exits first hands its
        # strategies to the other: that is failover, not flapping).
        ran_by = {i: {r["process"] for r in orders(data, i)} for i in ids}
        with MongoClient(mongoeco_uri) as client:
            epochs = {d["_id"]: d["epoch"] for d in client[db]["strategy_leases"].find({}, {"epoch": 1})}
    finally:
        codes = stop(*procs)
    assert codes == [0, 0]
    _assert_no_double_run(data, ids)
    moved = sorted(i for i, processes in ran_by.items() if len(processes) > 1)
    logs = "".join((tmp_path / f"{n}.log").read_text()[-1500:] for n in "ab")
    assert moved == [], f"moved without a fault: {moved[:5]}\n{logs}"
    assert set(epochs) == set(ids)
    assert set(epochs.values()) == {1}, "hand-overs without a fault"
