"""Bars per second through the backtrader adapter against plain cerebro, same data.

Both sides build the same Cerebro (CSV feed with the same reader settings, the
same strategy, sizer and commission) and run it to the end; the adapter side goes
through the plugin's hooks (create, start, wait for the cerebro thread). Runs
alternate so that machine noise hits both alike; the medians and their ratio are
printed. Target: the adapter keeps at least 95% of plain cerebro's bars per second.

    python benchmarks/backtrader_overhead.py [--bars 20000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import backtrader as bt

from qsm_backtrader import plugin
from qsm_backtrader.examples.prices import write_csv
from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import EngineContext
from strategy_manager.core.spec import parse_strategy

PARAMS = {"fast": 10, "slow": 30}
STAKE = 10
COMMISSION = 0.001


def plain(csv: Path) -> float:
    started = time.perf_counter()
    cerebro = bt.Cerebro()
    feed = bt.feeds.GenericCSVData(
        dataname=str(csv),
        dtformat=datetime.fromisoformat,
        datetime=0,
        time=-1,
        open=1,
        high=2,
        low=3,
        close=4,
        volume=5,
        openinterest=-1,
    )
    cerebro.adddata(feed, name="BENCH")
    cerebro.addstrategy(bt.strategies.SMA_CrossOver, **PARAMS)
    cerebro.addsizer(bt.sizers.FixedSize, stake=STAKE)
    cerebro.broker.setcommission(commission=COMMISSION)
    cerebro.run()
    return time.perf_counter() - started


def adapter(csv: Path, workdir: Path) -> float:
    spec = parse_strategy(
        {
            "user_id": "bench",
            "symbol": "BENCH",
            "strategy_key": "sma",
            "engine": "backtrader",
            "engine_class": "backtrader.strategies.SMA_CrossOver",
            "params": {
                **PARAMS,
                "backtrader": {
                    "feed": {"csv": str(csv)},
                    "commission": {"commission": COMMISSION},
                    "sizer": {"factory": "backtrader.sizers:FixedSize", "kwargs": {"stake": STAKE}},
                },
            },
        }
    )
    context = EngineContext(spec=spec, data_dir=workdir, classes=ClassLoader((), ()))
    started = time.perf_counter()
    engine = plugin.qsm_create_engine(spec=spec, context=context)
    plugin.qsm_start_engine(engine=engine, context=context)
    if context.join_threads(600):
        raise SystemExit("adapter run did not finish")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        csv = write_csv(Path(tmp) / "bench.csv", args.bars, seed=1)
        plain(csv), adapter(csv, Path(tmp))  # warm caches and imports
        plain_times, adapter_times = [], []
        for _ in range(args.repeat):
            plain_times.append(plain(csv))
            adapter_times.append(adapter(csv, Path(tmp)))
    plain_bps = args.bars / statistics.median(plain_times)
    adapter_bps = args.bars / statistics.median(adapter_times)
    print(f"backtrader {bt.__version__}, SMA_CrossOver, {args.bars} bars, {args.repeat} runs each")
    print(f"plain cerebro : {plain_bps:10.0f} bars/s (median {statistics.median(plain_times):.3f} s)")
    print(f"adapter       : {adapter_bps:10.0f} bars/s (median {statistics.median(adapter_times):.3f} s)")
    print(f"ratio         : {adapter_bps / plain_bps:10.1%} (target >= 95%)")


if __name__ == "__main__":
    main()
