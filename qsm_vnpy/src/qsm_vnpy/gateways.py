"""Which vnpy gateway class a document's ``gateway.name`` means.

The known names are vnpy's own gateway distributions (installed separately, e.g.
``pip install vnpy_ctp``) and the adapter's ``REPLAY``; any other gateway is named
with ``gateway.class``, loaded under the configured import rules.
"""

from __future__ import annotations

import importlib
from typing import Any

from strategy_manager.core.context import EngineContext
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


def gateway_class(name: str, dotted: str | None, context: EngineContext) -> Any:
    sid = context.strategy_id
    if dotted:
        return context.load_class(dotted)
    ref = KNOWN.get(name)
    if ref is None:
        raise InvalidStrategy(
            f"{sid}: gateway {name!r} is not one of {', '.join(sorted(KNOWN))}; "
            "name its class in params.vnpy.gateway.class"
        )
    module_name, _, attr = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError:
        raise InvalidStrategy(
            f"{sid}: gateway {name!r} needs the package {module_name} (pip install {module_name})"
        ) from None
    return getattr(module, attr)
