"""The embedded store: one SQLite file (standard library), WAL mode, documents as JSON.

Used when no ``MONGO_URI`` is configured at any level. Two processes on one machine
may share the file: every write is a ``BEGIN IMMEDIATE`` transaction (one writer at a
time, the others wait up to the busy timeout) and WAL lets readers go on meanwhile.
Within a process one connection serves every thread, behind a lock.

Tables are named after the configured collections. A trigger counts every change to
the strategies table, so :meth:`EmbeddedStore.change_token` is one indexed read and
also sees edits made by another process or by hand.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.errors import SnapshotError, StoreError, StoreLost
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import describe
from strategy_manager.core.store import codec, describe_location
from strategy_manager.core.store.protocol import (
    AccountHalt,
    Lease,
    OwnerRecord,
    Snapshot,
    SnapshotWrite,
    StatusRecord,
    UpsertResult,
)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_SECONDS = 30.0
#: Ids per IN (...) list: SQLite allows 32,766 bound values; smaller keeps each statement short.
IN_BATCH = 500


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class EmbeddedStore:
    kind = "embedded"

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        self.path = Path(settings.embedded_path)
        self.location = describe_location(settings)
        self.clock = clock or SystemClock()
        self.history = max(1, settings.snapshot_history)
        self._t = {
            "strategies": _quote(settings.strategies_collection),
            "snapshots": _quote(settings.snapshots_collection),
            "status": _quote(settings.status_collection),
            "leases": _quote(settings.leases_collection),
            "owners": _quote(settings.owners_collection),
            "changes": _quote(settings.strategies_collection + "_changes"),
            "halts": _quote(settings.halts_collection),
            "halt_changes": _quote(settings.halts_collection + "_changes"),
        }
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_SECONDS,
                isolation_level=None,
                check_same_thread=False,
            )
            self._enable_wal()
            self._conn.execute("PRAGMA synchronous=FULL")
            self._create_schema()
            self._identity = self._file_identity()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"embedded store {self.location}: cannot open: {exc}") from None

    def _file_identity(self) -> tuple[int, int]:
        stat = self.path.stat()
        return stat.st_dev, stat.st_ino

    def _check_file(self) -> None:
        """StoreLost if the file we opened was deleted or replaced under us: SQLite
        would go on writing into the unlinked file, which nobody else can see."""
        try:
            same = self._file_identity() == self._identity
        except FileNotFoundError:
            same = False
        if not same:
            raise StoreLost(
                f"embedded store {self.location}: the file was deleted or replaced while open; "
                "stopping rather than writing where nobody reads"
            )

    def _enable_wal(self) -> None:
        """Switch the file to WAL, waiting for other processes doing the same.

        The switch needs the file to itself, and SQLite reports a competing
        connection at once instead of calling the busy handler (a lock upgrade
        could deadlock), so two processes opening a new store together would
        fail without this wait.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _create_schema(self) -> None:
        t = self._t
        with self._lock, self._errors():  # executescript commits first: BEGIN goes inside
            self._conn.executescript(
                f"""
                BEGIN IMMEDIATE;
                CREATE TABLE IF NOT EXISTS {t["strategies"]} (
                    id TEXT PRIMARY KEY,
                    user_id TEXT NOT NULL,
                    symbol TEXT NOT NULL,
                    strategy_key TEXT NOT NULL,
                    document TEXT NOT NULL,
                    updated_at TEXT NOT NULL
                );
                CREATE UNIQUE INDEX IF NOT EXISTS {_quote(t["strategies"][1:-1] + "_natural_key")}
                    ON {t["strategies"]} (user_id, symbol, strategy_key);
                CREATE TABLE IF NOT EXISTS {t["changes"]} (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    counter INTEGER NOT NULL
                );
                INSERT OR IGNORE INTO {t["changes"]} VALUES (1, 0);
                CREATE TRIGGER IF NOT EXISTS {_quote(t["strategies"][1:-1] + "_inserted")}
                    AFTER INSERT ON {t["strategies"]}
                    BEGIN UPDATE {t["changes"]} SET counter = counter + 1; END;
                CREATE TRIGGER IF NOT EXISTS {_quote(t["strategies"][1:-1] + "_updated")}
                    AFTER UPDATE ON {t["strategies"]}
                    BEGIN UPDATE {t["changes"]} SET counter = counter + 1; END;
                CREATE TRIGGER IF NOT EXISTS {_quote(t["strategies"][1:-1] + "_deleted")}
                    AFTER DELETE ON {t["strategies"]}
                    BEGIN UPDATE {t["changes"]} SET counter = counter + 1; END;
                CREATE TABLE IF NOT EXISTS {t["snapshots"]} (
                    strategy_id TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    taken_at TEXT NOT NULL,
                    engine TEXT NOT NULL,
                    state TEXT NOT NULL,
                    owner TEXT,
                    epoch INTEGER,
                    PRIMARY KEY (strategy_id, seq)
                );
                CREATE TABLE IF NOT EXISTS {t["status"]} (
                    strategy_id TEXT PRIMARY KEY,
                    record TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS {t["leases"]} (
                    strategy_id TEXT PRIMARY KEY,
                    owner TEXT NOT NULL,
                    epoch INTEGER NOT NULL,
                    expires_at TEXT NOT NULL
                );
                CREATE INDEX IF NOT EXISTS {_quote(t["leases"][1:-1] + "_owner")}
                    ON {t["leases"]} (owner);
                CREATE TABLE IF NOT EXISTS {t["owners"]} (
                    owner TEXT PRIMARY KEY,
                    record TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS {t["halts"]} (
                    account TEXT PRIMARY KEY,
                    record TEXT NOT NULL
                );
                CREATE TABLE IF NOT EXISTS {t["halt_changes"]} (
                    id INTEGER PRIMARY KEY CHECK (id = 1),
                    counter INTEGER NOT NULL
                );
                INSERT OR IGNORE INTO {t["halt_changes"]} VALUES (1, 0);
                CREATE TRIGGER IF NOT EXISTS {_quote(t["halts"][1:-1] + "_inserted")}
                    AFTER INSERT ON {t["halts"]}
                    BEGIN UPDATE {t["halt_changes"]} SET counter = counter + 1; END;
                CREATE TRIGGER IF NOT EXISTS {_quote(t["halts"][1:-1] + "_updated")}
                    AFTER UPDATE ON {t["halts"]}
                    BEGIN UPDATE {t["halt_changes"]} SET counter = counter + 1; END;
                CREATE TRIGGER IF NOT EXISTS {_quote(t["halts"][1:-1] + "_deleted")}
                    AFTER DELETE ON {t["halts"]}
                    BEGIN UPDATE {t["halt_changes"]} SET counter = counter + 1; END;
                COMMIT;
                """
            )
            columns = {row[1] for row in self._conn.execute(f"PRAGMA table_info({t['snapshots']})")}
            for name, kind in (("owner", "TEXT"), ("epoch", "INTEGER")):
                if name not in columns:  # a store made by an earlier version
                    self._conn.execute(f"ALTER TABLE {t['snapshots']} ADD COLUMN {name} {kind}")

    # -- transactions --------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: committed whole or rolled back whole."""
        with self._lock, self._errors():
            self._check_file()
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self._check_file()
            yield self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise StoreError(f"embedded store {self.location}: {exc}") from None

    # -- strategy documents ----------------------------------------------------------
    def _row_document(self, row: tuple[str, str]) -> dict[str, Any]:
        return {"_id": row[0], **codec.decode_row(row[1])}

    def _find(self, db: sqlite3.Connection, ident: str) -> tuple[str, str] | None:
        parts = codec.split_ident(ident)
        t = self._t["strategies"]
        if parts is not None:
            row = db.execute(
                f"SELECT id, document FROM {t} WHERE user_id = ? AND symbol = ? AND strategy_key = ?",
                parts,
            ).fetchone()
            if row is not None:
                return row
        return db.execute(f"SELECT id, document FROM {t} WHERE id = ?", (ident,)).fetchone()

    def list_strategies(self) -> list[dict[str, Any]]:
        """Every row; one that cannot be decoded, or whose document names another
        strategy than its key columns, comes back as an invalid entry of its own."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT id, user_id, symbol, strategy_key, document FROM {self._t['strategies']} "
                "ORDER BY user_id, symbol, strategy_key"
            ).fetchall()
        return [self._listed(row) for row in rows]

    @staticmethod
    def _listed(row: tuple[Any, ...]) -> dict[str, Any]:
        ident, key, text = str(row[0]), row[1:4], row[4]
        try:
            if not isinstance(text, str):
                raise StoreError(f"stored document is a {type(text).__name__}, not JSON text")
            document = {"_id": ident, **codec.decode_row(text)}
        except StoreError as exc:
            return codec.invalid_row(ident, str(exc), key)
        stated = tuple(document.get(k) for k in codec.NATURAL_KEY)
        if stated != tuple(key):
            shown = ":".join(str(k) for k in key)
            return codec.invalid_row(
                ident,
                f"the document's user_id/symbol/strategy_key do not match its row ({shown}); "
                "edit it through strategy-manager",
                key,
            )
        return document

    def get_strategy(self, ident: str) -> dict[str, Any] | None:
        with self._read() as db:
            row = self._find(db, ident)
        return None if row is None else self._row_document(row)

    def upsert_strategy(self, document: dict[str, Any]) -> UpsertResult:
        doc = dict(document)
        given_id = doc.pop("_id", None)
        key = codec.natural_key(doc)
        codec.check_field_names(doc)
        now = codec.to_ms(self.clock.now())
        ident = ":".join(key)
        t = self._t["strategies"]
        with self._write() as db:
            row = db.execute(
                f"SELECT id, document FROM {t} WHERE user_id = ? AND symbol = ? AND strategy_key = ?",
                key,
            ).fetchone()
            if row is not None:
                merged = {**codec.decode_row(row[1]), **doc, "updated_at": now}
                db.execute(
                    f"UPDATE {t} SET document = ?, updated_at = ? WHERE id = ?",
                    (self._encode(merged), codec.iso(now), row[0]),
                )
                return UpsertResult(ident=ident, inserted=False)
            new_id = str(given_id) if given_id is not None else secrets.token_hex(12)
            if db.execute(f"SELECT 1 FROM {t} WHERE id = ?", (new_id,)).fetchone():
                raise StoreError(f"{ident}: _id {new_id} already belongs to another document")
            db.execute(
                f"INSERT INTO {t} (id, user_id, symbol, strategy_key, document, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (new_id, *key, self._encode({**doc, "updated_at": now}), codec.iso(now)),
            )
        return UpsertResult(ident=ident, inserted=True)

    def _encode(self, document: dict[str, Any]) -> str:
        try:
            return codec.dump_document(document)
        except (TypeError, ValueError) as exc:
            raise StoreError(f"{describe(document)}: cannot encode the document: {exc}") from None

    def update_strategy(self, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
        if "_id" in changes:
            raise StoreError(f"strategy {ident}: _id cannot be changed")
        codec.check_field_names(changes)
        now = codec.to_ms(self.clock.now())
        t = self._t["strategies"]
        with self._write() as db:
            row = self._find(db, ident)
            if row is None:
                raise StoreError(f"strategy {ident}: not found")
            merged = {**codec.decode_row(row[1]), **changes, "updated_at": now}
            key = codec.natural_key(merged)
            clash = db.execute(
                f"SELECT id FROM {t} WHERE user_id = ? AND symbol = ? AND strategy_key = ? AND id != ?",
                (*key, row[0]),
            ).fetchone()
            if clash is not None:
                raise StoreError(f"strategy {ident}: {':'.join(key)} already exists")
            db.execute(
                f"UPDATE {t} SET user_id = ?, symbol = ?, strategy_key = ?, document = ?, "
                "updated_at = ? WHERE id = ?",
                (*key, self._encode(merged), codec.iso(now), row[0]),
            )
        return {"_id": row[0], **merged}

    def remove_strategy(self, ident: str) -> bool:
        with self._write() as db:
            row = self._find(db, ident)
            if row is None:
                return False
            db.execute(f"DELETE FROM {self._t['strategies']} WHERE id = ?", (row[0],))
        return True

    def change_token(self) -> Hashable:
        with self._read() as db:
            return db.execute(f"SELECT counter FROM {self._t['changes']}").fetchone()[0]

    def watch(self) -> Iterator[None] | None:
        return None  # SQLite cannot notify another process: callers poll change_token()

    # -- snapshots -----------------------------------------------------------------
    def save_snapshots(self, writes: Sequence[SnapshotWrite]) -> list[int]:
        seqs: list[int | None] = [None] * len(writes)
        failures: dict[int, str] = {}
        encoded: dict[int, str] = {}
        for i, w in enumerate(writes):
            try:
                codec.check_state(w.strategy_id, w.state)
                encoded[i] = codec.dump_state(w.state)
            except SnapshotError as exc:
                failures[i] = str(exc)
        t = self._t["snapshots"]
        with self._write() as db:
            for i, text in encoded.items():
                w = writes[i]
                if w.lease is not None:
                    refused = self._fence(db, w.strategy_id, w.lease)
                    if refused:
                        failures[i] = refused
                        continue
                # A row-level problem (a hand-edited row, say) stays this write's own;
                # an I/O or lock error fails the whole transaction (retried by the caller).
                db.execute("SAVEPOINT one_snapshot")
                try:
                    seqs[i] = self._insert_snapshot(db, t, w, text)
                except (sqlite3.IntegrityError, sqlite3.DataError) as exc:
                    db.execute("ROLLBACK TO one_snapshot")
                    failures[i] = f"{w.strategy_id}: snapshot not written: {exc}"
                db.execute("RELEASE one_snapshot")
        if failures:
            raise codec.SnapshotBatchError([failures[i] for i in sorted(failures)], seqs)
        return [s for s in seqs if s is not None]

    def _insert_snapshot(self, db: sqlite3.Connection, t: str, w: SnapshotWrite, text: str) -> int:
        # Only integer rows count: a hand-edited text seq must not stop the sequence.
        (last,) = db.execute(
            f"SELECT max(seq) FROM {t} WHERE strategy_id = ? AND typeof(seq) = 'integer'",
            (w.strategy_id,),
        ).fetchone()
        seq = int(last or 0) + 1
        owner, epoch = w.lease if w.lease is not None else (None, None)
        db.execute(
            f"INSERT INTO {t} (strategy_id, seq, taken_at, engine, state, owner, epoch) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (w.strategy_id, seq, codec.iso(w.taken_at), w.engine, text, owner, epoch),
        )
        db.execute(
            f"DELETE FROM {t} WHERE strategy_id = ? AND typeof(seq) = 'integer' AND seq <= ?",
            (w.strategy_id, seq - self.history),
        )
        return seq

    def _fence(self, db: sqlite3.Connection, strategy_id: str, lease: tuple[str, int]) -> str | None:
        row = db.execute(
            f"SELECT owner, epoch FROM {self._t['leases']} WHERE strategy_id = ?", (strategy_id,)
        ).fetchone()
        if row is not None and (row[0], row[1]) == tuple(lease):
            return None
        holder = f"held by {row[0]} at epoch {row[1]}" if row else "no lease exists"
        return (
            f"{strategy_id}: snapshot refused: lease of {lease[0]} at epoch {lease[1]} "
            f"is no longer current ({holder})"
        )

    def _snapshot(self, row: tuple[Any, ...]) -> Snapshot:
        try:
            state, error = codec.load_state(row[4]), None
        except SnapshotError as exc:
            state, error = {}, str(exc)
        try:
            taken = codec.from_iso(row[2])
        except (TypeError, ValueError):
            taken, error = codec.LONG_AGO, error or f"stored taken_at {row[2]!r} is not a time"
        lease = (str(row[5]), int(row[6])) if row[5] is not None and row[6] is not None else None
        return Snapshot(
            strategy_id=row[0],
            seq=row[1],
            taken_at=taken,
            engine=str(row[3]),
            state=state,
            error=error,
            lease=lease,
        )

    def latest_snapshot(self, strategy_id: str) -> Snapshot | None:
        found = self.snapshot_history(strategy_id, limit=1)
        return found[0] if found else None

    def latest_snapshots(self, strategy_ids: Sequence[str]) -> dict[str, Snapshot]:
        ids = list(dict.fromkeys(strategy_ids))
        t = self._t["snapshots"]
        found: dict[str, Snapshot] = {}
        with self._read() as db:
            for start in range(0, len(ids), IN_BATCH):
                batch = ids[start : start + IN_BATCH]
                marks = ",".join("?" * len(batch))
                rows = db.execute(
                    "SELECT s.strategy_id, s.seq, s.taken_at, s.engine, s.state, s.owner, s.epoch "
                    f"FROM {t} s JOIN "
                    f"(SELECT strategy_id, max(seq) AS seq FROM {t} WHERE strategy_id IN ({marks}) "
                    "AND typeof(seq) = 'integer' GROUP BY strategy_id) m "
                    "ON s.strategy_id = m.strategy_id AND s.seq = m.seq",
                    batch,
                ).fetchall()
                for row in rows:
                    found[row[0]] = self._snapshot(row)
        return found

    def snapshot_history(self, strategy_id: str, limit: int = 20) -> list[Snapshot]:
        """Newest first."""
        with self._read() as db:
            rows = db.execute(
                f"SELECT strategy_id, seq, taken_at, engine, state, owner, epoch FROM {self._t['snapshots']} "
                "WHERE strategy_id = ? AND typeof(seq) = 'integer' ORDER BY seq DESC LIMIT ?",
                (strategy_id, limit),
            ).fetchall()
        return [self._snapshot(r) for r in rows]

    # -- ownership -------------------------------------------------------------------
    def claim(
        self,
        strategy_ids: Sequence[str],
        owner: str,
        now: datetime,
        seconds: float,
        steal_from: Collection[str] = (),
    ) -> dict[str, Lease]:
        now = codec.to_ms(now)
        expires = codec.to_ms(now + timedelta(seconds=seconds))
        held: dict[str, Lease] = {}
        t = self._t["leases"]
        with self._write() as db:
            for sid in dict.fromkeys(strategy_ids):
                row = db.execute(
                    f"SELECT owner, epoch, expires_at FROM {t} WHERE strategy_id = ?", (sid,)
                ).fetchone()
                if row is None:
                    epoch = 1
                    db.execute(
                        f"INSERT INTO {t} (strategy_id, owner, epoch, expires_at) VALUES (?, ?, ?, ?)",
                        (sid, owner, epoch, codec.iso(expires)),
                    )
                elif row[0] == owner or row[0] in steal_from or codec.from_iso(row[2]) <= now:
                    epoch = row[1] if row[0] == owner else row[1] + 1
                    db.execute(
                        f"UPDATE {t} SET owner = ?, epoch = ?, expires_at = ? WHERE strategy_id = ?",
                        (owner, epoch, codec.iso(expires), sid),
                    )
                else:
                    continue
                held[sid] = Lease(strategy_id=sid, owner=owner, epoch=epoch, expires_at=expires)
        return held

    def renew(
        self, owner: str, now: datetime, seconds: float, held: Collection[str] | None
    ) -> dict[str, int] | None:
        expires = codec.iso(codec.to_ms(now + timedelta(seconds=seconds)))
        t = self._t["leases"]
        with self._write() as db:
            renewed = db.execute(f"UPDATE {t} SET expires_at = ? WHERE owner = ?", (expires, owner)).rowcount
            if held is not None and renewed == len(held):
                return None
            rows = db.execute(f"SELECT strategy_id, epoch FROM {t} WHERE owner = ?", (owner,)).fetchall()
        return {str(sid): int(epoch) for sid, epoch in rows}

    def read_leases(self, strategy_ids: Sequence[str]) -> dict[str, Lease]:
        t = self._t["leases"]
        with self._read() as db:
            return {
                sid: Lease(strategy_id=sid, owner=row[0], epoch=row[1], expires_at=codec.from_iso(row[2]))
                for sid in dict.fromkeys(strategy_ids)
                if (
                    row := db.execute(
                        f"SELECT owner, epoch, expires_at FROM {t} WHERE strategy_id = ?", (sid,)
                    ).fetchone()
                )
                is not None
            }

    def release(self, strategy_ids: Sequence[str], owner: str) -> None:
        with self._write() as db:
            db.executemany(
                f"UPDATE {self._t['leases']} SET owner = '', expires_at = ? "
                "WHERE strategy_id = ? AND owner = ?",
                [(codec.iso(codec.LONG_AGO), sid, owner) for sid in strategy_ids],
            )

    def write_owner(self, record: OwnerRecord) -> None:
        text = codec.dump_document(codec.owner_to_document(record))
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO {self._t['owners']} (owner, record) VALUES (?, ?)",
                (record.owner, text),
            )

    def read_owners(self) -> list[OwnerRecord]:
        with self._read() as db:
            rows = db.execute(f"SELECT owner, record FROM {self._t['owners']} ORDER BY owner").fetchall()
        owners = []
        for owner, text in rows:
            try:
                owners.append(codec.owner_from_document(codec.decode_row(text)))
            except (StoreError, TypeError, ValueError) as exc:
                log.error("embedded store %s: owner record %r unreadable: %s", self.location, owner, exc)
        return owners

    # -- account halts -----------------------------------------------------------------
    def halt_account(self, halt: AccountHalt) -> None:
        text = codec.dump_document(codec.halt_to_document(halt))
        with self._write() as db:
            db.execute(
                f"INSERT OR REPLACE INTO {self._t['halts']} (account, record) VALUES (?, ?)",
                (halt.account, text),
            )

    def resume_account(self, account: str) -> bool:
        with self._write() as db:
            return db.execute(f"DELETE FROM {self._t['halts']} WHERE account = ?", (account,)).rowcount > 0

    def list_halts(self) -> list[AccountHalt]:
        """Every halt; a record that does not decode still halts its account."""
        with self._read() as db:
            rows = db.execute(f"SELECT account, record FROM {self._t['halts']} ORDER BY account").fetchall()
        halts = []
        for account, text in rows:
            try:
                halts.append(codec.halt_from_document({**codec.decode_row(text), "account": account}))
            except (StoreError, TypeError, ValueError) as exc:
                log.error("embedded store %s: halt of %r unreadable: %s", self.location, account, exc)
                halts.append(AccountHalt(account=str(account), reason="(its halt record is unreadable)"))
        return halts

    def halts_token(self) -> Hashable:
        with self._read() as db:
            return db.execute(f"SELECT counter FROM {self._t['halt_changes']}").fetchone()[0]

    # -- runtime status ----------------------------------------------------------------
    def write_status(self, records: Sequence[StatusRecord]) -> None:
        rows = [(r.strategy_id, codec.status_text(r)) for r in records]
        with self._write() as db:
            db.executemany(
                f"INSERT OR REPLACE INTO {self._t['status']} (strategy_id, record) VALUES (?, ?)",
                rows,
            )

    def read_status(self) -> list[StatusRecord]:
        with self._read() as db:
            rows = db.execute(
                f"SELECT strategy_id, record FROM {self._t['status']} ORDER BY strategy_id"
            ).fetchall()
        records = []
        for sid, text in rows:
            try:
                records.append(codec.status_from_document(codec.decode_row(text)))
            except (StoreError, TypeError, ValueError) as exc:
                log.error("embedded store %s: status of %r unreadable: %s", self.location, sid, exc)
        return records

    def close(self) -> None:
        with self._lock:
            self._conn.close()
