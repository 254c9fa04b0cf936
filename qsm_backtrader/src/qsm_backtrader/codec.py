"""Plain JSON data for the values a snapshot holds, and back.

JSON scalars, lists and string-keyed dicts pass through. The few other kinds a
backtrader state needs are written as tagged objects ``{"__qsm__": kind, ...}``:
datetimes and dates, non-finite floats (JSON has no ``inf``), deques, and orders
(whose encoding the caller supplies, see :mod:`qsm_backtrader.orders`). Anything
else raises :class:`~strategy_manager.core.errors.SnapshotError` naming where it is.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

from strategy_manager.core.errors import SnapshotError

TAG = "__qsm__"

#: Encodes an object the codec does not know by itself, or returns None to refuse it.
Extension = Callable[[Any], dict[str, Any] | None]
#: Decodes a tagged object of a kind the codec does not know by itself.
Resolver = Callable[[dict[str, Any]], Any]


def encode(value: Any, where: str, extension: Extension | None = None) -> Any:
    """``value`` as plain JSON data; ``where`` names it in errors."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
    if isinstance(value, datetime):
        return {TAG: "datetime", "v": value.isoformat()}
    if isinstance(value, date):
        return {TAG: "date", "v": value.isoformat()}
    if isinstance(value, collections.deque):
        return {TAG: "deque", "v": [encode(v, f"{where}[{i}]", extension) for i, v in enumerate(value)]}
    if isinstance(value, list | tuple):
        return [encode(v, f"{where}[{i}]", extension) for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str) or key == TAG:
                raise SnapshotError(f"{where}: key {key!r} cannot be kept in a snapshot")
            out[key] = encode(item, f"{where}.{key}", extension)
        return out
    if extension is not None:
        tagged = extension(value)
        if tagged is not None:
            return tagged
    raise SnapshotError(
        f"{where} holds a {type(value).__name__}, which a snapshot cannot keep "
        "(keep plain data, datetimes or orders)"
    )


def decode(value: Any, where: str, resolver: Resolver | None = None) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(value, list):
        return [decode(v, f"{where}[{i}]", resolver) for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    kind = value.get(TAG)
    if kind is None:
        return {k: decode(v, f"{where}.{k}", resolver) for k, v in value.items()}
    try:
        if kind == "float":
            return float(value["v"])
        if kind == "datetime":
            return datetime.fromisoformat(value["v"])
        if kind == "date":
            return date.fromisoformat(value["v"])
        if kind == "deque":
            return collections.deque(decode(value["v"], where, resolver))
    except (KeyError, TypeError, ValueError) as exc:
        raise SnapshotError(f"{where}: malformed {kind!r} value {value!r}: {exc}") from None
    if resolver is not None:
        return resolver(value)
    raise SnapshotError(f"{where}: unknown tagged value {kind!r}")


def encode_vars(obj: Any, where: str, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """The instance attributes of a small record-like object (Position, OrderData ...)."""
    return {k: encode(v, f"{where}.{k}") for k, v in vars(obj).items() if k not in skip}


def decode_into(obj: Any, data: Any, where: str) -> Any:
    """Set the attributes :func:`encode_vars` wrote onto ``obj``; return ``obj``."""
    if not isinstance(data, dict):
        raise SnapshotError(f"{where}: expected an object, got {type(data).__name__}")
    vars(obj).update(decode(data, where))
    return obj
