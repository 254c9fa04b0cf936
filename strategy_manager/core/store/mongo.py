"""The MongoDB store, through pymongo: any ``MONGO_URI`` (standalone, replica set, Atlas).

Five collections, named in settings: the users' strategy documents; snapshots (one
document per write, majority write concern, numbered from the snapshots themselves
under a unique index, so a sequence never goes back); runtime status (one document
per strategy, ``_id`` = strategy id); leases (one document per strategy, ``_id`` =
strategy id, holding ``owner``, ``epoch`` and ``expires_at``); owners (one heartbeat
document per orchestrator process). Every change of a lease's owner is one
conditional ``find_one_and_update`` on that lease document, which also checks the
expiry, so a renewal and a takeover can never both succeed.

Documents are decoded one at a time: a document that does not decode, or two that
share a natural key, come back as invalid entries of their own.

Change notification: :meth:`MongoStore.watch` opens a change stream on the strategies
collection and returns None when the server refuses (a standalone answers 40573);
the decision is the server's answer, never configuration.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from bson import decode as bson_decode
from bson.codec_options import CodecOptions
from bson.errors import BSONError
from bson.raw_bson import RawBSONDocument
from pymongo import ASCENDING, DESCENDING, DeleteMany, MongoClient, ReplaceOne, ReturnDocument, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    DuplicateKeyError,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)
from pymongo.write_concern import WriteConcern

from strategy_manager.core.clock import Clock, SystemClock
from strategy_manager.core.errors import SnapshotError, StoreError
from strategy_manager.core.masking import Redactor, mask_uri, uri_secrets
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

NOT_REPLICA_SET = 40573
HISTORY_LOST = 286
DUPLICATE_KEY = 11000
#: Attempts at numbering a snapshot batch when a concurrent writer took a number.
NUMBERING_ATTEMPTS = 5
#: Ids per $in query. MongoDB takes far more; the mongoeco wire server used in tests
#: nests $in into an expression tree capped at depth 1000 (about 490 ids).
IN_BATCH = 250
#: Documents per write request: a server that handles one request at a time (as the
#: wire server in the tests does) then never holds a lease renewal behind a long one.
WRITE_BATCH = 50


def snapshot_id(strategy_id: str, seq: int) -> str:
    """A snapshot document's _id: unique per strategy and sequence number."""
    return f"{strategy_id}#{seq:012d}"


