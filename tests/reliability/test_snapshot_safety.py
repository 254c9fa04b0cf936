"""Snapshots are never lost and never rolled back."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pymongo import MongoClient

from strategy_manager.core.errors import StoreError
from strategy_manager.core.settings import Settings
from strategy_manager.core.snapshots import SnapshotWriter
from strategy_manager.core.store import SnapshotWrite, open_store
from tests.wire_server import mongoeco_uri  # noqa: F401  (a fixture)

NOW = datetime(2026, 11, 28, tzinfo=UTC)


class DropsTheConnectionMidWrite:
    """The real store, except that the next ``failures`` snapshot writes lose their
    connection after the store may already have applied part of the batch."""

    def __init__(self, inner: object, failures: int) -> None:
        self.inner, self.failures = inner, failures

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def save_snapshots(self, writes: list[SnapshotWrite]) -> list[int]:
        if self.failures:
            self.failures -= 1
            self.inner.save_snapshots(writes[:1])  # half of it landed
            raise StoreError("store: connection reset by peer (injected)")
        return self.inner.save_snapshots(writes)


def test_a_batch_cut_off_by_a_network_error_is_kept_and_written_whole_later(tmp_path):
    real = open_store(Settings(data_dir=str(tmp_path)))
    store = DropsTheConnectionMidWrite(real, failures=2)
    reports: list[tuple[str, int | None, str | None]] = []
    writer = SnapshotWriter(store, 0.01, 0.05, report=lambda *r: reports.append(r))  # type: ignore[arg-type]
    for i in range(3):
        writer.add(SnapshotWrite(f"u:S{i}:k", "demo", {"i": i}, NOW))
    assert not writer.write_once() and len(writer) == 3  # nothing leaves memory unacknowledged
    assert not writer.write_once() and len(writer) == 3
    assert writer.write_once() and len(writer) == 0
    for i in range(3):
        assert real.latest_snapshot(f"u:S{i}:k").state == {"i": i}
    assert sorted(sid for sid, seq, problem in reports if problem is None and seq) == [
        f"u:S{i}:k" for i in range(3)
    ]


def test_a_snapshot_taken_while_one_was_being_written_is_not_lost(tmp_path):
    real = open_store(Settings(data_dir=str(tmp_path)))
    writer = SnapshotWriter(real, 0.01, 0.05)

    class Slow:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def save_snapshots(self, writes: list[SnapshotWrite]) -> list[int]:
            writer.add(SnapshotWrite("u:S:k", "demo", {"v": "newer"}, NOW))  # arrives meanwhile
            return real.save_snapshots(writes)

    writer.store = Slow()  # type: ignore[assignment]
    writer.add(SnapshotWrite("u:S:k", "demo", {"v": "older"}, NOW))
    assert writer.write_once()
    assert writer.pending("u:S:k").state == {"v": "newer"}  # kept: not acknowledged yet
    writer.store = real
    assert writer.write_once() and len(writer) == 0
    assert real.latest_snapshot("u:S:k").state == {"v": "newer"}


@pytest.mark.parametrize("backend", ["embedded", "mongodb"])
def test_clearing_the_lease_collection_never_rolls_a_sequence_back(tmp_path, backend, request):
    settings = Settings(data_dir=str(tmp_path))
    if backend == "mongodb":
        uri = request.getfixturevalue("mongoeco_uri")
        settings = Settings(data_dir=str(tmp_path), mongo_uri=uri, mongo_db=f"seq_{tmp_path.name[-12:]}")
    store = open_store(settings)
    sid = "u:S:k"
    held = store.claim([sid], "owner-a", NOW, 15)[sid]
    for n in range(5):
        store.save_snapshots([SnapshotWrite(sid, "demo", {"n": n}, NOW, lease=("owner-a", held.epoch))])
    newest = store.latest_snapshot(sid)
    if backend == "mongodb":
        with MongoClient(settings.mongo_uri) as client:
            client[settings.mongo_db]["strategy_leases"].delete_many({})
    else:
        import sqlite3

        with sqlite3.connect(settings.embedded_path) as db:
            db.execute("DELETE FROM strategy_leases")
    again = store.claim([sid], "owner-b", NOW, 15)[sid]
    assert store.latest_snapshot(sid) == newest  # the next start restores the newest, not an old one
    (seq,) = store.save_snapshots([SnapshotWrite(sid, "demo", {"n": 5}, NOW, lease=("owner-b", again.epoch))])
    assert seq == newest.seq + 1
    assert store.latest_snapshot(sid).state == {"n": 5}
