"""Build the strategy's data feed from its ``feed`` settings.

* ``csv``: backtrader's ``GenericCSVData``; the header row names the columns
  (``datetime`` or ``date``, optional ``time``, ``open``, ``high``, ``low``,
  ``close``, optional ``volume`` and ``openinterest``), datetimes in ISO format
  unless ``reader.dtformat`` says otherwise. Without a ``timeframe`` the bars are
  daily (backtrader's default), and a file with two bars on one day is refused:
  backtrader would stamp them all at the session's end.
* ``parquet``: read with pandas (needs ``pyarrow`` or ``fastparquet``), replayed
  through backtrader's ``PandasData``; a ``datetime``/``date`` column becomes the index.
* ``factory``: ``package.module:FeedClass``, a backtrader data feed class (live ones
  included) constructed with ``kwargs``. It is resolved under the core's class rules
  and must be a subclass of ``bt.feed.AbstractDataBase`` defined in an admitted
  module, checked before it is constructed; nothing else named by a document is
  ever called.
* ``store``: the keyword arguments of ``getdata`` of the strategy's account's shared
  store (:mod:`qsm_backtrader.session`), e.g. ``{"dataname": "AAPL"}``.

Relative paths are resolved against the engine option ``data_root`` if set, else
the working directory.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import backtrader as bt

from qsm_backtrader.settings import FeedSettings
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import EngineError, InvalidStrategy

TIMEFRAMES = {
    "ticks": bt.TimeFrame.Ticks,
    "microseconds": bt.TimeFrame.MicroSeconds,
    "seconds": bt.TimeFrame.Seconds,
    "minutes": bt.TimeFrame.Minutes,
    "days": bt.TimeFrame.Days,
    "weeks": bt.TimeFrame.Weeks,
    "months": bt.TimeFrame.Months,
    "years": bt.TimeFrame.Years,
}
_CSV_COLUMNS = ("open", "high", "low", "close", "volume", "openinterest")
#: Modules whose feed classes a document may name without configuration.
FEED_MODULES = ("backtrader.feeds", "qsm_backtrader.livefeed", "qsm_backtrader.examples")


def reader_class(settings: FeedSettings) -> Any:
    """The backtrader feed class that reads a ``csv`` or ``parquet`` feed."""
    return bt.feeds.GenericCSVData if settings.csv else bt.feeds.PandasData


def feed_class(dotted: str, context: EngineContext) -> Any:
    """The feed class ``params.backtrader.feed.factory`` names, checked before it is called."""
    return context.load_class(
        dotted, kind=bt.feed.AbstractDataBase, trusted=FEED_MODULES, what="params.backtrader.feed.factory"
    )
_REQUIRED = ("open", "high", "low", "close")


def build_feed(settings: FeedSettings, context: EngineContext) -> Any:
    sid = context.strategy_id
    if settings.store is not None:
        from qsm_backtrader.session import StoreSession

        session = context.session
        if not isinstance(session, StoreSession):
            raise EngineError(f"{sid}: feed 'store' needs its account's session, and the strategy has none")
        return session.getdata(settings.store, sid)
    if settings.factory:
        cls = feed_class(settings.factory, context)
        try:
            return cls(**settings.kwargs)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            raise EngineError(
                f"{sid}: feed factory {settings.factory!r} raised {type(exc).__name__}: {reason}"
            ) from exc
    common = {"timeframe": TIMEFRAMES[settings.timeframe or "days"], "compression": settings.compression}
    if settings.csv:
        path = _resolve(settings.csv, context)
        columns = _csv_columns(path, sid)
        if settings.timeframe is None:
            _refuse_intraday(path, columns, settings.reader.get("dtformat"), sid)
        params = {"dataname": str(path), "dtformat": datetime.fromisoformat, **columns, **common}
        return bt.feeds.GenericCSVData(**{**params, **settings.reader})
    path = _resolve(settings.parquet or "", context)
    try:
        import pandas as pd

        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise EngineError(
            f"{sid}: feed parquet '{path}' needs pyarrow: pip install pyarrow ({exc})"
        ) from None
    except OSError as exc:
        raise EngineError(f"{sid}: feed parquet '{path}' cannot be read: {exc}") from None
    for name in ("datetime", "date"):
        if name in frame.columns:
            frame = frame.set_index(name)
            break
    return bt.feeds.PandasData(**{"dataname": frame, **common, **settings.reader})


def _resolve(name: str, context: EngineContext) -> Path:
    path = Path(name).expanduser()
    root = context.options.get("data_root")
    return path if path.is_absolute() or not root else Path(root) / path


def _csv_columns(path: Path, sid: str) -> dict[str, int]:
    try:
        with path.open(encoding="utf-8") as handle:
            header = handle.readline()
    except OSError as exc:
        raise EngineError(f"{sid}: feed csv '{path}' cannot be read: {exc.strerror or exc}") from None
    names = [n.strip().lower() for n in header.split(",")]
    where = {n: i for i, n in enumerate(names)}
    stamp = where.get("datetime", where.get("date"))
    missing = [n for n in _REQUIRED if n not in where] + (["datetime or date"] if stamp is None else [])
    if missing:
        raise EngineError(
            f"{sid}: feed csv '{path}': header {header.strip()!r} lacks column(s) {', '.join(missing)}"
        )
    columns = {n: where.get(n, -1) for n in _CSV_COLUMNS}
    return {"datetime": stamp, "time": where.get("time", -1), **columns}  # type: ignore[dict-item]


#: How many rows the intraday check reads.
_SAMPLE_ROWS = 100


def _refuse_intraday(path: Path, columns: dict[str, int], dtformat: Any, sid: str) -> None:
    """Refuse a file with two bars on one day among its first rows, naming ``timeframe``."""
    days: list[Any] = []
    with path.open(encoding="utf-8") as handle:
        handle.readline()
        for _, line in zip(range(_SAMPLE_ROWS), handle, strict=False):
            day = _day(line.split(",")[columns["datetime"]].strip(), dtformat)
            if day is None:
                return  # not ours to parse: backtrader reports it
            if days and day == days[-1]:
                raise InvalidStrategy(
                    f"{sid}: feed csv '{path}' has intraday bars (two on {day}) but no timeframe; set "
                    "params.backtrader.feed.timeframe (\"minutes\", with compression for 5-minute bars), "
                    "or backtrader stamps every bar at the session's end"
                )
            days.append(day)


def _day(text: str, dtformat: Any) -> Any:
    """The date of a CSV datetime field as backtrader would read it, or None."""
    try:
        if dtformat is None:
            return datetime.fromisoformat(text).date()
        if isinstance(dtformat, str):
            return datetime.strptime(text, dtformat).date()
        if callable(dtformat):
            return dtformat(text).date()
    except (ValueError, TypeError, AttributeError):
        return None
    return None

