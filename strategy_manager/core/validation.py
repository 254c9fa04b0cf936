"""Fail fast: a document checked against its engine before it is stored or started.

:func:`validate_document` parses a document, resolves its engine (an engine that is
not installed, disabled or broken is an error) and runs the engine's optional
``qsm_validate_engine`` hook, which loads the classes the document names and checks
its parameters without starting anything. It returns the spec or raises one
:class:`~strategy_manager.core.errors.QsmError` whose one-line message starts with
the strategy id. The command line calls it before storing a document; the
orchestrator can call it on a worker thread when a document appears or changes
(it touches no shared state, and imports an engine library only if that engine's
check needs it). Errors it raises are the user's to fix: retrying cannot help.

:func:`check_params` is for adapters: parameter names and, where a default tells,
types.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import HookError, InvalidStrategy, QsmError
from strategy_manager.core.spec import StrategySpec, parse_strategy

if TYPE_CHECKING:
    from strategy_manager.core.classloader import ClassLoader
    from strategy_manager.core.registry import EngineHooks, EngineRegistry
    from strategy_manager.core.settings import Settings


def validate_document(
    settings: Settings, registry: EngineRegistry, document: Any, classes: ClassLoader | None = None
) -> StrategySpec:
    """The document's spec, if its engine accepts it; else a one-line QsmError."""
    spec = parse_strategy(document)
    validate_spec(settings, lambda: registry.resolve(spec.engine), spec, classes)
    return spec


def validate_spec(
    settings: Settings,
    hooks: Callable[[], EngineHooks],
    spec: StrategySpec,
    classes: ClassLoader | None = None,
) -> None:
    """Run the engine's check of ``spec`` (``hooks`` resolves the engine; an engine
    that cannot be resolved is refused too); a one-line QsmError if it refuses."""
    try:
        if spec.account is not None:
            from strategy_manager.core.accounts import configured_account

            configured_account(settings, spec.id, spec.account, spec.engine)
        hooks().validate(spec, EngineContext.for_spec(settings, spec, classes))
    except QsmError as exc:
        message = _one_line(exc)
        if message.startswith(f"{spec.id}: "):
            raise
        raise type(exc)(f"{spec.id}: {message}") from None
    except Exception as exc:  # a plugin's bug, reported like a refusal
        raise HookError(
            f"{spec.id}: engine '{spec.engine}' failed to validate it: {type(exc).__name__}: {_one_line(exc)}"
        ) from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:1000]


def _expected(default: Any) -> tuple[tuple[type, ...], str] | None:
    """The JSON types a value may have where ``default`` is, and their name."""
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "an integer"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "a string"
    return None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check_params(sid: str, where: str, given: Mapping[str, Any], accepted: Mapping[str, Any]) -> None:
    """Refuse a name ``accepted`` lacks, or a value whose type differs from its
    default's where the default tells (a bool, an integer, a number or a string; any
    other default, None included, accepts anything). ``where`` names the place in
    the message: ``u1:600000.SH:k: params for SmaCross: 'fast' must be an integer``.
    """
    unknown = sorted(set(given) - set(accepted), key=str)
    if unknown:
        names = ", ".join(map(_short, unknown[:10])) + (" ..." if len(unknown) > 10 else "")
        known = ", ".join(sorted(map(str, accepted))) or "(none)"
        raise InvalidStrategy(f"{sid}: {where}: unknown {names}; known: {known}")
    for name, value in given.items():
        expected = _expected(accepted[name])
        if expected is None:
            continue
        allowed, label = expected
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise InvalidStrategy(f"{sid}: {where}: {_short(name)} must be {label}, got {_short(value)}")
