"""What both stores share: idents, time precision, snapshot state checks, document JSON.

Times are kept to the millisecond in both stores (BSON dates hold milliseconds), so a
value reads back equal from either one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
from bson import json_util
from bson.json_util import JSONMode, JSONOptions

from strategy_manager.core.errors import SnapshotError, StoreError
from strategy_manager.core.spec import describe
from strategy_manager.core.store.protocol import INVALID, AccountHalt, OwnerRecord, StatusRecord

NATURAL_KEY = ("user_id", "symbol", "strategy_key")
INT64 = 2**63
#: Relaxed MongoDB Extended JSON: plain JSON for plain values, ``{"$date": ...}`` and
#: ``{"$oid": ...}`` for the BSON types a document written straight into MongoDB may hold.
DOCUMENT_JSON = JSONOptions(json_mode=JSONMode.RELAXED, tz_aware=True, tzinfo=UTC)
#: Released leases expire at this instant: anyone may take them at once.
LONG_AGO = datetime(1970, 1, 1, tzinfo=UTC)


class SnapshotBatchError(SnapshotError):
    """Some writes of a batch were refused; the others were written.

    ``seqs`` holds, in the order of the batch, each written sequence number or None
    where that write was refused; the message names every refused strategy.
    """

    def __init__(self, failures: Sequence[str], seqs: Sequence[int | None]) -> None:
        super().__init__("; ".join(failures))
        self.failures = list(failures)
        self.seqs = list(seqs)


def split_ident(ident: str) -> tuple[str, str, str] | None:
    """``user:symbol:key`` -> its three parts (the symbol may hold ':'), else None."""
    user, sep, rest = ident.partition(":")
    symbol, sep2, key = rest.rpartition(":")
    if not (sep and sep2 and user and symbol and key):
        return None
    return user, symbol, key


def natural_key(document: Mapping[str, Any]) -> tuple[str, str, str]:
    """The document's ``(user_id, symbol, strategy_key)``; StoreError if it has none."""
    parts = [document.get(k) for k in NATURAL_KEY]
    if not all(isinstance(p, str) and p for p in parts):
        raise StoreError(
            f"{describe(document)}: cannot store a document without string user_id, symbol and strategy_key"
        )
    return parts[0], parts[1], parts[2]  # type: ignore[return-value]


def check_field_names(document: Mapping[str, Any]) -> None:
    """StoreError unless every top-level field name can be stored as it is in MongoDB."""
    for key in document:
        if not isinstance(key, str) or key.startswith("$") or "." in key or "\x00" in key:
            raise StoreError(
                f"{describe(document)}: field name {key!r} cannot be stored "
                "(not text, or a leading '$', a '.' or a NUL)"
            )


