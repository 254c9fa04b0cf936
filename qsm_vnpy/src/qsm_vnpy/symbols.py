"""Document symbols to vnpy's ``vt_symbol``: ``002050.SZ`` is ``002050.SZSE``.

Stock suffixes of the common data vendors map to vnpy's exchange codes; a suffix
that already is a vnpy exchange (``rb2501.SHFE``, ``600000.SSE``) passes through.
``engine_options.vnpy.exchange_map`` adds or overrides suffixes.
"""

from __future__ import annotations

from collections.abc import Mapping

from strategy_manager.core.errors import InvalidStrategy

#: Vendor suffix -> vnpy ``Exchange`` value.
DEFAULT_EXCHANGE_MAP: dict[str, str] = {
    "SZ": "SZSE",
    "SH": "SSE",
    "SS": "SSE",
    "BJ": "BSE",
    "HK": "SEHK",
}


def to_vt_symbol(symbol: str, exchanges: Mapping[str, str] | None = None, sid: str = "") -> str:
    """Map ``symbol`` to a vt_symbol whose exchange is one vnpy knows."""
    from vnpy.trader.constant import Exchange

    code, dot, suffix = symbol.rpartition(".")
    if not dot or not code:
        raise InvalidStrategy(
            f"{sid}: symbol {symbol!r} has no exchange suffix; vnpy needs one (002050.SZ, rb2501.SHFE)"
        )
    table = {**DEFAULT_EXCHANGE_MAP, **(exchanges or {})}
    exchange = table.get(suffix, table.get(suffix.upper(), suffix))
    known = {e.value for e in Exchange}
    if exchange not in known:
        raise InvalidStrategy(
            f"{sid}: symbol {symbol!r}: exchange {exchange!r} is not a vnpy exchange; "
            "map it in engine_options.vnpy.exchange_map"
        )
    return f"{code}.{exchange}"