class MongoStore:
    kind = "mongodb"

    def __init__(self, settings: Settings, clock: Clock | None = None) -> None:
        uri = settings.mongo_uri
        if not uri:
            raise StoreError("MongoStore needs MONGO_URI")
        self._uri = uri
        self._redactor = Redactor(uri_secrets(uri))
        self.location = describe_location(settings)
        self.clock = clock or SystemClock()
        self.history = max(1, settings.snapshot_history)
        self.timeout_ms = settings.mongo_timeout_ms
        self._streams: list[Any] = []
        self._closed = False
        #: The last change stream position seen; a reopened stream resumes from it.
        self.resume_token: dict[str, Any] | None = None
        try:
            self._client: MongoClient[dict[str, Any]] = MongoClient(
                uri,
                serverSelectionTimeoutMS=self.timeout_ms,
                connectTimeoutMS=self.timeout_ms,
                tz_aware=True,
                tzinfo=UTC,
                appname="quant-strategy-manager",
            )
            db = self._client[settings.mongo_db]
        except (PyMongoError, ValueError, TypeError) as exc:
            raise StoreError(f"MongoDB {mask_uri(uri)}: {self._reason(exc)}") from None
        majority = WriteConcern("majority")
        self._strategies = db[settings.strategies_collection]
        self._snapshots = db.get_collection(settings.snapshots_collection, write_concern=majority)
        self._status = db[settings.status_collection]
        self._leases = db.get_collection(settings.leases_collection, write_concern=majority)
        self._owners = db[settings.owners_collection]
        self._halts = db.get_collection(settings.halts_collection, write_concern=majority)
        self._decode_options: CodecOptions[dict[str, Any]] = CodecOptions(tz_aware=True, tzinfo=UTC)
        self._raw_strategies = self._strategies.with_options(
            codec_options=CodecOptions(document_class=RawBSONDocument)
        )
        try:
            self._client.admin.command("ping")
        except ServerSelectionTimeoutError as exc:
            self._client.close()
            raise StoreError(
                f"MongoDB {self.location}: no server answered within {self.timeout_ms} ms "
                f"({self._reason(exc)})"
            ) from None
        except PyMongoError as exc:
            self._client.close()
            raise StoreError(f"MongoDB {self.location}: connecting: {self._reason(exc)}") from None
        try:
            self._ensure_indexes()
        except StoreError:
            self._client.close()
            raise

    # -- errors --------------------------------------------------------------------
    def _reason(self, exc: BaseException) -> str:
        """One line, no password, without pymongo's topology dump."""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        for cut in (", full error:", ", Timeout:", " (configured timeouts"):
            text = text.split(cut)[0]
        return self._redactor.text(text)[:300]

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except PyMongoError as exc:
            raise StoreError(f"MongoDB {self.location}: {what}: {self._reason(exc)}") from None

    def _ensure_indexes(self) -> None:
        """Idempotent: creating an index that exists with the same definition is a no-op."""
        specs: list[tuple[Any, list[tuple[str, int]], dict[str, Any]]] = [
            (
                self._strategies,
                [("user_id", ASCENDING), ("symbol", ASCENDING), ("strategy_key", ASCENDING)],
                {"unique": True, "name": "qsm_natural_key"},
            ),
            (self._strategies, [("updated_at", DESCENDING)], {"name": "qsm_updated_at"}),
            (self._leases, [("owner", ASCENDING)], {"name": "qsm_owner"}),
        ]
        # Lookups by (strategy_id, seq). Uniqueness comes from the _id, which holds
        # both; a store made by an earlier version keeps its unique index instead.
        with self._errors(f"reading the indexes of {self._snapshots.name}"):
            keys = [info.get("key") for info in self._snapshots.index_information().values()]
        if not any([k for k, _ in key or []][:2] == ["strategy_id", "seq"] for key in keys):
            lookup = [("strategy_id", ASCENDING), ("seq", DESCENDING)]
            specs.append((self._snapshots, lookup, {"name": "qsm_strategy_seq"}))
        for collection, keys, options in specs:
            try:
                with self._errors(f"creating index {options['name']} on {collection.name}"):
                    collection.create_index(keys, **options)
            except StoreError as exc:
                if "duplicate key" not in str(exc).lower() and "E11000" not in str(exc):
                    raise
                # Documents written by hand share a key: each is reported as invalid
                # (see list_strategies); the store stays usable for everything else.
                log.error("%s; the documents involved are reported as invalid", exc)

    # -- strategy documents ----------------------------------------------------------
    @staticmethod
    def _out(document: dict[str, Any]) -> dict[str, Any]:
        document["_id"] = str(document["_id"])
        return document

    @staticmethod
    def _id_candidates(ident: str) -> list[Any]:
        return [ident, ObjectId(ident)] if ObjectId.is_valid(ident) else [ident]

    def _find(self, ident: str) -> dict[str, Any] | None:
        parts = codec.split_ident(ident)
        if parts is not None:
            found = self._strategies.find_one(dict(zip(codec.NATURAL_KEY, parts, strict=True)))
            if found is not None:
                return found
        return self._strategies.find_one({"_id": {"$in": self._id_candidates(ident)}})

    def list_strategies(self) -> list[dict[str, Any]]:
        """Every document, each decoded on its own: one that does not decode, or that
        shares its natural key with another, comes back as an invalid entry."""
        with self._errors("listing strategies"):
            cursor = self._raw_strategies.find().sort(
                [("user_id", ASCENDING), ("symbol", ASCENDING), ("strategy_key", ASCENDING)]
            )
            listed = [self._decoded(raw) for raw in cursor]
        by_key: dict[tuple[Any, ...], list[int]] = {}
        for index, document in enumerate(listed):
            if codec.INVALID not in document:
                by_key.setdefault(tuple(document.get(k) for k in codec.NATURAL_KEY), []).append(index)
        for key, indexes in by_key.items():
            if len(indexes) > 1:
                ids = ", ".join(str(listed[i]["_id"]) for i in indexes)
                for i in indexes:
                    listed[i] = codec.invalid_row(
                        str(listed[i]["_id"]),
                        f"{len(indexes)} documents share this user_id/symbol/strategy_key (_id {ids}); "
                        "remove or rename all but one",
                        key,
                    )
        return listed

    def _decoded(self, raw: RawBSONDocument) -> dict[str, Any]:
        try:
            ident = str(raw["_id"])
        except (BSONError, KeyError, RecursionError):
            ident = "(unreadable _id)"
        try:
            document = bson_decode(raw.raw, codec_options=self._decode_options)
        except (BSONError, RecursionError, ValueError, OverflowError) as exc:
            key = []
            for name in codec.NATURAL_KEY:
                try:
                    key.append(raw[name])
                except (BSONError, KeyError, RecursionError):
                    key.append(None)
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return codec.invalid_row(ident, f"stored document cannot be decoded: {reason}", key)
        return self._out(document)

    def get_strategy(self, ident: str) -> dict[str, Any] | None:
        with self._errors(f"reading strategy {ident}"):
            found = self._find(ident)
        return None if found is None else self._out(found)

    def upsert_strategy(self, document: dict[str, Any]) -> UpsertResult:
        """Update by natural key, else insert. An insert keeps the document's field order
        (an upsert through ``$set`` would sort new fields by name)."""
        doc = dict(document)
        given_id = doc.pop("_id", None)
        key = codec.natural_key(doc)
        codec.check_field_names(doc)
        ident = ":".join(key)
        fields = {**doc, "updated_at": codec.to_ms(self.clock.now())}
        new: dict[str, Any] = {}
        if given_id is not None:
            oid = str(given_id)
            new["_id"] = ObjectId(oid) if ObjectId.is_valid(oid) else oid
        natural = dict(zip(codec.NATURAL_KEY, key, strict=True))
        try:
            for _ in range(3):  # a concurrent insert of the same key makes us update instead
                if self._strategies.update_one(natural, {"$set": fields}).matched_count:
                    return UpsertResult(ident=ident, inserted=False)
                try:
                    self._strategies.insert_one({**new, **fields})
                    return UpsertResult(ident=ident, inserted=True)
                except DuplicateKeyError as exc:
                    if "_id" in ((exc.details or {}).get("keyPattern") or {}):
                        raise StoreError(
                            f"{ident}: _id {given_id} already belongs to another document"
                        ) from None
        except PyMongoError as exc:
            raise StoreError(f"{ident}: cannot store: {self._reason(exc)}") from None
        except (TypeError, ValueError, OverflowError) as exc:  # not BSON-encodable
            raise StoreError(f"{describe(document)}: cannot encode the document: {exc}") from None
        raise StoreError(f"{ident}: cannot store: the document kept changing under concurrent writes")

    def update_strategy(self, ident: str, changes: dict[str, Any]) -> dict[str, Any]:
        if "_id" in changes:
            raise StoreError(f"strategy {ident}: _id cannot be changed")
        codec.check_field_names(changes)
        with self._errors(f"updating strategy {ident}"):
            found = self._find(ident)
            if found is None:
                raise StoreError(f"strategy {ident}: not found")
            try:
                updated = self._strategies.find_one_and_update(
                    {"_id": found["_id"]},
                    {"$set": {**changes, "updated_at": codec.to_ms(self.clock.now())}},
                    return_document=ReturnDocument.AFTER,
                )
            except DuplicateKeyError:
                raise StoreError(f"strategy {ident}: another document has that natural key") from None
        if updated is None:
            raise StoreError(f"strategy {ident}: not found")
        return self._out(updated)

    def remove_strategy(self, ident: str) -> bool:
        with self._errors(f"removing strategy {ident}"):
            found = self._find(ident)
            if found is None:
                return False
            return self._strategies.delete_one({"_id": found["_id"]}).deleted_count == 1

    def change_token(self) -> Hashable:
        """The document count and the newest ``updated_at`` (with its ``_id``)."""
        with self._errors("polling for changes"):
            count = self._strategies.estimated_document_count()
            newest = self._strategies.find_one(
                {}, projection={"updated_at": 1}, sort=[("updated_at", DESCENDING), ("_id", DESCENDING)]
            )
        if newest is None:
            return (count, None, None)
        return (count, str(newest.get("updated_at")), str(newest["_id"]))

    def watch(self) -> Iterator[None] | None:
        """Yield once per change to the strategies collection, or None if the server
        has no change streams (a standalone server, or a server without the stage)."""
        try:
            stream = self._open_stream()
        except OperationFailure as exc:
            if exc.code == NOT_REPLICA_SET or "replica set" in str(exc) or "$changeStream" in str(exc):
                log.info("MongoDB %s has no change streams (%s); polling", self.location, self._reason(exc))
                return None
            raise StoreError(
                f"MongoDB {self.location}: opening a change stream: {self._reason(exc)}"
            ) from None
        except PyMongoError as exc:
            raise StoreError(
                f"MongoDB {self.location}: opening a change stream: {self._reason(exc)}"
            ) from None
        return self._follow(stream)

    def _open_stream(self, after_invalidate: bool = False) -> Any:
        token = self.resume_token
        options: dict[str, Any] = {"max_await_time_ms": 1000}
        if token is not None:
            options["start_after" if after_invalidate else "resume_after"] = token
        stream = self._strategies.watch(**options)
        self._streams.append(stream)
        return stream

    def _follow(self, stream: Any) -> Iterator[None]:
        while True:
            invalidated = False
            try:
                with stream:
                    while stream.alive and not self._closed:
                        change = stream.try_next()
                        if stream.resume_token is not None:
                            self.resume_token = stream.resume_token
                        if change is None:
                            continue
                        if change.get("operationType") == "invalidate":
                            invalidated = True
                            yield None
                            break
                        yield None
            except OperationFailure as exc:
                if self._closed:
                    return
                if exc.code != HISTORY_LOST:
                    raise StoreError(f"MongoDB {self.location}: change stream: {self._reason(exc)}") from None
                log.warning("change stream history lost on %s; listing everything again", self.location)
                self.resume_token = None
                yield None  # the caller re-lists every document
            except PyMongoError as exc:
                if self._closed:
                    return
                raise StoreError(f"MongoDB {self.location}: change stream: {self._reason(exc)}") from None
            finally:
                if stream in self._streams:
                    self._streams.remove(stream)
            if self._closed:
                return
            with self._errors("reopening the change stream"):
                stream = self._open_stream(after_invalidate=invalidated)

    # -- snapshots -----------------------------------------------------------------
    def _fence_failures(self, writes: Sequence[SnapshotWrite], indexes: list[int]) -> dict[int, str]:
        """Refusals for the fenced writes whose lease is no longer the writer's."""
        fenced = [i for i in indexes if writes[i].lease is not None]
        ids = list(dict.fromkeys(writes[i].strategy_id for i in fenced))
        current: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), IN_BATCH):
            for doc in self._leases.find(
                {"_id": {"$in": ids[start : start + IN_BATCH]}}, {"owner": 1, "epoch": 1}
            ):
                current[doc["_id"]] = doc
        refused: dict[int, str] = {}
        for i in fenced:
            w = writes[i]
            owner, epoch = w.lease  # type: ignore[misc]
            now = current.get(w.strategy_id) or {}
            if now.get("owner") == owner and now.get("epoch") == epoch:
                continue
            holder = (
                f"held by {now.get('owner')} at epoch {now.get('epoch')}"
                if now.get("owner")
                else "no lease exists"
            )
            refused[i] = (
                f"{w.strategy_id}: snapshot refused: lease of {owner} at epoch {epoch} "
                f"is no longer current ({holder})"
            )
        return refused

    def _last_seqs(self, ids: list[str]) -> dict[str, int]:
        """The highest numeric ``seq`` of each strategy, from the snapshots themselves."""
        last: dict[str, int] = {}
        for start in range(0, len(ids), IN_BATCH):
            pipeline: list[dict[str, Any]] = [
                {
                    "$match": {
                        "strategy_id": {"$in": ids[start : start + IN_BATCH]},
                        "seq": {"$type": "number"},
                    }
                },
                {"$group": {"_id": "$strategy_id", "seq": {"$max": "$seq"}}},
            ]
            for doc in self._snapshots.aggregate(pipeline):
                last[doc["_id"]] = int(doc["seq"])
        return last

    def save_snapshots(self, writes: Sequence[SnapshotWrite]) -> list[int]:
        """Numbered max(seq)+1 per strategy under the unique (strategy_id, seq) index: a
        number taken meanwhile by another writer is retried with the next one. A lost
        connection is a StoreError (the caller keeps the writes and retries)."""
        seqs: list[int | None] = [None] * len(writes)
        failures: dict[int, str] = {}
        todo: list[int] = []
        for i, w in enumerate(writes):
            try:
                codec.check_state(w.strategy_id, w.state)
            except SnapshotError as exc:
                failures[i] = str(exc)
                continue
            todo.append(i)
        with self._errors("writing snapshots"):
            failures |= self._fence_failures(writes, todo)
            todo = [i for i in todo if i not in failures]
            for _ in range(NUMBERING_ATTEMPTS):
                if not todo:
                    break
                todo = self._insert_numbered(writes, todo, seqs, failures)
            for i in todo:
                failures[i] = f"{writes[i].strategy_id}: snapshot not written: its number kept being taken"
            self._prune([(writes[i].strategy_id, seq) for i, seq in enumerate(seqs) if seq is not None])
        if failures:
            raise codec.SnapshotBatchError([failures[i] for i in sorted(failures)], seqs)
        return [s for s in seqs if s is not None]

    def _insert_numbered(
        self,
        writes: Sequence[SnapshotWrite],
        todo: list[int],
        seqs: list[int | None],
        failures: dict[int, str],
    ) -> list[int]:
        """Insert ``todo``; return the ones to try again (their number was taken)."""
        last = self._last_seqs(list(dict.fromkeys(writes[i].strategy_id for i in todo)))
        documents = []
        for i in todo:
            w = writes[i]
            last[w.strategy_id] = last.get(w.strategy_id, 0) + 1
            document: dict[str, Any] = {
                "_id": snapshot_id(w.strategy_id, last[w.strategy_id]),
                "strategy_id": w.strategy_id,
                "seq": last[w.strategy_id],
                "taken_at": codec.to_ms(w.taken_at),
                "engine": w.engine,
                "state": w.state,
            }
            if w.lease is not None:
                document["owner"], document["epoch"] = w.lease
            documents.append(document)
        retry: list[int] = []
        bad: dict[int, dict[str, Any]] = {}
        written: set[int] = set()
        for start in range(0, len(documents), WRITE_BATCH):  # other requests get their turn
            # An upsert that only inserts: a number already taken matches and changes
            # nothing. The same as an insert, but the mongoeco wire server checks an
            # insert against every document of the collection, and an upsert by _id not.
            batch = [
                UpdateOne(
                    {"_id": d["_id"]},
                    {"$setOnInsert": {k: v for k, v in d.items() if k != "_id"}},
                    upsert=True,
                )
                for d in documents[start : start + WRITE_BATCH]
            ]
            try:
                upserted = self._snapshots.bulk_write(batch, ordered=False).upserted_ids or {}
            except BulkWriteError as exc:
                bad |= {start + e["index"]: e for e in exc.details.get("writeErrors", [])}
                upserted = {u["index"]: u["_id"] for u in exc.details.get("upserted", [])}
            written |= {start + index for index in upserted}
        for n, i in enumerate(todo):
            if n in written:
                seqs[i] = documents[n]["seq"]
            elif n not in bad or bad[n].get("code") == DUPLICATE_KEY:  # taken meanwhile
                retry.append(i)
            else:
                failures[i] = (
                    f"{writes[i].strategy_id}: snapshot not written: {bad[n].get('errmsg', '')[:200]}"
                )
        return retry

    def _prune(self, written: list[tuple[str, int]]) -> None:
        """Keep ``history`` snapshots per strategy: one statement per distinct cut-off."""
        by_cut: dict[int, list[str]] = {}
        for sid, seq in written:
            if seq > self.history:
                by_cut.setdefault(seq - self.history, []).append(sid)
        prune = [
            DeleteMany({"strategy_id": {"$in": ids[start : start + IN_BATCH]}, "seq": {"$lte": cut}})
            for cut, ids in by_cut.items()
            for start in range(0, len(ids), IN_BATCH)
        ]
        if prune:
            self._snapshots.bulk_write(prune, ordered=False)

    @staticmethod
    def _snapshot(doc: dict[str, Any]) -> Snapshot:
        state, error = doc.get("state"), None
        if not isinstance(state, dict):
            state, error = {}, f"stored snapshot state is a {type(state).__name__}, not an object"
        taken = doc.get("taken_at")
        if not isinstance(taken, datetime):
            taken, error = codec.LONG_AGO, error or f"stored taken_at {taken!r} is not a time"
        owner, epoch = doc.get("owner"), doc.get("epoch")
        return Snapshot(
            strategy_id=str(doc.get("strategy_id")),
            seq=int(doc["seq"]),
            taken_at=taken.astimezone(UTC),
            engine=str(doc.get("engine")),
            state=dict(state),
            error=error,
            lease=(str(owner), int(epoch)) if owner is not None and isinstance(epoch, int) else None,
        )

    def _snapshot_or_error(self, raw: RawBSONDocument) -> Snapshot:
        try:
            return self._snapshot(bson_decode(raw.raw, codec_options=self._decode_options))
        except (BSONError, RecursionError, ValueError, TypeError, KeyError) as exc:
            reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            try:
                sid, seq = str(raw["strategy_id"]), int(raw["seq"])
            except (BSONError, KeyError, TypeError, ValueError, RecursionError):
                sid, seq = "(unreadable)", 0
            return Snapshot(
                sid, seq, codec.LONG_AGO, "", {}, error=f"stored snapshot cannot be decoded: {reason}"
            )

    @property
    def _raw_snapshots(self) -> Any:
        return self._snapshots.with_options(codec_options=CodecOptions(document_class=RawBSONDocument))

    def latest_snapshots(self, strategy_ids: Sequence[str]) -> dict[str, Snapshot]:
        ids = list(dict.fromkeys(strategy_ids))
        found: dict[str, Snapshot] = {}
        with self._errors("reading the latest snapshots"):
            last_seqs = self._last_seqs(ids)
            keys = list(last_seqs.items())
            for start in range(0, len(keys), IN_BATCH):
                batch = keys[start : start + IN_BATCH]
                query = {"$or": [{"strategy_id": sid, "seq": seq} for sid, seq in batch]}
                for raw in self._raw_snapshots.find(query):
                    snap = self._snapshot_or_error(raw)
                    found[snap.strategy_id] = snap
        return found

    def latest_snapshot(self, strategy_id: str) -> Snapshot | None:
        found = self.snapshot_history(strategy_id, limit=1)
        return found[0] if found else None

    def snapshot_history(self, strategy_id: str, limit: int = 20) -> list[Snapshot]:
        """Newest first."""
        with self._errors(f"reading snapshots of {strategy_id}"):
            cursor = (
                self._raw_snapshots.find({"strategy_id": strategy_id, "seq": {"$type": "number"}})
                .sort("seq", DESCENDING)
                .limit(limit)
            )
            return [self._snapshot_or_error(raw) for raw in cursor]

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
        ids = list(dict.fromkeys(strategy_ids))
        held: dict[str, Lease] = {}
        with self._errors(f"claiming leases for {owner}"):
            for start in range(0, len(ids), IN_BATCH):  # servers cap the size of one $in
                held.update(self._claim_batch(ids[start : start + IN_BATCH], owner, now, expires, steal_from))
        return held

    def _claim_batch(
        self, ids: list[str], owner: str, now: datetime, expires: datetime, steal_from: Collection[str]
    ) -> dict[str, Lease]:
        held: dict[str, Lease] = {}

        def lease(doc: dict[str, Any]) -> Lease:
            return Lease(strategy_id=doc["_id"], owner=owner, epoch=int(doc["epoch"]), expires_at=expires)

        existing = {d["_id"]: d for d in self._leases.find({"_id": {"$in": ids}})}
        new = [sid for sid in ids if sid not in existing]
        for start in range(0, len(new), WRITE_BATCH):  # never leased: created here unless someone beat us
            held.update(self._create_leases(new[start : start + WRITE_BATCH], owner, expires))
        ours, takeable = [], []
        for sid, found in existing.items():
            current = found.get("expires_at")
            live = isinstance(current, datetime) and current > now
            if found.get("owner") == owner:
                ours.append(sid)
            elif not found.get("owner") or not live or found.get("owner") in steal_from:
                takeable.append(sid)  # free, expired, or a gone process's
        if ours:  # renewed (if still ours), then read back below
            self._leases.update_many(
                {"_id": {"$in": ours}, "owner": owner}, {"$set": {"expires_at": expires}}
            )
        if takeable:
            # Taken in one statement, each document atomically, its expiry checked again
            # there: a renewal that lands between our read and this update wins.
            takeable_now: list[dict[str, Any]] = [
                {"expires_at": {"$lte": now}},
                {"owner": {"$in": ["", None]}},
            ]
            if steal_from:
                takeable_now.append({"owner": {"$in": list(steal_from)}})
            self._leases.update_many(
                {"_id": {"$in": takeable}, "owner": {"$ne": owner}, "$or": takeable_now},
                {"$set": {"owner": owner, "expires_at": expires}, "$inc": {"epoch": 1}},
            )
        if ours or takeable:  # ours now: this owner with this claim's expiry
            query = {"_id": {"$in": ours + takeable}, "owner": owner, "expires_at": expires}
            for doc in self._leases.find(query):
                held[doc["_id"]] = lease(doc)
        return held

    def _create_leases(self, ids: list[str], owner: str, expires: datetime) -> dict[str, Lease]:
        """Create the leases of ``ids``; those that exist already (someone created them
        since we looked) are left as they are. Upserts that only set on insert, rather
        than an insert: an existing lease is a no-op instead of an error, and the wire
        server used in tests inserts in time that grows with the collection."""
        fields = {"owner": owner, "epoch": 1, "expires_at": expires}
        ops = [UpdateOne({"_id": sid}, {"$setOnInsert": fields}, upsert=True) for sid in ids]
        try:
            created = self._leases.bulk_write(ops, ordered=False).upserted_ids or {}
        except BulkWriteError as exc:  # a concurrent creation of the same _id: theirs
            created = {u["index"]: u["_id"] for u in exc.details.get("upserted", [])}
        return {ids[i]: Lease(strategy_id=ids[i], owner=owner, epoch=1, expires_at=expires) for i in created}

    def renew(
        self, owner: str, now: datetime, seconds: float, held: Collection[str] | None
    ) -> dict[str, int] | None:
        expires = codec.to_ms(now + timedelta(seconds=seconds))
        with self._errors(f"renewing the leases of {owner}"):
            renewed = self._leases.update_many(
                {"owner": owner}, {"$set": {"expires_at": expires}}
            ).matched_count
            if held is not None and renewed == len(held):
                return None
            return {str(d["_id"]): int(d["epoch"]) for d in self._leases.find({"owner": owner}, {"epoch": 1})}

    def read_leases(self, strategy_ids: Sequence[str]) -> dict[str, Lease]:
        ids = list(dict.fromkeys(strategy_ids))
        leases: dict[str, Lease] = {}
        with self._errors("reading leases"):
            for start in range(0, len(ids), IN_BATCH):
                for doc in self._leases.find({"_id": {"$in": ids[start : start + IN_BATCH]}}):
                    expires = doc.get("expires_at")
                    leases[doc["_id"]] = Lease(
                        strategy_id=doc["_id"],
                        owner=str(doc.get("owner") or ""),
                        epoch=int(doc.get("epoch") or 0),
                        expires_at=expires if isinstance(expires, datetime) else codec.LONG_AGO,
                    )
        return leases

    def release(self, strategy_ids: Sequence[str], owner: str) -> None:
        with self._errors(f"releasing leases of {owner}"):
            ids = list(strategy_ids)
            for start in range(0, len(ids), IN_BATCH):
                self._leases.update_many(
                    {"_id": {"$in": ids[start : start + IN_BATCH]}, "owner": owner},
                    {"$set": {"owner": "", "expires_at": codec.LONG_AGO}},
                )

    def write_owner(self, record: OwnerRecord) -> None:
        with self._errors(f"writing the heartbeat of {record.owner}"):
            self._owners.replace_one({"_id": record.owner}, codec.owner_to_document(record), upsert=True)

    def read_owners(self) -> list[OwnerRecord]:
        owners = []
        with self._errors("reading owners"):
            for doc in self._owners.find().sort("_id", ASCENDING):
                try:
                    owners.append(codec.owner_from_document(doc))
                except (TypeError, ValueError) as exc:
                    log.error(
                        "MongoDB %s: owner record %r unreadable: %s", self.location, doc.get("_id"), exc
                    )
        return owners

    # -- account halts -----------------------------------------------------------------
    def halt_account(self, halt: AccountHalt) -> None:
        # A fresh mark on every write: the token sees a halt replaced by another one.
        document = {**codec.halt_to_document(halt), "mark": secrets.token_hex(8)}
        with self._errors(f"halting account {halt.account}"):
            self._halts.replace_one({"_id": halt.account}, document, upsert=True)

    def resume_account(self, account: str) -> bool:
        with self._errors(f"resuming account {account}"):
            return self._halts.delete_one({"_id": account}).deleted_count == 1

    def list_halts(self) -> list[AccountHalt]:
        """Every halt; a record that does not decode still halts its account."""
        halts = []
        with self._errors("reading account halts"):
            for doc in self._halts.find().sort("_id", ASCENDING):
                try:
                    halts.append(codec.halt_from_document({**doc, "account": doc["_id"]}))
                except (StoreError, TypeError, ValueError) as exc:
                    log.error("MongoDB %s: halt of %r unreadable: %s", self.location, doc.get("_id"), exc)
                    halts.append(
                        AccountHalt(account=str(doc["_id"]), reason="(its halt record is unreadable)")
                    )
        return halts

    def halts_token(self) -> Hashable:
        """Every halted account with the mark of its last write: a handful of small
        documents, read whole (halts are few)."""
        with self._errors("polling account halts"):
            return tuple(
                sorted((str(d["_id"]), str(d.get("mark"))) for d in self._halts.find({}, {"mark": 1}))
            )

    # -- runtime status ----------------------------------------------------------------
    def write_status(self, records: Sequence[StatusRecord]) -> None:
        if not records:
            return
        ops = [ReplaceOne({"_id": r.strategy_id}, codec.status_to_document(r), upsert=True) for r in records]
        with self._errors("writing status"):
            for start in range(0, len(ops), WRITE_BATCH):
                self._status.bulk_write(ops[start : start + WRITE_BATCH], ordered=False)

    def read_status(self) -> list[StatusRecord]:
        with self._errors("reading status"):
            return [codec.status_from_document(d) for d in self._status.find().sort("_id", ASCENDING)]

    def close(self) -> None:
        self._closed = True
        for stream in list(self._streams):
            try:
                stream.close()
            except PyMongoError:
                log.debug("closing a change stream failed", exc_info=True)
        self._client.close()
