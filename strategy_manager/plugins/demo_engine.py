"""Engine ``demo``: a moving-average crossover over a generated price series.

It needs no trading library, so the quick start runs on a fresh machine. Prices are
a random walk seeded by the symbol, so every run of one symbol sees the same bars;
one bar passes every ``bar_seconds`` of clock time (a simulated clock speeds it up).
The bars of every demo strategy of a process come from one thread per clock (a
:class:`BarClock`), so ten thousand demo strategies cost one thread, not ten thousand.
Its state (bar index, cash, position, trades) is snapshotted and restored, so a
restarted demo strategy continues where it stopped. An edit of its params alone
applies to the running engine from the next bar, without a restart.

Params: ``fast`` (5), ``slow`` (20), ``bar_seconds`` (60), ``cash`` (100000),
``lot`` (100), ``bars`` (unset: run until stopped; a number: finish after it).

Each trade is a simulated order: it is sent only while ``context.lease_valid()``
holds (a fenced-off engine keeps its position and trades nothing), and with the
engine option ``order_log`` (``engine_options.demo.order_log: true``) it is appended
to ``orders.jsonl`` in the strategy's private folder with the time, process (pid and
a random name), lease epoch and bar, the engine-side record the reliability tests read.
"""

from __future__ import annotations

import heapq
import itertools
import json
import os
import random
import secrets
import threading
import zlib
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from strategy_manager import __version__
from strategy_manager.core.clock import Clock
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import InvalidStrategy, SnapshotError
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.validation import check_params

DEFAULTS: dict[str, Any] = {
    "fast": 5,
    "slow": 20,
    "bar_seconds": 60.0,
    "cash": 100_000.0,
    "lot": 100,
    "bars": None,
}
_STATE_KEYS = ("bar", "cash", "position", "trades", "window")
#: Names this process in the order log (pids repeat across PID namespaces).
_PROCESS = secrets.token_hex(4)


def first_price(symbol: str) -> float:
    return float(10 + zlib.crc32(symbol.encode()) % 90)


def next_price(symbol: str, bar: int, previous: float) -> float:
    """The price of bar ``bar``: a random walk step seeded by symbol and bar number."""
    rng = random.Random(zlib.crc32(f"{symbol}:{bar}".encode()))
    return round(previous * (1.0 + rng.gauss(0.0, 0.01)), 4)


def check(sid: str, params: dict[str, Any]) -> dict[str, Any]:
    """The params over the defaults, or InvalidStrategy naming the first bad one."""
    check_params(sid, "params for demo", params, DEFAULTS)
    p = {**DEFAULTS, **params}
    if not 0 < p["fast"] < p["slow"]:
        raise InvalidStrategy(f"{sid}: params for demo: need 0 < fast < slow, got {p['fast']}, {p['slow']}")
    for name, least in (("bar_seconds", 0), ("cash", 0), ("lot", 1)):
        if p[name] < least:
            raise InvalidStrategy(f"{sid}: params for demo: '{name}' must be at least {least}, got {p[name]}")
    bars = p["bars"]
    if bars is not None and (not isinstance(bars, int) or isinstance(bars, bool) or bars < 0):
        raise InvalidStrategy(f"{sid}: params for demo: 'bars' must be a whole number or null, got {bars!r}")
    return p


class DemoEngine:
    def __init__(
        self, symbol: str, params: dict[str, Any], sid: str = "demo", context: EngineContext | None = None
    ) -> None:
        p = check(sid, params)
        self.symbol = symbol
        self.fast, self.slow, self.lot = p["fast"], p["slow"], p["lot"]
        self.bar_seconds, self.bars = float(p["bar_seconds"]), p["bars"]
        #: ``window`` holds the last ``slow`` prices, so a restore resumes exactly.
        self.state: dict[str, Any] = {
            "bar": 0,
            "cash": float(p["cash"]),
            "position": 0,
            "trades": 0,
            "window": [],
        }
        self._lock = threading.Lock()
        self.context = context
        self._orders: Path | None = None
        if context is not None and context.options.get("order_log"):
            self._orders = context.private_dir() / "orders.jsonl"

    def _send(self, side: str, price: float) -> bool:
        """The simulated order: refused when the fence is down, logged when asked."""
        context = self.context
        if context is None:
            return True
        if not context.lease_valid():
            return False
        if self._orders is not None:
            record = {
                "t": context.clock.now().timestamp(),
                "pid": os.getpid(),
                "process": _PROCESS,
                "epoch": context.lease_epoch,
                "bar": self.state["bar"],
                "side": side,
                "price": price,
            }
            with self._orders.open("a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        return True

    def update(self, params: dict[str, Any]) -> None:
        """Take checked params (:func:`check`) between two bars. ``cash`` only seeds a
        fresh engine: the cash it holds now stays, as a restart from its snapshot keeps it."""
        with self._lock:
            self.fast, self.slow, self.lot = params["fast"], params["slow"], params["lot"]
            self.bar_seconds, self.bars = float(params["bar_seconds"]), params["bars"]

    def restore(self, snapshot: dict[str, Any]) -> None:
        missing = [k for k in _STATE_KEYS if k not in snapshot]
        if missing:
            raise SnapshotError(f"demo engine: snapshot lacks {missing}")
        self.state = {k: snapshot[k] for k in _STATE_KEYS}

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.state, "window": list(self.state["window"])}

    @property
    def done(self) -> bool:
        """True once the engine has run its ``bars`` (never, without ``bars``)."""
        return self.bars is not None and self.state["bar"] >= self.bars

    def step(self, stop: threading.Event | None = None) -> None:
        """Process one bar: update the averages and cross into or out of the market.
        Nothing happens once ``stop`` is set: a snapshot taken after the stop is the
        state the engine stopped in."""
        with self._lock:
            if stop is not None and stop.is_set():
                return
            state = self.state
            window = state["window"]
            previous = window[-1] if window else first_price(self.symbol)
            price = next_price(self.symbol, state["bar"], previous)
            window = state["window"] = [*window[-(self.slow - 1) :], price]
            if len(window) == self.slow:
                fast = sum(window[-self.fast :]) / self.fast
                slow = sum(window) / self.slow
                if fast > slow and state["position"] == 0 and self._send("buy", price):
                    state["position"] = self.lot
                    state["cash"] = round(state["cash"] - self.lot * price, 4)
                    state["trades"] += 1
                elif fast < slow and state["position"] > 0 and self._send("sell", price):
                    state["cash"] = round(state["cash"] + state["position"] * price, 4)
                    state["position"] = 0
                    state["trades"] += 1
            state["bar"] += 1


