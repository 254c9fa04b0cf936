"""Reading a replay file: 1-minute bars in CSV, oldest first.

Columns (a header row names them): ``datetime`` (ISO 8601; naive times are in the
replay's time zone), ``open``, ``high``, ``low``, ``close``, and optionally
``volume``, ``turnover`` and ``open_interest``. Times must rise strictly and sit
on the minute.
"""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path
from typing import NamedTuple
from zoneinfo import ZoneInfo

from strategy_manager.core.errors import InvalidStrategy

REQUIRED = ("datetime", "open", "high", "low", "close")
OPTIONAL = ("volume", "turnover", "open_interest")


class Bar(NamedTuple):
    datetime: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float = 0.0
    turnover: float = 0.0
    open_interest: float = 0.0


def read_bars(path: Path, timezone: str, sid: str = "") -> list[Bar]:
    zone = ZoneInfo(timezone)
    where = f"{sid}: replay file {str(path)!r}"
    try:
        handle = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise InvalidStrategy(f"{where}: cannot be read ({exc.strerror or exc})") from None
    bars: list[Bar] = []
    with handle:
        reader = csv.DictReader(handle)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise InvalidStrategy(f"{where}: missing column(s) {', '.join(missing)}")
        for line, row in enumerate(reader, start=2):
            try:
                moment = datetime.fromisoformat(row["datetime"])
                numbers = [float(row[c]) for c in REQUIRED[1:]]
                extras = [float(row[c]) if row.get(c) not in (None, "") else 0.0 for c in OPTIONAL]
            except (TypeError, ValueError) as exc:
                raise InvalidStrategy(f"{where} line {line}: {exc}") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=zone)
            bar = Bar(moment, *numbers, *extras)
            _check(bar, bars[-1] if bars else None, f"{where} line {line}")
            bars.append(bar)
    if not bars:
        raise InvalidStrategy(f"{where}: has no bars")
    return bars


def _check(bar: Bar, previous: Bar | None, where: str) -> None:
    if bar.datetime.second or bar.datetime.microsecond:
        raise InvalidStrategy(f"{where}: {bar.datetime.isoformat()} is not on the minute")
    if previous is not None and bar.datetime <= previous.datetime:
        raise InvalidStrategy(
            f"{where}: time {bar.datetime.isoformat()} does not come after the previous bar"
        )
    if not bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high or bar.low <= 0:
        raise InvalidStrategy(f"{where}: prices must satisfy 0 < low <= open, close <= high")
