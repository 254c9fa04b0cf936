"""Which vnpy gateway class a document's ``gateway.name`` means, and the setting it
connects with.

The known names are vnpy's own gateway distributions (installed separately, e.g.
``pip install vnpy_ctp``) and the adapter's ``REPLAY``; any other gateway is named
with ``gateway.class``, loaded under the configured import rules as a
``BaseGateway`` subclass.

The setting: the operator's ``engine_options.vnpy.gateways.<NAME>`` always wins. A
document may set only the keys the adapter declares safe for that gateway (the
replay's file, start, pace ...) or the operator lists in
``engine_options.vnpy.document_keys.<NAME>``; any other key (a front address, a
user name) is refused, so a document can never send the operator's credentials to
a server of its choosing.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Mapping
from typing import Any

import attrs

from qsm_vnpy.settings import GatewaySettings, ReplaySettings
from strategy_manager.core.context import EngineContext, SessionContext
from strategy_manager.core.errors import InvalidStrategy

#: Gateway name -> ``module:Class``.
KNOWN: dict[str, str] = {
    "REPLAY": "qsm_vnpy.replay:ReplayGateway",
    "CTP": "vnpy_ctp:CtpGateway",
    "MINI": "vnpy_mini:MiniGateway",
    "SOPT": "vnpy_sopt:SoptGateway",
    "XTP": "vnpy_xtp:XtpGateway",
    "TORA": "vnpy_tora:ToraStockGateway",
    "IB": "vnpy_ib:IbGateway",
}


def _known(name: str, sid: str) -> str:
    ref = KNOWN.get(name)
    if ref is None:
        raise InvalidStrategy(
            f"{sid}: gateway {name!r} is not one of {', '.join(sorted(KNOWN))}; "
            "name its class in params.vnpy.gateway.class"
        )
    return ref


def _missing(name: str, module_name: str, sid: str) -> InvalidStrategy:
    return InvalidStrategy(
        f"{sid}: gateway {name!r} needs the package {module_name} (pip install {module_name})"
    )


def _ident(context: EngineContext | SessionContext) -> str:
    """Who the message is about: the strategy, or the account."""
    if isinstance(context, SessionContext):
        return f"account {context.account.name}"
    return context.strategy_id


def named_gateway(
    name: str,
    dotted: str | None,
    context: EngineContext | SessionContext,
    what: str = "params.vnpy.gateway.class",
) -> Any:
    """The gateway class a document (or an account) names with ``class`` (loaded as a
    ``BaseGateway``), or None for a known gateway ``name``, which is checked to be known only."""
    if dotted:
        from vnpy.trader.gateway import BaseGateway

        return context.load_class(dotted, kind=BaseGateway, what=what)
    _known(name, _ident(context))
    return None


def check_installed(name: str, sid: str) -> None:
    """A known gateway's package is installed (looked for, not imported)."""
    module_name = _known(name, sid).partition(":")[0]
    if importlib.util.find_spec(module_name) is None:
        raise _missing(name, module_name, sid)


def gateway_class(name: str, dotted: str | None, context: EngineContext | SessionContext) -> Any:
    """The gateway class: the one a document (or an account) names, or the known
    gateway ``name`` imported from its package."""
    if dotted:
        return named_gateway(name, dotted, context)
    module_name, _, attr = _known(name, _ident(context)).partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise _missing(name, module_name, _ident(context)) from None
    return getattr(module, attr)


def is_replay(name: str, cls: Any) -> bool:
    """Whether gateway ``name`` (of class ``cls``, None for a known one) is the replay."""
    if cls is None:
        return name == "REPLAY"
    from qsm_vnpy.replay import ReplayGateway

    return issubclass(cls, ReplayGateway)


def operator_setting(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The operator's ``engine_options.vnpy.gateways.<NAME>``."""
    operator = options.get("gateways", {})
    mine = operator.get(name, {}) if isinstance(operator, Mapping) else {}
    return dict(mine) if isinstance(mine, Mapping) else {}


def document_keys(name: str, cls: Any, options: Mapping[str, Any]) -> set[str]:
    """The setting keys a document may give gateway ``name`` (of class ``cls``, or a
    known gateway when None)."""
    keys = {f.name for f in attrs.fields(ReplaySettings)} if is_replay(name, cls) else set()
    listed = options.get("document_keys", {})
    extra = listed.get(name, []) if isinstance(listed, Mapping) else []
    return keys | {str(k) for k in extra} if isinstance(extra, list | tuple) else keys


def gateway_setting(gateway: GatewaySettings, cls: Any, context: EngineContext) -> dict[str, Any]:
    """What ``MainEngine.connect`` gets: the document's safe keys under the operator's
    ``engine_options.vnpy.gateways.<NAME>``, which win. ``cls`` is the class a
    document names, None for a known gateway."""
    options = context.options
    allowed = document_keys(gateway.name, cls, options)
    refused = sorted(set(gateway.setting) - allowed)
    if refused:
        names = ", ".join(_short(k) for k in refused[:5]) + (" ..." if len(refused) > 5 else "")
        may = ", ".join(sorted(allowed)) or "none"
        raise InvalidStrategy(
            f"{context.strategy_id}: params.vnpy.gateway.setting: {names} may not be set by a document "
            f"for gateway {_short(gateway.name)}; connection and credential settings come from "
            f"engine_options.vnpy.gateways (a document may set: {may})"
        )
    return {**gateway.setting, **operator_setting(gateway.name, options)}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
