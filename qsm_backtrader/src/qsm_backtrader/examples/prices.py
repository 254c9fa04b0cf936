"""A deterministic, made-up daily price series: the same seed gives the same bars.

``GeneratedFeed`` is a feed class for documents
(``{"factory": "qsm_backtrader.examples.prices:GeneratedFeed", "kwargs": {"bars": 2000}}``);
``write_csv`` writes the same bars as a CSV file the ``csv`` feed reads back
exactly (``python -m qsm_backtrader.examples.prices out.csv --bars 3000 --seed 1``).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import backtrader as bt

Bar = tuple[datetime, float, float, float, float, float]


def generate_bars(count: int, seed: int = 7, start: date = date(2015, 1, 5)) -> Iterator[Bar]:
    """``count`` weekday bars of a random walk (prices with two decimals)."""
    rng = random.Random(seed)
    price, day = 100.0, start
    for _ in range(count):
        while day.weekday() >= 5:
            day += timedelta(days=1)
        close = round(max(1.0, price * (1.0 + rng.gauss(0.0002, 0.015))), 2)
        high = round(max(price, close) * (1.0 + abs(rng.gauss(0.0, 0.004))), 2)
        low = round(min(price, close) * (1.0 - abs(rng.gauss(0.0, 0.004))), 2)
        volume = float(rng.randint(1000, 50000))
        yield datetime.combine(day, datetime.min.time()), price, high, low, close, volume
        price, day = close, day + timedelta(days=1)


def write_csv(path: str | Path, count: int, seed: int = 7) -> Path:
    """Write ``date,open,high,low,close,volume`` rows; floats are written exactly."""
    path = Path(path)
    lines = ["date,open,high,low,close,volume"]
    lines += [
        f"{dt.date().isoformat()},{o!r},{h!r},{lo!r},{c!r},{v!r}"
        for dt, o, h, lo, c, v in generate_bars(count, seed)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class GeneratedFeed(bt.feed.DataBase):
    """A backtrader feed replaying :func:`generate_bars` from memory; its params
    ``bars``, ``seed`` and ``start`` (ISO date) are the document's ``kwargs``."""

    params = (("bars", 2000), ("seed", 7), ("start", "2015-01-05"))

    def start(self) -> None:
        super().start()
        self._bars = generate_bars(self.p.bars, self.p.seed, date.fromisoformat(self.p.start))

    def _load(self) -> bool:
        bar = next(self._bars, None)
        if bar is None:
            return False
        dt, *values = bar
        # daily bars close at the session's end, as backtrader's CSV feeds have it
        self.lines.datetime[0] = bt.date2num(datetime.combine(dt.date(), self.p.sessionend))
        self.lines.open[0], self.lines.high[0], self.lines.low[0] = values[:3]
        self.lines.close[0], self.lines.volume[0] = values[3:]
        return True


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--bars", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    write_csv(args.path, args.bars, args.seed)


if __name__ == "__main__":
    main()
