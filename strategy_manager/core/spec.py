"""StrategySpec: one validated strategy document, and the one cattrs converter.

A document is the user's; we parse it, never rewrite it. Known fields are typed and
checked strictly (a ``"true"`` string is not a bool, ``5`` is not a symbol); unknown
fields are kept in ``extra`` untouched. A document that fails validation raises
:class:`InvalidStrategy` naming the document, the field and the reason.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any, Literal, get_args, get_origin

import cattrs
from attrs import define, evolve, field, fields
from cattrs.v import format_exception

from strategy_manager.core.errors import InvalidStrategy, QsmError

#: A store returns a row it cannot decode as a document holding the reason under
#: this key (no user document can hold it: keys may not start with '$').
INVALID = "$invalid"
MAX_DEPTH = 32
MAX_DOCUMENT_BYTES = 1_000_000
MAX_NAME = 200

ScheduleMode = Literal["calendar", "always"]
LunchBreak = Literal["keep_running", "pause"]


@define(frozen=True)
class ScheduleOverrides:
    """The per-strategy ``schedule`` object; a None field takes the configured default."""

    mode: ScheduleMode | None = None
    pre_open_minutes: int | None = None
    post_close_minutes: int | None = None
    lunch_break: LunchBreak | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("pre_open_minutes", "post_close_minutes"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 24 * 60:
                raise ValueError(f"{name} must be between 0 and 1440, got {value}")


@define(frozen=True)
class StrategySpec:
    user_id: str
    symbol: str
    strategy_key: str
    engine: str
    enabled: bool = True
    engine_class: str | None = None
    params: dict[str, Any] = field(factory=dict)
    calendar: str | None = None
    schedule: ScheduleOverrides = field(factory=ScheduleOverrides)
    #: The broker account whose shared session the strategy uses (a name in the
    #: ``accounts`` setting); None: the engine's default (see its adapter's docs).
    account: str | None = None
    #: The document's ``_id`` as a string, when it came from a store.
    doc_id: str | None = None
    updated_at: datetime | None = None
    #: Fields we do not know, exactly as they were.
    extra: dict[str, Any] = field(factory=dict)

    @property
    def id(self) -> str:
        """The natural key ``user_id:symbol:strategy_key``, unique in the store."""
        return f"{self.user_id}:{self.symbol}:{self.strategy_key}"

    def runtime_fingerprint(self) -> str:
        """What, when changed, means the running worker must be recreated."""
        return json.dumps(
            [
                self.engine,
                self.engine_class,
                self.params,
                self.calendar,
                converter.unstructure(self.schedule),
                *([self.account] if self.account is not None else []),
            ],
            sort_keys=True,
            default=str,
        )

    def differs_only_in_params(self, other: StrategySpec) -> bool:
        """Whether ``other`` runs as this one does but for its ``params``: an engine that
        takes params in place (``qsm_update_params``) need not restart for it."""
        return self.params != other.params and (
            evolve(self, params={}).runtime_fingerprint() == evolve(other, params={}).runtime_fingerprint()
        )


def _strict(kind: type | tuple[type, ...], label: str) -> Any:
    def structure(value: Any, _type: Any) -> Any:
        # bool is an int in Python; a document's true is not a number.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _kinds(kind)):
            raise TypeError(f"expected {label}, got {type(value).__name__} {_short(value)}")
        return value

    return structure


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


converter = cattrs.Converter(forbid_extra_keys=True)
converter.register_structure_hook(str, _strict(str, "a string"))
converter.register_structure_hook(bool, _strict(bool, "true or false"))
converter.register_structure_hook(int, _strict(int, "an integer"))
converter.register_structure_hook(float, _strict((int, float), "a number"))
converter.register_structure_hook_func(lambda t: t == dict[str, Any], _strict(dict, "an object"))
converter.register_unstructure_hook(datetime, lambda d: d.isoformat())

_KNOWN = {f.name for f in fields(StrategySpec)} - {"doc_id", "updated_at", "extra"}
_REQUIRED = ("user_id", "symbol", "strategy_key", "engine")


def _clean_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_NAME
        and value.isprintable()
        and ":" not in value
        and value.strip() == value
    )


def describe(document: Any) -> str:
    """A short, one-line name for a document in messages, even a broken one."""
    if isinstance(document, dict):
        parts = [document.get(k) for k in ("user_id", "symbol", "strategy_key")]
        if all(_clean_name(p) for p in parts):
            return ":".join(parts)  # type: ignore[arg-type]
        if "_id" in document:
            return f"document _id={_short(document['_id'])}"
    return "document"


def parse_document(document: Any, index: int) -> tuple[str, StrategySpec | None, str | None]:
    """The ident and spec of the ``index``-th document of a listing, or its ident and why
    it is invalid. Whatever divides strategies among processes names them by this ident."""
    try:
        spec = parse_strategy(document)
    except QsmError as exc:
        ident = describe(document)
        return (f"document #{index}" if ident == "document" else ident), None, str(exc)
    return spec.id, spec, None


def parse_strategy(document: Any) -> StrategySpec:
    """Validate one raw document into a StrategySpec, or raise InvalidStrategy."""
    name = describe(document)
    if not isinstance(document, dict):
        raise InvalidStrategy(f"{name}: expected a JSON object, got {type(document).__name__}")
    if INVALID in document:
        raise InvalidStrategy(f"{name}: {document[INVALID]}")
    for key in _REQUIRED:
        if key not in document or document[key] is None:
            raise InvalidStrategy(f"{name}: missing required field '{key}'")
    for key in ("user_id", "symbol", "strategy_key", "engine"):
        value = document[key]
        if isinstance(value, str) and (not value.strip() or (":" in value and key != "symbol")):
            raise InvalidStrategy(
                f"{name}: field '{key}' must be a non-empty string without ':', got {_short(value)}"
            )
        # They are printed in status lines and logs: no control characters to forge them.
        if isinstance(value, str) and (len(value) > MAX_NAME or not value.isprintable()):
            raise InvalidStrategy(
                f"{name}: field '{key}' must be printable text of at most {MAX_NAME} characters "
                f"(no control characters), got {_short(value)}"
            )
    account = document.get("account")
    if account is not None and not (
        isinstance(account, str)
        and account
        and account.strip() == account
        and account.isprintable()
        and len(account) <= MAX_NAME
    ):
        raise InvalidStrategy(
            f"{name}: field 'account' must be the name of an account (printable text of at most "
            f"{MAX_NAME} characters, no surrounding blanks), got {_short(account)}"
        )
    _check_plain(document, name, "$", 0)
    size = len(json.dumps(document, default=str, ensure_ascii=False).encode("utf-8", "replace"))
    if size > MAX_DOCUMENT_BYTES:
        raise InvalidStrategy(f"{name}: document is {size} bytes, the limit is {MAX_DOCUMENT_BYTES}")
    known = {k: v for k, v in document.items() if k in _KNOWN}
    if known.get("schedule") is None:
        known.pop("schedule", None)
    elif not isinstance(known["schedule"], dict):
        raise InvalidStrategy(f"{name}: field 'schedule': expected an object")
    try:
        spec = converter.structure(known, StrategySpec)
    except cattrs.ClassValidationError as exc:
        raise InvalidStrategy(f"{name}: {_first_reason(exc)}") from None
    extra = {k: v for k, v in document.items() if k not in _KNOWN and k not in ("_id", "updated_at")}
    updated = document.get("updated_at")
    return _replace(
        spec,
        doc_id=None if document.get("_id") is None else str(document["_id"]),
        updated_at=updated if isinstance(updated, datetime) else None,
        extra=extra,
    )


def structure_section(raw: Any, cls: type[Any], sid: str, where: str) -> Any:
    """Structure a section of a document that an adapter owns (``params.vnpy``, say)
    into ``cls`` with the strict converter.

    Raises InvalidStrategy naming the strategy, the field under ``where`` and the
    reason in one line; a ValueError from ``cls``'s own checks gives its message as
    the reason.
    """
    try:
        return converter.structure(raw, cls)
    except cattrs.ClassValidationError as exc:
        messages = cattrs.transform_error(exc, path=where, format_exception=_section_leaf)
        text = messages[0] if messages else str(exc)
        if " @ " in text:
            reason, at = text.rsplit(" @ ", 1)
            text = f"field '{at}': {reason}"
        raise InvalidStrategy(f"{sid}: {text}") from None
    except (ValueError, TypeError) as exc:
        raise InvalidStrategy(f"{sid}: field '{where}': {exc}") from None


def split_engine_params(
    spec: StrategySpec, key: str, cls: type[Any], needs: str
) -> tuple[Any, dict[str, Any]]:
    """An adapter's own section ``params.<key>`` structured into ``cls``, and the
    other params (the strategy's own). ``needs`` completes the one-line error when
    the section is missing: "must be an object with at least <needs>"."""
    params = dict(spec.params)
    raw = params.pop(key, None)
    where = f"params.{key}"
    if not isinstance(raw, dict):
        raise InvalidStrategy(f"{spec.id}: field '{where}' must be an object with at least {needs}")
    return structure_section(raw, cls, spec.id, where), params


def _section_leaf(exc: BaseException, type_: Any) -> str:
    if get_origin(type_) is Literal:
        return "must be one of " + ", ".join(repr(v) for v in get_args(type_))
    if type(exc) is ValueError:  # the section's own checks (__attrs_post_init__, hooks)
        return str(exc)
    return format_exception(exc, type_)


def _replace(spec: StrategySpec, **changes: Any) -> StrategySpec:
    import attrs

    return attrs.evolve(spec, **changes)


def _first_reason(exc: BaseException) -> str:
    messages = cattrs.transform_error(exc, path="", format_exception=_format_leaf)
    text = messages[0] if messages else str(exc)
    # cattrs says "... @ .params"; we say "field 'params': ...".
    if " @ " in text:
        reason, where = text.rsplit(" @ ", 1)
        where = where.lstrip(".").replace("].", "]").replace("[", ".").replace("]", "")
        return f"field '{where}': {reason}"
    return text


def _format_leaf(exc: BaseException, type_: Any) -> str:
    if isinstance(exc, KeyError):
        return "required field missing"
    literals = [a for a in (get_args(type_) or [type_]) if get_origin(a) is Literal]
    if literals:
        allowed = ", ".join(repr(v) for v in get_args(literals[0]))
        return f"must be one of {allowed}"
    return str(exc) or type(exc).__name__


def _where(path: str) -> str:
    return path if len(path) <= 80 else path[:38] + "..." + path[-38:]


def _check_plain(value: Any, name: str, path: str, depth: int) -> None:
    """Reject what cannot round-trip through JSON and BSON unchanged."""
    if depth > MAX_DEPTH:
        raise InvalidStrategy(f"{name}: '{_where(path)}' is nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidStrategy(f"{name}: key {_short(key)} under '{_where(path)}' is not a string")
            # At the top level too: MongoDB would read 'a.b' in an update as a path.
            if key.startswith("$") or "." in key or "\x00" in key:
                raise InvalidStrategy(
                    f"{name}: key {_short(key)} under '{_where(path)}' may not start with '$' or contain '.'"
                )
            shown = key if key.isprintable() and len(key) <= 40 else _short(key)
            _check_plain(item, name, f"{path}.{shown}", depth + 1)
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_plain(item, name, f"{path}[{index}]", depth + 1)
    elif isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidStrategy(f"{name}: '{_where(path)}' is not valid UTF-8 text") from None
    elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        raise InvalidStrategy(f"{name}: '{_where(path)}' is an integer beyond 64 bits (BSON limit)")
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidStrategy(f"{name}: '{_where(path)}' is {value}, which JSON cannot hold")
