"""One CTA strategy inside vnpy's own MainEngine and CtaEngine.

The strategy runs as it does in vnpy's trader: ``add_strategy``, ``init_strategy``
(``on_init``, then the saved variables put back, then the subscription),
``start_strategy``, ``stop_strategy``, in the engines of :mod:`qsm_vnpy.engines`
(no files, fenced orders, the backtester's stop orders on the replay gateway).

Each strategy gets its own event engine, main engine and gateway connection, so
one strategy's gateway or exception never reaches another.

A snapshot holds the strategy's variables (what vnpy saves) and fields
(:mod:`qsm_vnpy.state`), its working orders (:mod:`qsm_vnpy.orders`) and, on the
replay gateway, the replay's state.

The resume check. After a restore, before the strategy trades, its ``pos`` is
compared with the position the gateway reports for the symbol, and the gateway's
open orders for the symbol with those the snapshot knew. On a difference
``on_mismatch`` decides: ``halt`` keeps it stopped (the status shows the facts),
``trust_broker`` takes the gateway's position and adopts its unknown orders,
``trust_snapshot`` keeps the strategy's position and leaves unknown orders alone.
"""

from __future__ import annotations

import copy
import math
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from vnpy.event import Event, EventEngine
from vnpy.trader.constant import Direction
from vnpy.trader.event import EVENT_LOG
from vnpy.trader.object import LogData
from vnpy_ctastrategy.base import EVENT_CTA_LOG
from vnpy_ctastrategy.template import CtaTemplate

from qsm_vnpy import events, orders
from qsm_vnpy.engines import MemoryCtaEngine, QsmMainEngine
from qsm_vnpy.replay import ReplayGateway
from qsm_vnpy.settings import AdapterSettings, replay_settings
from qsm_vnpy.state import fields_of, plain_variable, validate_fields, variables_of
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import EngineError, EngineHalted, SnapshotError

#: 2 added the working orders; a snapshot of format 1 has none.
SNAPSHOT_FORMAT = 2


