"""What only the embedded store has to prove: a SQLite file shared by two processes."""

from __future__ import annotations

import multiprocessing
import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest

from strategy_manager.core.errors import StoreError
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import SnapshotWrite, codec, open_store
from strategy_manager.core.store.embedded import EmbeddedStore
from strategy_manager.core.store.protocol import StatusRecord

SHARED = "shared:600000.SH:k"
T0 = datetime(2026, 11, 24, 1, 30, tzinfo=UTC)


def _worker(data_dir: str, name: str, rounds: int, start, results) -> None:
    store = open_store(Settings(data_dir=data_dir, snapshot_history=1000))
    start.wait(30)
    seqs, held = [], []
    for n in range(rounds):
        store.upsert_strategy(
            {"user_id": name, "symbol": "600000.SH", "strategy_key": f"k{n}", "engine": "demo"}
        )
        store.upsert_strategy(
            {"user_id": "shared", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo", name: n}
        )
        seqs += store.save_snapshots([SnapshotWrite(SHARED, "demo", {"by": name, "n": n}, T0)])
        lease = store.claim([f"lease:{n}"], name, T0, 3600)
        held += list(lease)
    store.close()
    results.put((name, seqs, held))


def _opener(root: str, trials: int, barrier, results) -> None:
    failures = []
    for n in range(trials):
        barrier.wait(30)
        try:
            open_store(Settings(data_dir=f"{root}/{n}")).close()
        except StoreError as exc:
            failures.append(str(exc))
    results.put(failures)


def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(tmp_path):
    """Switching a new file to WAL needs it alone, and SQLite does not wait for that."""
    ctx = multiprocessing.get_context("spawn")
    opened, trials = 4, 30
    barrier, results = ctx.Barrier(opened), ctx.Queue()
    procs = [
        ctx.Process(target=_opener, args=(str(tmp_path), trials, barrier, results)) for _ in range(opened)
    ]
    for p in procs:
        p.start()
    failures = [f for _ in procs for f in results.get(timeout=120)]
    for p in procs:
        p.join(30)
    assert failures == []


def test_two_processes_writing_at_once_lose_nothing_and_corrupt_nothing(tmp_path):
    data_dir = str(tmp_path / "data")
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Event(), ctx.Queue()
    rounds = 40
    procs = [
        ctx.Process(target=_worker, args=(data_dir, name, rounds, start, results)) for name in ("a", "b")
    ]
    for p in procs:
        p.start()
    start.set()
    outcome = {}
    for _ in procs:
        name, seqs, held = results.get(timeout=60)
        outcome[name] = (seqs, held)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0

    store = EmbeddedStore(Settings(data_dir=data_dir, snapshot_history=1000))
    documents = store.list_strategies()
    assert len(documents) == 2 * rounds + 1
    shared = store.get_strategy(SHARED)
    assert shared["a"] == rounds - 1 and shared["b"] == rounds - 1
    all_seqs = outcome["a"][0] + outcome["b"][0]
    assert sorted(all_seqs) == list(range(1, 2 * rounds + 1))  # unique, none lost
    assert len(store.snapshot_history(SHARED, limit=1000)) == 2 * rounds
    # Each lease went to exactly one of the two processes.
    held_a, held_b = set(outcome["a"][1]), set(outcome["b"][1])
    assert not held_a & held_b and len(held_a | held_b) == rounds
    store.close()
    with sqlite3.connect(tmp_path / "data" / "store.sqlite3") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_the_change_token_sees_another_process_edit(tmp_path):
    settings = Settings(data_dir=str(tmp_path))
    mine, theirs = EmbeddedStore(settings), EmbeddedStore(settings)
    before = mine.change_token()
    theirs.upsert_strategy({"user_id": "u", "symbol": "S", "strategy_key": "k", "engine": "demo"})
    assert mine.change_token() != before
    mine.close()
    theirs.close()


def test_a_snapshot_batch_is_one_transaction(tmp_path, monkeypatch):
    """A failure in the middle of the SQL leaves none of the batch behind."""
    store = EmbeddedStore(Settings(data_dir=str(tmp_path)))
    store.save_snapshots([SnapshotWrite("a:X:1", "demo", {"v": 0}, T0)])
    real = store._conn
    calls = {"n": 0}

    class Flaky:
        def __getattr__(self, name):
            return getattr(real, name)

        def execute(self, sql, *args):
            if sql.startswith("INSERT INTO") and "snapshots" in sql:
                calls["n"] += 1
                if calls["n"] == 2:
                    raise sqlite3.OperationalError("disk I/O error")
            return real.execute(sql, *args)

    monkeypatch.setattr(store, "_conn", Flaky())
    with pytest.raises(StoreError, match="disk I/O error"):
        store.save_snapshots(
            [SnapshotWrite("a:X:1", "demo", {"v": 1}, T0), SnapshotWrite("b:X:1", "demo", {"v": 1}, T0)]
        )
    monkeypatch.setattr(store, "_conn", real)
    assert store.latest_snapshot("a:X:1").state == {"v": 0}
    assert store.latest_snapshot("b:X:1") is None
    store.close()


def test_an_unwritable_data_dir_is_a_store_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match=r"embedded store .*cannot open"):
        EmbeddedStore(Settings(data_dir=str(blocker / "data")))


def test_expired_leases_compare_by_time_not_text(tmp_path):
    store = EmbeddedStore(Settings(data_dir=str(tmp_path)))
    store.claim(["s"], "a", T0, 0.5)
    assert store.claim(["s"], "b", T0 + timedelta(milliseconds=499), 1) == {}
    assert store.claim(["s"], "b", T0 + timedelta(milliseconds=500), 1)["s"].epoch == 2
    store.close()


@pytest.mark.parametrize(
    "heartbeat",
    [
        datetime(2026, 11, 28, 9, 1, 2, 345678, tzinfo=UTC),
        datetime(2026, 11, 28, 9, 1, 2, tzinfo=UTC),
        datetime(1960, 1, 1, 0, 0, 0, 1000, tzinfo=UTC),
        datetime(2026, 11, 28, 17, 1, 2, tzinfo=timezone(timedelta(hours=8))),
    ],
)
def test_status_text_reads_back_as_the_extended_json_encoder_writes_it(heartbeat):
    record = StatusRecord(
        strategy_id="u:600000.SH:k",
        state="RUNNING",
        engine="demo",
        owner="host:1:abc",
        heartbeat=heartbeat,
        restarts=2,
        last_error="价格 bad",
        next_transition="close",
        next_transition_at=None,
        details={"when": heartbeat, "nested": {"a": [1, 2.5, None, "x"]}, 3: "int key"},
    )
    fast = codec.decode_row(codec.status_text(record))
    slow = codec.decode_row(codec.dump_document(codec.status_to_document(record)))
    assert fast == slow
    assert codec.status_from_document(fast).heartbeat == codec.to_ms(heartbeat)
