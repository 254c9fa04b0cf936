"""Two replay accounts for the example ``vnpy-accounts``: made-up bar files of three
symbols in ``bars/``, and the ``accounts`` setting that defines the accounts.

    python -m qsm_vnpy.examples.paper_accounts [--days 25]

writes ``bars/<symbol>.csv`` for 002050.SZ, 600000.SH and rb2605.SHFE in the working
directory, and ``config/production.json`` holding the two accounts when there is no
such file (otherwise it prints the ``accounts`` setting to add to yours). Accounts
live in the settings, never in the strategy store: a live account's settings hold
its credentials.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from qsm_vnpy.examples.minute_bars import write_csv

#: Symbol -> the seed of its made-up bars.
SYMBOLS = {"002050.SZ": 3, "600000.SH": 5, "rb2605.SHFE": 11}
#: Two paper accounts replaying the same folder: one names the folder, the other a pattern.
ACCOUNTS = {
    "paper-a": {"engine": "vnpy", "gateway": "REPLAY", "setting": {"csv": "bars"}},
    "paper-b": {"engine": "vnpy", "gateway": "REPLAY", "setting": {"csv": "bars/{symbol}.csv"}},
}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=25)
    args = parser.parse_args(argv)
    if args.days < 11:
        parser.error(f"--days must be at least 11 (ten days of history, then the replay), got {args.days}")
    for symbol, seed in SYMBOLS.items():
        write_csv(Path("bars") / f"{symbol}.csv", args.days, seed, overnight_gap=0.01)
    print(f"wrote bars/<symbol>.csv for {', '.join(SYMBOLS)}")
    config = Path("config") / "production.json"
    setting = json.dumps({"accounts": ACCOUNTS}, indent=2)
    if config.exists():
        print(f"{config} exists: add the two accounts to it:\n{setting}")
        return
    config.parent.mkdir(exist_ok=True)
    config.write_text(setting + "\n", encoding="utf-8")
    print(f"wrote {config} with the accounts paper-a and paper-b")


if __name__ == "__main__":
    main()