def to_ms(when: datetime) -> datetime:
    """Aware UTC, truncated to the millisecond."""
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when.isoformat()}: times must be timezone-aware")
    when = when.astimezone(UTC)
    return when.replace(microsecond=when.microsecond // 1000 * 1000)


def iso(when: datetime) -> str:
    """Fixed-width UTC text that sorts as time does."""
    return to_ms(when).isoformat(timespec="milliseconds")


def from_iso(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def check_state(strategy_id: str, state: Any) -> None:
    """SnapshotError naming the strategy and key path unless ``state`` is plain JSON data.

    Plain data: objects with string keys (not starting with '$', no NUL), lists,
    strings, booleans, None, integers that fit in 64 bits and floats. Tuples count as
    lists. What passes is stored and read back unchanged by both stores.
    """
    if not isinstance(state, dict):
        raise SnapshotError(f"{strategy_id}: snapshot state must be an object, got {type(state).__name__}")
    try:
        problem = _first_problem(state, "", 0)
    except RecursionError:  # only reachable from a deep call stack; the limit below comes first
        problem = "", f"nests deeper than {MAX_STATE_DEPTH} levels"
    if problem is not None:
        path, reason = problem
        raise SnapshotError(f"{strategy_id}: snapshot state key '{path or '.'}' {reason}")


#: Snapshot state deeper than this is refused (a cycle in an engine's state is too).
MAX_STATE_DEPTH = 100


def _first_problem(value: Any, path: str, depth: int) -> tuple[str, str] | None:
    if depth > MAX_STATE_DEPTH and isinstance(value, dict | list | tuple):
        return path, f"nests deeper than {MAX_STATE_DEPTH} levels (or refers to itself)"
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return path, f"has a non-string key {key!r}"
            where = f"{path}.{key}" if path else key
            if key.startswith("$") or "\x00" in key:
                return where, "is not a storable key (no leading '$', no NUL)"
            found = _first_problem(item, where, depth + 1)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _first_problem(item, f"{path}[{index}]", depth + 1)
            if found:
                return found
        return None
    if value is None or isinstance(value, bool | float):
        return None
    if isinstance(value, int):
        return None if -INT64 <= value < INT64 else (path, "holds an integer beyond 64 bits")
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path, "holds text that is not valid UTF-8"
        return None
    return path, f"holds a {type(value).__name__}, which is not JSON data"


def dump_state(state: dict[str, Any]) -> str:
    return json.dumps(state, ensure_ascii=False, allow_nan=True)


def load_state(text: str) -> dict[str, Any]:
    """A stored state's text as a dict; SnapshotError with the reason otherwise."""
    if not isinstance(text, str):
        raise SnapshotError(f"stored snapshot state is a {type(text).__name__}, not JSON text")
    if text.count("{") + text.count("[") > MAX_STORED_DEPTH and nesting_depth(text) > MAX_STORED_DEPTH:
        raise SnapshotError(f"stored snapshot state nests deeper than {MAX_STORED_DEPTH} levels")
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SnapshotError(f"stored snapshot state is not valid JSON: {_first_line(exc)}") from None
    if not isinstance(value, dict):
        raise SnapshotError("stored snapshot state is not an object")
    return value


#: Stored text nested deeper than this is not decoded at all: a decoder's recursion
#: on a hostile row must not exhaust a thread's stack. Valid documents nest far less.
MAX_STORED_DEPTH = 200
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')


def nesting_depth(text: str) -> int:
    """How deeply JSON ``text`` nests objects and arrays, without parsing it."""
    if text.count("{") + text.count("[") <= 1:
        return text.count("{") + text.count("[")
    depth = deepest = 0
    for char in _STRING.sub("", text):
        if char in "{[":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "}]":
            depth -= 1
    return deepest


def decode_row(text: str) -> dict[str, Any]:
    """A stored document's text as a dict; StoreError with the reason if it is not one."""
    if text.count("{") + text.count("[") > MAX_STORED_DEPTH and nesting_depth(text) > MAX_STORED_DEPTH:
        raise StoreError(f"stored document nests deeper than {MAX_STORED_DEPTH} levels")
    try:
        return load_document(text)
    except StoreError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise StoreError(f"stored document is not valid JSON: {_first_line(exc)}") from None


def invalid_row(ident: str, reason: str, key: Sequence[Any] = ()) -> dict[str, Any]:
    """What ``list_strategies`` returns for a row that cannot be decoded."""
    row: dict[str, Any] = {"_id": ident, INVALID: reason}
    row.update({k: v for k, v in zip(NATURAL_KEY, key, strict=False) if isinstance(v, str)})
    return row


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:200]


def dump_document(document: Mapping[str, Any]) -> str:
    """A strategy document as (relaxed extended) JSON text, key order kept."""
    return json_util.dumps(document, ensure_ascii=False, json_options=DOCUMENT_JSON)


def load_document(text: str) -> dict[str, Any]:
    value = json_util.loads(text, json_options=DOCUMENT_JSON)
    if not isinstance(value, dict):
        raise StoreError("stored strategy document is not an object")
    return value


def status_to_document(record: StatusRecord) -> dict[str, Any]:
    """A status record as a document; ``details`` coerced to plain JSON data."""
    doc = attrs.asdict(record, recurse=False)
    doc["details"] = json.loads(json.dumps(record.details, default=str))
    for name in ("heartbeat", "next_transition_at"):
        if doc[name] is not None:
            doc[name] = to_ms(doc[name])
    return doc


def status_text(record: StatusRecord) -> str:
    """A status record as row text: the relaxed extended JSON :func:`dump_document`
    writes for :func:`status_to_document`, made by the standard library's encoder in
    one pass (every strategy's status is written at each change)."""
    doc = {name: getattr(record, name) for name in _STATUS_FIELDS}  # attrs.asdict is slow here
    for name in ("heartbeat", "next_transition_at"):
        if doc[name] is not None:
            doc[name] = _date_json(doc[name])
    return json.dumps(doc, ensure_ascii=False, default=str)


_STATUS_FIELDS = tuple(f.name for f in attrs.fields(StatusRecord))


def _date_json(when: datetime) -> dict[str, Any]:
    """A datetime as relaxed extended JSON, as json_util writes it (milliseconds)."""
    when = to_ms(when)
    if 1970 <= when.year <= 9999:
        return {"$date": when.replace(tzinfo=None).isoformat(timespec="milliseconds") + "Z"}
    ms = (when - LONG_AGO) // timedelta(milliseconds=1)
    return {"$date": {"$numberLong": str(ms)}}


def status_from_document(doc: Mapping[str, Any]) -> StatusRecord:
    known = {f.name for f in attrs.fields(StatusRecord)}
    values = {k: v for k, v in doc.items() if k in known}
    for name in ("heartbeat", "next_transition_at"):
        if isinstance(values.get(name), datetime):
            values[name] = values[name].astimezone(UTC)
    return StatusRecord(**values)


def owner_to_document(record: OwnerRecord) -> dict[str, Any]:
    doc = attrs.asdict(record, recurse=False)
    for name in ("started_at", "heartbeat"):
        if doc[name] is not None:
            doc[name] = to_ms(doc[name])
    return doc


def owner_from_document(doc: Mapping[str, Any]) -> OwnerRecord:
    known = {f.name for f in attrs.fields(OwnerRecord)}
    values = {k: v for k, v in doc.items() if k in known}
    for name in ("started_at", "heartbeat"):
        if isinstance(values.get(name), datetime):
            values[name] = values[name].astimezone(UTC)
    return OwnerRecord(**values)


def halt_to_document(halt: AccountHalt) -> dict[str, Any]:
    doc = attrs.asdict(halt, recurse=False)
    if doc["halted_at"] is not None:
        doc["halted_at"] = to_ms(doc["halted_at"])
    return doc


def halt_from_document(doc: Mapping[str, Any]) -> AccountHalt:
    """A stored halt; a field of the wrong type is left at its default, never dropping
    the halt itself (a halted account must stay halted)."""
    account = doc.get("account")
    if not isinstance(account, str):
        raise StoreError(f"a stored account halt has no account name ({account!r})")
    halted_at = doc.get("halted_at")
    if isinstance(halted_at, str):
        try:
            halted_at = from_iso(halted_at)
        except ValueError:
            halted_at = None
    return AccountHalt(
        account=account,
        reason=doc["reason"] if isinstance(doc.get("reason"), str) else "",
        cancel_orders=doc.get("cancel_orders") is True,
        halted_at=halted_at.astimezone(UTC) if isinstance(halted_at, datetime) else None,
        by=doc["by"] if isinstance(doc.get("by"), str) else "",
    )
