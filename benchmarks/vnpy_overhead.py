"""Ticks per second through the vnpy adapter against vnpy's own engines alone.

Both sides run ``DoubleMaStrategy`` in a ``CtaEngine`` on the same generated
1-minute bars, each played as the same four ticks:

* **vnpy alone**: vnpy's stock ``MainEngine`` and ``CtaEngine`` with a minimal
  gateway that serves the contract, takes orders and cancels them, and never
  fills. A bar's ticks are put on the event queue, then the feed waits until
  they have been handled (a feed that outruns the engine makes vnpy's own
  cancels miss orders it has not seen yet, and costs it far more).
* **adapter**: the plugin's hooks (create, start, wait for the replay thread) with
  the ``REPLAY`` gateway, which builds each bar's ticks as it plays it, then waits
  while vnpy's event thread handles them and crosses the working orders against
  the bar (limit orders, then stop orders, behind the ticks: one wait a bar), and
  stops at every bar boundary for snapshot and stop requests.

Runs alternate so that machine noise hits both alike; medians and their ratio are
printed. Target: the adapter keeps at least 90% of vnpy's ticks per second.

    python benchmarks/vnpy_overhead.py [--bars 20000] [--repeat 5]

Before and after a change, side by side: ``--before DIR`` names another version's
``qsm_vnpy/src`` (``git archive <commit> qsm_vnpy/src | tar -x -C /tmp/before``);
then every run is a fresh process, vnpy alone, the adapter of ``DIR`` and this
tree's adapter taking turns, and both ratios are printed.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from qsm_vnpy import home

DOUBLE_MA = "vnpy_ctastrategy.strategies.double_ma_strategy.DoubleMaStrategy"
PARAMS = {"fast_window": 10, "slow_window": 20}
TARGET = 0.9


def plain(csv: Path, bars: int) -> float:
    """vnpy by itself; returns seconds to process every tick."""
    from vnpy.event import Event, EventEngine
    from vnpy.trader.constant import Exchange, Product, Status
    from vnpy.trader.engine import MainEngine
    from vnpy.trader.gateway import BaseGateway
    from vnpy.trader.object import ContractData, OrderRequest
    from vnpy_ctastrategy.engine import CtaEngine
    from vnpy_ctastrategy.strategies.double_ma_strategy import DoubleMaStrategy

    from qsm_vnpy.bars import read_bars
    from qsm_vnpy.replay import ReplayGateway, ReplayStream
    from qsm_vnpy.settings import StreamSettings

    # only to build the same ticks as the replay does
    rows = read_bars(csv, "Asia/Shanghai")
    source = ReplayStream(
        ReplayGateway(EventEngine(), "SOURCE"), "bench", "002050.SZSE", rows, StreamSettings(), ""
    )
    ticks = [tick for bar in source.bars[:bars] for tick in source._ticks(bar)]

    class Minimal(BaseGateway):
        default_name = "MINIMAL"
        exchanges = [Exchange.SZSE]
        count = 0
        orders: dict[str, Any] = {}

        def connect(self, setting: dict[str, Any]) -> None:
            self.on_contract(
                ContractData(
                    symbol="002050",
                    exchange=Exchange.SZSE,
                    name="002050",
                    product=Product.EQUITY,
                    size=1,
                    pricetick=0.01,
                    net_position=True,
                    history_data=True,
                    gateway_name=self.gateway_name,
                )
            )

        def send_order(self, req: OrderRequest) -> str:
            self.count += 1
            order = req.create_order_data(str(self.count), self.gateway_name)
            self.orders[order.orderid] = order
            self.on_order(copy.copy(order))
            return order.vt_orderid

        def cancel_order(self, req: Any) -> None:
            order = self.orders.pop(req.orderid, None)
            if order is not None:
                order.status = Status.CANCELLED
                self.on_order(order)

        def query_history(self, req: Any) -> list[Any]:
            return []

        def close(self) -> None: ...
        def subscribe(self, req: Any) -> None: ...
        def query_account(self) -> None: ...
        def query_position(self) -> None: ...

    event_engine = EventEngine()
    main = MainEngine(event_engine)
    gateway = main.add_gateway(Minimal)
    cta = main.add_engine(CtaEngine)
    cta.register_event()
    cta.classes["DoubleMaStrategy"] = DoubleMaStrategy
    main.connect({}, "MINIMAL")
    while main.get_contract("002050.SZSE") is None:
        time.sleep(0.01)
    cta.add_strategy("DoubleMaStrategy", "bench", "002050.SZSE", dict(PARAMS))
    cta.init_strategy("bench").result()
    cta.start_strategy("bench")
    drained = threading.Event()
    event_engine.register("eBenchDrained", lambda event: drained.set())
    started = time.perf_counter()
    for index in range(0, len(ticks), 4):  # a feed that never outruns the engine: a bar, then wait
        for tick in ticks[index : index + 4]:
            gateway.on_tick(tick)
        drained.clear()
        event_engine.put(Event("eBenchDrained"))
        drained.wait()
    elapsed = time.perf_counter() - started
    cta.stop_strategy("bench")
    main.close()
    cta.init_executor.shutdown()
    return elapsed


def adapter(csv: Path, workdir: Path, bars: int) -> float:
    from qsm_vnpy import plugin
    from strategy_manager.core.classloader import ClassLoader
    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import parse_strategy

    spec = parse_strategy(
        {
            "user_id": "bench",
            "symbol": "002050.SZ",
            "strategy_key": "dma",
            "engine": "vnpy",
            "engine_class": DOUBLE_MA,
            "params": {**PARAMS, "vnpy": {"gateway": {"name": "REPLAY", "setting": {"csv": str(csv)}}}},
        }
    )
    context = EngineContext(
        spec=spec, data_dir=workdir / "dma", classes=ClassLoader((), ())
    )
    engine = plugin.qsm_create_engine(spec=spec, context=context)
    plugin.qsm_start_engine(engine=engine, context=context)
    started = time.perf_counter()
    if context.join_threads(600):
        raise SystemExit("adapter run did not finish")
    elapsed = time.perf_counter() - started
    assert engine.stream.cursor == bars
    context.stop_event.set()
    plugin.qsm_stop_engine(engine=engine, context=context)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--before", help="another version's qsm_vnpy/src, to compare side by side")
    parser.add_argument("--one", choices=["plain", "adapter"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.one, Path(args.root), args.bars)
        return
    from importlib.metadata import version

    from qsm_vnpy.examples.minute_bars import BAR_MINUTES_PER_DAY, write_csv

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        days = -(-args.bars // BAR_MINUTES_PER_DAY)
        csv = write_csv(root / "bench.csv", days, seed=1)
        bars = days * BAR_MINUTES_PER_DAY
        if args.before:
            times = side_by_side(root, bars, args.repeat, args.before)
        else:
            home.prepare(root / "engines")
            plain(csv, bars), adapter(csv, root, bars)  # warm caches and imports
            times = {"vnpy alone": [], "adapter": []}
            for _ in range(args.repeat):
                times["vnpy alone"].append(plain(csv, bars))
                times["adapter"].append(adapter(csv, root, bars))
    ticks = 4 * bars
    print(f"vnpy {version('vnpy')}, DoubleMaStrategy, {bars} bars = {ticks} ticks, {args.repeat} runs each")
    rates = {name: ticks / statistics.median(runs) for name, runs in times.items()}
    for name, runs in times.items():
        print(f"{name:20s}: {rates[name]:10.0f} ticks/s (median {statistics.median(runs):.3f} s)")
    for name in rates:
        if name != "vnpy alone":
            label = f"ratio, {name}"
            print(f"{label:20s}: {rates[name] / rates['vnpy alone']:10.1%} (target >= {TARGET:.0%})")


def side_by_side(root: Path, bars: int, repeat: int, before: str) -> dict[str, list[float]]:
    """Each run in a fresh process (after one warm-up run in it), the three taking turns."""
    sides = {
        "vnpy alone": ("plain", None),
        "adapter before": ("adapter", before),
        "adapter": ("adapter", None),
    }
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(repeat):
        for name, (kind, source) in sides.items():
            env = {**os.environ, "PYTHONPATH": source} if source else dict(os.environ)
            command = [sys.executable, __file__, "--one", kind, "--root", str(root), "--bars", str(bars)]
            out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
            times[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return times


def one_run(kind: str, root: Path, bars: int) -> None:
    """One warm-up run and one timed run in this process; prints the seconds."""
    home.prepare(root / "engines")
    csv = root / "bench.csv"
    run = (lambda: plain(csv, bars)) if kind == "plain" else (lambda: adapter(csv, root / "runs", bars))
    run()
    print(json.dumps(run()))


if __name__ == "__main__":
    main()