class CtaRunner:
    def __init__(
        self,
        context: EngineContext,
        settings: AdapterSettings,
        strategy_class: type[CtaTemplate],
        params: dict[str, Any],
        vt_symbol: str,
        gateway_class: Any,
        gateway_setting: dict[str, Any],
    ) -> None:
        self.context = context
        self.sid = context.strategy_id
        self.settings = settings
        self.strategy_class = strategy_class
        self.class_name = strategy_class.__name__
        self.params = params
        self.vt_symbol = vt_symbol
        self.gateway_class = gateway_class
        self.gateway_name = settings.gateway.name
        self.gateway_setting = gateway_setting
        self.replay = (
            replay_settings(gateway_setting, self.sid) if issubclass(gateway_class, ReplayGateway) else None
        )
        self.main: QsmMainEngine | None = None
        self.cta: MemoryCtaEngine | None = None
        self.gateway: Any = None
        self._restored: dict[str, Any] | None = None
        self._final: dict[str, Any] | None = None
        self._init_failure: BaseException | None = None
        self._started = False

    # -- hooks -------------------------------------------------------------------------
    def restore(self, snapshot: dict[str, Any]) -> None:
        if self.main is not None:
            raise EngineError(f"{self.sid}: restore called on a started engine")
        validate_snapshot(snapshot, self.sid, self.class_name, replay=self.replay is not None)
        validate_fields(snapshot.get("fields", {}), self.strategy_class, self.sid)
        self._restored = copy.deepcopy(snapshot)

    def start(self) -> None:
        if self.main is not None:
            raise EngineError(f"{self.sid}: engine already started")
        restored = self._restored
        event_engine = EventEngine(1)
        events.install(event_engine)
        event_engine.register(EVENT_LOG, self._log)
        event_engine.register(EVENT_CTA_LOG, self._log)
        self.main = main = QsmMainEngine(event_engine)
        gateway: Any = main.add_gateway(self.gateway_class, self.gateway_name)
        self.gateway = gateway
        self.cta = cta = main.add_engine(MemoryCtaEngine)
        cta.context = self.context
        cta.on_raise = self.strategy_raised
        cta.restored_fields = {self.sid: dict(restored.get("fields", {}))} if restored else {}
        if self.replay is not None:
            gateway.load(self.replay, self.vt_symbol, restored and restored["gateway"], self.sid)
            gateway.capture = self._capture
            gateway.stop_event = self.context.stop_event
            gateway.fence = self.context.lease_valid
            gateway.cross_stops = cta.cross_stop_orders
            cta.replay = gateway
        cta.init_engine()
        cta.classes[self.class_name] = self.strategy_class
        if restored is not None:
            # vnpy puts these back after on_init, as it does from its data file
            cta.strategy_data[self.sid] = dict(restored["variables"])

        main.connect(dict(self.gateway_setting), self.gateway_name)
        self._wait_for_contract()
        cta.add_strategy(self.class_name, self.sid, self.vt_symbol, dict(self.params))
        if self.sid not in cta.strategies:
            raise EngineError(
                f"{self.sid}: vnpy refused the strategy ({self.class_name} on {self.vt_symbol})"
            )
        try:
            cta.init_strategy(self.sid).result(self.settings.init_timeout)
        except FutureTimeout:
            raise EngineError(
                f"{self.sid}: on_init did not finish within {self.settings.init_timeout}s"
            ) from None
        if self._init_failure is not None:
            raise EngineError(f"{self.sid}: on_init raised {_one_line(self._init_failure)}")
        strategy = cta.strategies[self.sid]
        if restored is not None:
            self._resume_check(strategy, restored)
        if self.replay is not None:
            gateway.warm_up()
        cta.start_strategy(self.sid)
        if not strategy.trading:
            raise EngineError(f"{self.sid}: on_start raised; see the log")
        self._started = True
        if self.replay is not None:
            self.context.spawn(gateway.run, name="replay")

    def stop(self) -> None:
        main, cta = self.main, self.cta
        if main is None:
            return
        if isinstance(self.gateway, ReplayGateway):
            self.gateway.stop_replay()  # it takes the final snapshot at the next bar boundary
            for thread in self.context.threads:
                thread.join(5.0)
        elif self._started and self._final is None:
            self._final = self._safe(self._capture_on_event_thread)
        if cta is not None and self.sid in cta.strategies:
            cta.stop_strategy(self.sid)  # on_stop, cancel its orders
        main.close()
        if cta is not None:
            cta.init_executor.shutdown(wait=True)

    def snapshot(self, timeout: float) -> dict[str, Any] | None:
        if self._final is not None:
            return copy.deepcopy(self._final)
        if not self._started:
            return copy.deepcopy(self._restored)
        if isinstance(self.gateway, ReplayGateway):
            result = self.gateway.request(self._capture, timeout)
            return result if isinstance(result, dict) else None
        return self._capture_on_event_thread(timeout)

    # -- inside ------------------------------------------------------------------------
    def _capture_on_event_thread(self, timeout: float = 5.0) -> dict[str, Any]:
        assert self.main is not None
        try:
            result: dict[str, Any] = events.call_on_event_thread(
                self.main.event_engine, self._capture, timeout
            )
        except (TimeoutError, events.EngineGone) as exc:
            raise SnapshotError(f"{self.sid}: snapshot not taken: {exc}") from None
        return result

    def _safe(self, fn: Any) -> Any:
        try:
            return fn()
        except SnapshotError as exc:
            self.context.logger.error("%s", exc)
            return None

    def _capture(self) -> dict[str, Any]:
        """The snapshot, at a safe point (a replay boundary or on the event thread)."""
        assert self.cta is not None
        strategy = self.cta.strategies[self.sid]
        variables = {name: plain_variable(self.sid, name, v) for name, v in variables_of(strategy).items()}
        assert self.main is not None
        return {
            "format": SNAPSHOT_FORMAT,
            "class": self.class_name,
            "vt_symbol": self.vt_symbol,
            "variables": variables,
            "fields": fields_of(strategy),
            **orders.capture(self.cta, self.main, self.sid),
            "gateway": self.gateway.state() if isinstance(self.gateway, ReplayGateway) else None,
        }

    def _wait_for_contract(self) -> None:
        assert self.main is not None
        waited, step = 0.0, 0.05
        while self.main.get_contract(self.vt_symbol) is None:
            if waited >= self.settings.connect_timeout or self.context.stop_event.is_set():
                raise EngineError(
                    f"{self.sid}: gateway {self.gateway_name} reported no contract {self.vt_symbol} "
                    f"within {self.settings.connect_timeout}s"
                )
            self.context.stop_event.wait(step)
            waited += step

    def _resume_check(self, strategy: CtaTemplate, restored: dict[str, Any]) -> None:
        """Compare the restored position and working orders with the gateway's, apply
        ``on_mismatch``, then put the working orders back."""
        assert self.main is not None
        if self.replay is None:
            self.context.stop_event.wait(self.settings.position_wait)
        events.barrier(self.main.event_engine)
        facts = []
        broker = self.broker_position()
        ours = float(strategy.pos)
        if not math.isclose(broker, ours, abs_tol=1e-9):
            facts.append(
                f"position mismatch on {self.vt_symbol}: the snapshot has pos {ours:g}, "
                f"gateway {self.gateway_name} reports {broker:g}"
            )
        known, unknown, gone = orders.compare(self.main, self.vt_symbol, restored)
        if restored["format"] == 1 and unknown:  # written before orders were saved: it knows none
            self.context.logger.info(
                "the snapshot predates saved orders; %d open order(s) at gateway %s are not checked",
                len(unknown),
                self.gateway_name,
            )
            unknown = []
        if unknown:
            listed = ", ".join(orders.describe(order) for order in unknown)
            facts.append(
                f"gateway {self.gateway_name} has open order(s) on {self.vt_symbol} "
                f"the snapshot does not know: {listed}"
            )
        if gone:
            self.context.logger.info(
                "order(s) %s of the snapshot no longer open at gateway %s (filled or cancelled meanwhile)",
                ", ".join(gone),
                self.gateway_name,
            )
        policy = self.settings.on_mismatch
        if facts and policy == "halt":
            raise EngineHalted(
                f"{self.sid}: {'; '.join(facts)}; on_mismatch 'halt' keeps it stopped "
                "(set params.vnpy.on_mismatch to 'trust_broker' or 'trust_snapshot' to resume)"
            )
        if facts and policy == "trust_broker":
            strategy.pos = broker
            known += [order.vt_orderid for order in unknown]
            self.context.logger.warning(
                "%s; trusting the broker: pos set to %g, its open orders are the strategy's",
                "; ".join(facts),
                broker,
            )
        elif facts:
            self.context.logger.warning(
                "%s; trusting the snapshot: pos stays %g, unknown orders are left alone",
                "; ".join(facts),
                ours,
            )
        assert self.cta is not None
        cta = self.cta

        def put_back() -> None:
            orders.put_back_stops(cta, strategy, restored)
            orders.attach(cta, strategy, known)

        events.call_on_event_thread(self.main.event_engine, put_back)

    def broker_position(self) -> float:
        """The gateway's net position in the symbol (long minus short)."""
        assert self.main is not None
        total = 0.0
        for position in self.main.get_all_positions():
            if position.vt_symbol != self.vt_symbol:
                continue
            sign = -1.0 if position.direction == Direction.SHORT else 1.0
            total += sign * position.volume
        return total

    def strategy_raised(self, callback: str, exc: BaseException) -> None:
        """vnpy caught an exception of the strategy and stopped it; so do we."""
        if not self._started:
            self._init_failure = exc
            return
        self.context.logger.error("%s raised %s; vnpy stopped the strategy", callback, _one_line(exc))
        self.context.on_crash(EngineError(f"{self.sid}: {callback} raised {_one_line(exc)}"))

    def _log(self, event: Event) -> None:
        log: LogData = event.data
        self.context.logger.log(log.level if isinstance(log.level, int) else 20, "%s", log.msg)


def validate_snapshot(snapshot: Any, sid: str, class_name: str, replay: bool) -> None:
    """Refuse a snapshot of the wrong shape, naming the key."""
    from qsm_vnpy.replay import validate_state

    if not isinstance(snapshot, dict):
        raise SnapshotError(f"{sid}: snapshot must be an object")
    if snapshot.get("format") not in (1, SNAPSHOT_FORMAT):
        raise SnapshotError(
            f"{sid}: snapshot key 'format' is {snapshot.get('format')!r}, expected 1 or {SNAPSHOT_FORMAT}"
        )
    if snapshot.get("class") != class_name:
        raise SnapshotError(
            f"{sid}: snapshot key 'class' is {snapshot.get('class')!r}, but the strategy is {class_name}"
        )
    variables = snapshot.get("variables")
    if not isinstance(variables, dict):
        raise SnapshotError(f"{sid}: snapshot key 'variables' is missing or not an object")
    pos = variables.get("pos")
    if not isinstance(pos, int | float) or isinstance(pos, bool):
        raise SnapshotError(f"{sid}: snapshot key 'variables.pos' is missing or not a number")
    orders.validate(snapshot, sid)
    if replay:
        validate_state(snapshot.get("gateway"), sid)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")
