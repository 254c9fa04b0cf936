"""The MongoDB store, through pymongo: any ``MONGO_URI`` (standalone, replica set, Atlas).

Four collections, named in settings: the users' strategy documents; snapshots (one
document per write, majority write concern); runtime status (one document per
strategy, ``_id`` = strategy id); leases (one document per strategy, ``_id`` =
strategy id, holding ``owner``, ``epoch``, ``expires_at`` and the snapshot sequence
counter ``seq``). Every ownership change and every sequence number is taken with one
``find_one_and_update`` on that lease document, so both are atomic.

Change notification: :meth:`MongoStore.watch` opens a change stream on the strategies
collection and returns None when the server refuses (a standalone answers 40573);
the decision is the server's answer, never configuration.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Hashable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import ObjectId
from pymongo import ASCENDING, DESCENDING, DeleteMany, MongoClient, ReplaceOne, ReturnDocument
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
    Lease,
    Snapshot,
    SnapshotWrite,
    StatusRecord,
    UpsertResult,
)

log = logging.getLogger(__name__)

NOT_REPLICA_SET = 40573
HISTORY_LOST = 286
#: Ids per $in query. MongoDB takes far more; the mongoeco wire server used in tests
#: nests $in into an expression tree capped at depth 1000 (about 490 ids).
IN_BATCH = 250


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
            (
                self._snapshots,
                [("strategy_id", ASCENDING), ("seq", DESCENDING)],
                {"unique": True, "name": "qsm_strategy_seq"},
            ),
            (self._leases, [("owner", ASCENDING)], {"name": "qsm_owner"}),
        ]
        for collection, keys, options in specs:
            with self._errors(f"creating index {options['name']} on {collection.name}"):
                collection.create_index(keys, **options)

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
        with self._errors("listing strategies"):
            cursor = self._strategies.find().sort(
                [("user_id", ASCENDING), ("symbol", ASCENDING), ("strategy_key", ASCENDING)]
            )
            return [self._out(d) for d in cursor]

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
    def _next_seq(self, w: SnapshotWrite) -> int | str:
        """The next sequence number, or the reason a fenced write is refused."""
        if w.lease is None:
            counter = self._leases.find_one_and_update(
                {"_id": w.strategy_id},
                {"$inc": {"seq": 1}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            return int((counter or {})["seq"])
        owner, epoch = w.lease
        counter = self._leases.find_one_and_update(
            {"_id": w.strategy_id, "owner": owner, "epoch": epoch},
            {"$inc": {"seq": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if counter is not None:
            return int(counter["seq"])
        now = self._leases.find_one({"_id": w.strategy_id}) or {}
        holder = (
            f"held by {now.get('owner')} at epoch {now.get('epoch')}"
            if now.get("owner")
            else "no lease exists"
        )
        return (
            f"{w.strategy_id}: snapshot refused: lease of {owner} at epoch {epoch} "
            f"is no longer current ({holder})"
        )

    def save_snapshots(self, writes: Sequence[SnapshotWrite]) -> list[int]:
        seqs: list[int | None] = [None] * len(writes)
        failures: dict[int, str] = {}
        documents: list[tuple[int, dict[str, Any]]] = []
        for i, w in enumerate(writes):
            try:
                codec.check_state(w.strategy_id, w.state)
            except SnapshotError as exc:
                failures[i] = str(exc)
                continue
            with self._errors(f"numbering the snapshot of {w.strategy_id}"):
                seq = self._next_seq(w)
            if isinstance(seq, str):
                failures[i] = seq
                continue
            documents.append(
                (
                    i,
                    {
                        "strategy_id": w.strategy_id,
                        "seq": seq,
                        "taken_at": codec.to_ms(w.taken_at),
                        "engine": w.engine,
                        "state": w.state,
                    },
                )
            )
        if documents:
            try:
                self._snapshots.insert_many([d for _, d in documents], ordered=False)
                for i, doc in documents:
                    seqs[i] = doc["seq"]
            except BulkWriteError as exc:
                bad = {e["index"]: e.get("errmsg", "") for e in exc.details.get("writeErrors", [])}
                for n, (i, doc) in enumerate(documents):
                    if n in bad:
                        failures[i] = f"{doc['strategy_id']}: snapshot not written: {bad[n][:200]}"
                    else:
                        seqs[i] = doc["seq"]
            except PyMongoError as exc:
                raise SnapshotError(
                    f"MongoDB {self.location}: writing snapshots: {self._reason(exc)}"
                ) from None
            written = [(writes[i].strategy_id, seqs[i]) for i, _ in documents if seqs[i] is not None]
            prune = [
                DeleteMany({"strategy_id": sid, "seq": {"$lte": seq - self.history}})
                for sid, seq in written
                if seq is not None and seq > self.history
            ]
            if prune:
                with self._errors("pruning snapshot history"):
                    self._snapshots.bulk_write(prune, ordered=False)
        if failures:
            raise codec.SnapshotBatchError([failures[i] for i in sorted(failures)], seqs)
        return [s for s in seqs if s is not None]

    @staticmethod
    def _snapshot(doc: dict[str, Any]) -> Snapshot:
        return Snapshot(
            strategy_id=doc["strategy_id"],
            seq=int(doc["seq"]),
            taken_at=doc["taken_at"].astimezone(UTC),
            engine=doc["engine"],
            state=dict(doc["state"]),
        )

    def latest_snapshot(self, strategy_id: str) -> Snapshot | None:
        found = self.snapshot_history(strategy_id, limit=1)
        return found[0] if found else None

    def snapshot_history(self, strategy_id: str, limit: int = 20) -> list[Snapshot]:
        """Newest first."""
        with self._errors(f"reading snapshots of {strategy_id}"):
            cursor = self._snapshots.find({"strategy_id": strategy_id}).sort("seq", DESCENDING).limit(limit)
            return [self._snapshot(d) for d in cursor]

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

        # Renew what we hold in one round, then read back which those are.
        self._leases.update_many({"_id": {"$in": ids}, "owner": owner}, {"$set": {"expires_at": expires}})
        for doc in self._leases.find({"_id": {"$in": ids}, "owner": owner, "expires_at": expires}):
            held[doc["_id"]] = lease(doc)
        rest = [sid for sid in ids if sid not in held]
        existing = {d["_id"]: d for d in self._leases.find({"_id": {"$in": rest}})} if rest else {}
        new = [sid for sid in rest if sid not in existing]
        if new:  # never leased: insert them in one round; a duplicate means someone beat us
            docs = [{"_id": sid, "owner": owner, "epoch": 1, "expires_at": expires, "seq": 0} for sid in new]
            try:
                self._leases.insert_many(docs, ordered=False)
                lost: set[str] = set()
            except BulkWriteError as exc:
                lost = {new[e["index"]] for e in exc.details.get("writeErrors", [])}
            for sid in new:
                if sid not in lost:
                    held[sid] = Lease(strategy_id=sid, owner=owner, epoch=1, expires_at=expires)
        for sid, found in existing.items():
            current = found.get("expires_at")
            live = current is not None and current > now
            if found.get("owner") and live and found.get("owner") not in steal_from:
                continue  # another owner's live lease
            # Free or expired: take it, unless it changed since we looked.
            taken = self._leases.find_one_and_update(
                {"_id": sid, "owner": found.get("owner"), "epoch": found.get("epoch")},
                {"$set": {"owner": owner, "expires_at": expires}, "$inc": {"epoch": 1}},
                return_document=ReturnDocument.AFTER,
            )
            if taken is not None:
                held[sid] = lease(taken)
        return held

    def lease_holders(self, strategy_ids: Sequence[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(strategy_ids))
        holders: dict[str, str] = {}
        with self._errors("reading lease holders"):
            for start in range(0, len(ids), IN_BATCH):
                for doc in self._leases.find({"_id": {"$in": ids[start : start + IN_BATCH]}}, {"owner": 1}):
                    holders[doc["_id"]] = str(doc.get("owner") or "")
        return holders

    def release(self, strategy_ids: Sequence[str], owner: str) -> None:
        with self._errors(f"releasing leases of {owner}"):
            ids = list(strategy_ids)
            for start in range(0, len(ids), IN_BATCH):
                self._leases.update_many(
                    {"_id": {"$in": ids[start : start + IN_BATCH]}, "owner": owner},
                    {"$set": {"expires_at": codec.LONG_AGO}},
                )

    # -- runtime status ----------------------------------------------------------------
    def write_status(self, records: Sequence[StatusRecord]) -> None:
        if not records:
            return
        ops = [ReplaceOne({"_id": r.strategy_id}, codec.status_to_document(r), upsert=True) for r in records]
        with self._errors("writing status"):
            self._status.bulk_write(ops, ordered=False)

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
