"""A deterministic, made-up series of 1-minute bars in A-share trading hours
(09:30-11:30 and 13:00-15:00, weekdays): the same seed gives the same bars.
With ``overnight_gap`` each day opens away from the last close (a random move of
that relative size), as markets do after the night.

``python -m qsm_vnpy.examples.minute_bars out.csv --days 25 --seed 1`` writes the
replay gateway's CSV format; prices have two decimals and are written exactly.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time, timedelta
from pathlib import Path

BAR_MINUTES_PER_DAY = 240
Row = tuple[datetime, float, float, float, float, float]


def session_minutes(day: date) -> Iterator[datetime]:
    for first, count in ((time(9, 30), 120), (time(13, 0), 120)):
        begin = datetime.combine(day, first)
        for i in range(count):
            yield begin + timedelta(minutes=i)


def generate(
    days: int,
    seed: int = 7,
    first_day: date = date(2026, 9, 1),
    price: float = 20.0,
    overnight_gap: float = 0.0,
) -> Iterator[Row]:
    """``days`` weekdays of bars: naive times, in the exchange's local time."""
    rng = random.Random(seed)
    gaps = random.Random(seed + 1)  # its own stream: without gaps the bars stay as they were
    day, done = first_day, 0
    while done < days:
        if day.weekday() < 5:
            if done and overnight_gap:
                price = round(max(1.0, price * (1.0 + gaps.gauss(0.0, overnight_gap))), 2)
            for moment in session_minutes(day):
                close = round(max(1.0, price * (1.0 + rng.gauss(0.0, 0.0015))), 2)
                high = round(max(price, close) * (1.0 + abs(rng.gauss(0.0, 0.0006))), 2)
                low = round(min(price, close) * (1.0 - abs(rng.gauss(0.0, 0.0006))), 2)
                yield moment, price, high, low, close, float(rng.randint(100, 5000) * 100)
                price = close
            done += 1
        day += timedelta(days=1)


def write_csv(path: str | Path, days: int, seed: int = 7, overnight_gap: float = 0.0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = generate(days, seed, overnight_gap=overnight_gap)
    lines = ["datetime,open,high,low,close,volume"]
    lines += [f"{t.isoformat()},{o!r},{h!r},{lo!r},{c!r},{v!r}" for t, o, h, lo, c, v in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--days", type=int, default=25)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--overnight-gap", type=float, default=0.0, help="relative size of the opening moves")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days must be at least 1, got {args.days}")
    try:
        written = write_csv(args.path, args.days, args.seed, args.overnight_gap)
    except OSError as exc:
        parser.exit(2, f"error: {args.path}: cannot write: {exc.strerror or exc}\n")
    print(f"wrote {args.days * BAR_MINUTES_PER_DAY} bars to {written}")


if __name__ == "__main__":
    main()
