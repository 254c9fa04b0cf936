"""What of a CTA strategy object a snapshot holds: its variables and its fields.

* **variables**: what vnpy's own ``sync_strategy_data`` saves and puts back after
  ``on_init`` (the names in the class's ``variables``, ``pos`` included).
* **fields**: the rest of the strategy's plain state, which vnpy does not save,
  so that a restart resumes exactly where it stopped. A field is an attribute the
  strategy's class (or a base below ``CtaTemplate``) declares in its body with a
  plain default (a number, a string, a boolean or None) and that is neither a
  parameter nor a variable: ``TurtleSignalStrategy``'s ``long_stop``, for
  instance, which decides its exit price. Its current value is saved when it is
  plain too; an object (a ``BarGenerator``, an array) is not, and is rebuilt by
  ``on_init`` and the history as vnpy rebuilds it. Fields are put back right after
  ``on_init``, with the variables.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

from vnpy_ctastrategy.template import CtaTemplate

from strategy_manager.core.errors import SnapshotError

#: Class attributes every strategy has that are not its state.
_NOT_STATE = frozenset({"author", "parameters", "variables"})
_SCALARS = (bool, int, float, str, type(None))


def variables_of(strategy: CtaTemplate) -> dict[str, Any]:
    """What vnpy's ``sync_strategy_data`` saves: the variables, without inited and trading."""
    data: dict[str, Any] = strategy.get_variables()
    data.pop("inited", None)
    data.pop("trading", None)
    return data


def field_names(cls: type[CtaTemplate]) -> set[str]:
    """The fields a strategy class declares (see the module docstring)."""
    names: set[str] = set()
    skip = _NOT_STATE | set(cls.parameters) | set(cls.variables) | {"pos", "inited", "trading"}
    for klass in cls.__mro__:
        if klass is CtaTemplate:
            break
        for name, default in vars(klass).items():
            if not name.startswith("_") and name not in skip and isinstance(default, _SCALARS):
                names.add(name)
    return names


def fields_of(strategy: CtaTemplate) -> dict[str, Any]:
    """The fields whose current value is plain, as JSON data."""
    out: dict[str, Any] = {}
    for name in sorted(field_names(type(strategy))):
        value = _unwrap(getattr(strategy, name, None))
        if isinstance(value, _SCALARS) and not (isinstance(value, float) and not math.isfinite(value)):
            out[name] = value
    return out


def plain_variable(sid: str, name: str, value: Any) -> Any:
    """A variable as JSON data: numpy scalars become Python numbers. Refuses what a
    snapshot cannot hold, naming the variable."""
    value = _unwrap(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise SnapshotError(f"{sid}: strategy variable {name!r} is {value}, which JSON cannot hold")
    if isinstance(value, (*_SCALARS, list, dict)):
        return value
    raise SnapshotError(
        f"{sid}: strategy variable {name!r} is a {type(value).__name__}, which a snapshot cannot hold"
    )


def validate_fields(fields: Any, cls: type[CtaTemplate], sid: str) -> None:
    """Refuse saved fields the class does not declare, or that are not plain, naming the key."""
    if not isinstance(fields, dict):
        raise SnapshotError(f"{sid}: snapshot key 'fields' is not an object")
    declared = field_names(cls)
    for name, value in fields.items():
        if name not in declared:
            raise SnapshotError(f"{sid}: snapshot key 'fields.{name}' is not a field of {cls.__name__}")
        if not isinstance(value, _SCALARS):
            raise SnapshotError(
                f"{sid}: snapshot key 'fields.{name}' is not a number, string, boolean or null"
            )


def _unwrap(value: Any) -> Any:
    item = getattr(value, "item", None)  # a numpy scalar
    if callable(item) and not isinstance(value, list | dict | str):
        with contextlib.suppress(TypeError, ValueError):
            value = item()
    return value
