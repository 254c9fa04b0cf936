"""Strategy documents in and out of a store as JSON files (``strategies import/export``).

A file is a JSON array of documents or JSON lines (one document per line). Values
that plain JSON cannot hold (dates, ObjectIds) travel as MongoDB relaxed Extended
JSON, so an export imports back unchanged. Each document is all-or-nothing: it is
validated by :func:`parse_strategy` and upserted on its natural key, or it is
reported with the reason and nothing of it is written.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from attrs import define
from bson import json_util

from strategy_manager.core.errors import InvalidStrategy, QsmError
from strategy_manager.core.spec import MAX_DEPTH, StrategySpec, parse_strategy
from strategy_manager.core.store.codec import DOCUMENT_JSON
from strategy_manager.core.store.protocol import Store


@define(frozen=True)
class Entry:
    """One document read from a file: where it was, and it or the reason it is unreadable."""

    where: str
    document: Any = None
    error: str | None = None


@define(frozen=True)
class Outcome:
    where: str
    #: "inserted", "updated" or "invalid"
    result: str
    ident: str | None = None
    reason: str | None = None


def _pairs(pairs: list[tuple[str, Any]]) -> Any:
    seen: set[str] = set()
    for key, _ in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen.add(key)
    return json_util.object_pairs_hook(pairs, DOCUMENT_JSON)


def loads(text: str) -> Any:
    """JSON (with Extended JSON values); a repeated key is an error, not a silent overwrite."""
    return json.loads(text, object_pairs_hook=_pairs)


def _reason(exc: Exception) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"column {exc.colno}: {exc.msg}"
    return str(exc) or type(exc).__name__


def read_entries(path: Path) -> list[Entry]:
    """The documents in ``path``: a JSON array (entries "item N") or JSON lines ("line N")."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidStrategy(f"{path}: cannot read: {exc.strerror or exc}") from None
    return parse_entries(data, str(path))


def parse_entries(data: bytes, path: str) -> list[Entry]:
    """The documents in ``data`` read from ``path`` (a file name, or ``<stdin>``)."""
    if data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"["):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidStrategy(f"{path}: not UTF-8 text (byte {exc.start})") from None
        try:
            items = json.loads(text, object_pairs_hook=_pairs)
        except RecursionError:
            return _entries_one_by_one(path, text)  # one document is nested too deep
        except json.JSONDecodeError as exc:
            raise InvalidStrategy(f"{path}: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidStrategy(f"{path}: {_reason(exc)}") from None
        if not isinstance(items, list):
            raise InvalidStrategy(f"{path}: expected a JSON array of documents")
        return [Entry(f"item {n}", item) for n, item in enumerate(items, 1)]
    entries = []
    for n, raw in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1):
        if not raw.strip():
            continue
        try:
            entries.append(Entry(f"line {n}", loads(raw.decode("utf-8"))))
        except UnicodeDecodeError as exc:
            entries.append(Entry(f"line {n}", error=f"not UTF-8 text (byte {exc.start} of the line)"))
        except RecursionError:
            entries.append(Entry(f"line {n}", error=TOO_DEEP))
        except (ValueError, TypeError, KeyError) as exc:
            entries.append(Entry(f"line {n}", error=_reason(exc)))
    return entries


TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels (the limit)"
#: A JSON string, or one structural character.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},]')


def _entries_one_by_one(path: str, text: str) -> list[Entry]:
    """The items of a JSON array decoded one at a time, without recursion: an item
    nested deeper than the limit is reported as such and its neighbours still decode."""
    entries: list[Entry] = []
    depth, deepest, start, end = 0, 0, -1, -1
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token.startswith('"'):
            continue
        if token in "[{":
            depth += 1
            if depth == 1:
                start, deepest = match.end(), 1
            deepest = max(deepest, depth)
        elif token == ",":
            if depth == 1:
                entries.append(_one(len(entries) + 1, text[start : match.start()], deepest - 1))
                start, deepest = match.end(), 1
        else:
            depth -= 1
            if depth == 0:
                last = text[start : match.start()]
                if entries or last.strip():
                    entries.append(_one(len(entries) + 1, last, deepest - 1))
                end = match.end()
                break
    if end < 0 or text[end:].strip():
        raise InvalidStrategy(f"{path}: not a well-formed JSON array of documents")
    return entries


def _one(number: int, text: str, depth: int) -> Entry:
    where = f"item {number}"
    if not text.strip():
        return Entry(where, error="empty item")
    if depth > MAX_DEPTH + 1:
        return Entry(where, error=TOO_DEEP)
    try:
        return Entry(where, loads(text))
    except RecursionError:
        return Entry(where, error=TOO_DEEP)
    except (ValueError, TypeError, KeyError) as exc:
        return Entry(where, error=_reason(exc))


def import_entries(
    store: Store, entries: Sequence[Entry], check: Callable[[Any], StrategySpec] | None = None
) -> list[Outcome]:
    """Upsert each valid document; ``check`` (by default :func:`parse_strategy`)
    returns its spec or raises the QsmError that makes it invalid."""
    outcomes = []
    for entry in entries:
        if entry.error is not None:
            outcomes.append(Outcome(entry.where, "invalid", reason=entry.error))
            continue
        try:
            spec = (check or parse_strategy)(entry.document)
            result = store.upsert_strategy(entry.document)
        except QsmError as exc:
            outcomes.append(Outcome(entry.where, "invalid", reason=str(exc)))
            continue
        outcomes.append(Outcome(entry.where, "inserted" if result.inserted else "updated", ident=spec.id))
    return outcomes


def dumps(documents: Sequence[dict[str, Any]]) -> str:
    """Documents as a JSON array that :func:`read_entries` reads back unchanged."""
    return json_util.dumps(list(documents), json_options=DOCUMENT_JSON, ensure_ascii=False, indent=2)