class BarClock:
    """Steps the demo engines of one clock on one thread, each when its bar is due.

    An engine is stepped at once when added, then every ``bar_seconds`` of clock time
    until its context's stop event is set (it is dropped then) or it has run its
    ``bars`` (its context is told it finished). An engine whose step raises is
    reported as crashed and dropped; the others go on. The thread ends once it has
    had nothing to do for a while, and a new one starts with the next engine.
    """

    #: Real seconds an idle bar clock waits for work before its thread ends.
    IDLE_SECONDS = 1.0
    _registry: dict[int, BarClock] = {}
    _registry_lock = threading.Lock()

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._heap: list[tuple[datetime, int, DemoEngine, EngineContext]] = []
        self._serial = itertools.count()
        self._thread: threading.Thread | None = None
        self._retired = False

    @classmethod
    def add(cls, engine: DemoEngine, context: EngineContext) -> None:
        """Step ``engine`` on the bar clock of ``context.clock``, from now on."""
        with cls._registry_lock:
            bars = cls._registry.get(id(context.clock))
            if bars is None or bars.clock is not context.clock:
                bars = cls._registry[id(context.clock)] = cls(context.clock)
            bars._schedule(engine, context, context.clock.now())

    def _schedule(self, engine: DemoEngine, context: EngineContext, due: datetime) -> None:
        with self._cond:
            heapq.heappush(self._heap, (due, next(self._serial), engine, context))
            self._wake.set()
            self._cond.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="qsm-demo-bars", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self._heap:
                    self._cond.wait(self.IDLE_SECONDS)
                    idle = not self._heap
                else:
                    idle = False
                    self._wake.clear()  # an engine added from now on wakes the wait below
                    due = self._heap[0][0]
            if idle:
                if self._retire():
                    return
                continue
            now = self.clock.now()
            if due > now:
                self.clock.wait(self._wake, (due - now).total_seconds())
                continue
            with self._cond:  # the earliest entry, which an add may have changed meanwhile
                _due, _serial, engine, context = heapq.heappop(self._heap)
            self._bar(engine, context)

    def _retire(self) -> bool:
        """Leave the registry if still idle (locks taken in the order ``add`` takes them)."""
        with BarClock._registry_lock, self._cond:
            if self._heap:
                return False
            if BarClock._registry.get(id(self.clock)) is self:
                del BarClock._registry[id(self.clock)]
            self._thread = None
            return True

    def _bar(self, engine: DemoEngine, context: EngineContext) -> None:
        stop = context.stop_event
        if stop.is_set():
            return
        if engine.done:
            context.on_finish()
            return
        try:
            engine.step(stop)
        except Exception as exc:
            if not stop.is_set():
                context.logger.exception("bar %s failed", engine.state.get("bar"))
                context.on_crash(exc)
            return
        self._schedule(engine, context, self.clock.now() + timedelta(seconds=engine.bar_seconds))


@hookimpl
def qsm_engine_info() -> dict[str, Any]:
    return {
        "name": "demo",
        "version": __version__,
        "capabilities": ["snapshot", "restore"],
        "description": "moving-average crossover on generated prices, for trying things out",
    }


@hookimpl
def qsm_validate_engine(spec: StrategySpec, context: EngineContext) -> None:
    check(spec.id, dict(spec.params))


@hookimpl
def qsm_create_engine(spec: StrategySpec, context: EngineContext) -> DemoEngine:
    return DemoEngine(spec.symbol, dict(spec.params), spec.id, context)


@hookimpl
def qsm_restore_engine(engine: DemoEngine, snapshot: dict[str, Any], context: EngineContext) -> None:
    engine.restore(snapshot)


@hookimpl
def qsm_start_engine(engine: DemoEngine, context: EngineContext) -> None:
    BarClock.add(engine, context)


@hookimpl
def qsm_stop_engine(engine: DemoEngine, context: EngineContext) -> None:
    """The bar clock drops the engine once ``context.stop_event`` is set (the core
    sets it before this hook), and steps it no more."""


@hookimpl
def qsm_update_params(engine: DemoEngine, spec: StrategySpec, context: EngineContext) -> bool:
    """Every demo param applies in place, from the next bar on."""
    engine.update(check(spec.id, dict(spec.params)))
    return True


@hookimpl
def qsm_snapshot_engine(engine: DemoEngine, context: EngineContext) -> dict[str, Any]:
    return engine.snapshot()


@hookimpl
def qsm_snapshot_positions(snapshot: dict[str, Any], spec: StrategySpec) -> dict[str, float] | None:
    position = snapshot.get("position")
    return {spec.symbol: float(position)} if isinstance(position, int | float) else None
