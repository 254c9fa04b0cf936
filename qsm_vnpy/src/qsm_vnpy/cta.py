"""One CTA strategy inside its account's vnpy engines.

The strategy runs as it does in vnpy's trader: ``add_strategy``, ``init_strategy``
(``on_init``, then the saved variables put back, then the subscription),
``start_strategy``, ``stop_strategy``, in the engines of its account's session
(:mod:`qsm_vnpy.session`: one ``MainEngine``, ``CtaEngine`` and gateway connection
for every strategy of the account; no files, a fence per strategy, the backtester's
stop orders on the replay gateway). A strategy without a session opens a private
one and closes it on stop. The engine's dictionaries are changed on vnpy's event
thread only, between two events.

A snapshot holds the strategy's variables (what vnpy saves) and fields
(:mod:`qsm_vnpy.state`), its working orders (:mod:`qsm_vnpy.orders`) and, on the
replay gateway, its replay's state. After a restore, before the strategy trades,
the resume check compares positions and open orders with the broker's, per account
and symbol (:mod:`qsm_vnpy.resume`). Changed strategy parameters reach a running
strategy through ``edit_strategy`` (``qsm_update_params``).
"""

from __future__ import annotations

import copy
import threading
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any

from vnpy.trader.object import TickData
from vnpy_ctastrategy.template import CtaTemplate

from qsm_vnpy import events, orders, resume
from qsm_vnpy.replay import ReplayGateway, ReplayStream
from qsm_vnpy.session import Departure, VnpySession
from qsm_vnpy.state import fields_of, plain_variable, validate_fields, variables_of
from strategy_manager.core.context import EngineContext
from strategy_manager.core.errors import EngineError, EngineHalted, SnapshotError

if TYPE_CHECKING:
    from qsm_vnpy.plugin import CtaPlan

#: 2 added the working orders; a snapshot of format 1 has none.
SNAPSHOT_FORMAT = 2
#: Seconds the engine's event thread has to take a step of a start or a stop.
STEP_SECONDS = 30.0


class CtaRunner:
    def __init__(self, context: EngineContext, plan: CtaPlan, strategy_class: type[CtaTemplate]) -> None:
        self.context = context
        self.sid = context.strategy_id
        self.plan = plan
        self.settings = plan.settings
        self.strategy_class = strategy_class
        self.class_name = strategy_class.__name__
        #: The class's key in the CTA engine: two strategies' classes may share a name.
        self.class_key = f"{strategy_class.__module__}.{strategy_class.__qualname__}"
        self.params = plan.params
        self.vt_symbol = plan.vt_symbol
        self.replay = plan.replay is not None
        self.session: VnpySession | None = None
        self.private = False
        self.stream: ReplayStream | None = None
        self.started = False
        #: Why the resume check of another strategy of the symbol halted this one.
        self._halted: str | None = None
        self._lock = threading.Lock()
        self._restored: dict[str, Any] | None = None
        self._final: dict[str, Any] | None = None
        self._init_failure: BaseException | None = None

    @property
    def restored_pos(self) -> float:
        """The position the strategy started from: its snapshot's, or 0."""
        return float(self._restored["variables"]["pos"]) if self._restored is not None else 0.0

    @property
    def main(self) -> Any:
        return self.session.main if self.session is not None else None

    @property
    def cta(self) -> Any:
        return self.session.cta if self.session is not None else None

    @property
    def gateway(self) -> Any:
        return self.session.gateway if self.session is not None else None

    # -- hooks -------------------------------------------------------------------------
    def restore(self, snapshot: dict[str, Any]) -> None:
        if self.session is not None:
            raise EngineError(f"{self.sid}: restore called on a started engine")
        validate_snapshot(snapshot, self.sid, self.class_name, replay=self.replay)
        validate_fields(snapshot.get("fields", {}), self.strategy_class, self.sid)
        self._restored = copy.deepcopy(snapshot)

    def start(self) -> None:
        if self.session is not None:
            raise EngineError(f"{self.sid}: engine already started")
        session = self.context.session
        if session is None:
            session, self.private = self._private_session(), True
        elif not isinstance(session, VnpySession) or session.closed:
            raise EngineError(f"{self.sid}: the session of its account is not a vnpy session, or closed")
        elif session.gateway_name != self.plan.gateway_name:
            raise EngineError(
                f"{self.sid}: the session of account {session.name} is on gateway {session.gateway_name}, "
                f"the strategy's is {self.plan.gateway_name}"
            )
        self.session = session
        session.attach(self)
        self._start(session, self._restored)

    def _private_session(self) -> VnpySession:
        plan = self.plan
        gateway = plan.gateway
        if gateway is None:
            from qsm_vnpy.gateways import gateway_class

            gateway = gateway_class(plan.gateway_name, None, self.context)
        session = VnpySession(
            f"of {self.sid}",
            gateway,
            plan.gateway_name,
            plan.setting,
            self.context.logger,
            replay=plan.replay,
            shared=False,
            connect_timeout=self.settings.connect_timeout,
        )
        return session.open()

    def _start(self, session: VnpySession, restored: dict[str, Any] | None) -> None:
        cta, sid = session.cta, self.sid
        assert cta is not None
        if self.replay:
            self._attach_replay(session, restored)
        cta.contexts[sid] = self.context
        cta.on_raise[sid] = self.strategy_raised
        cta.classes[self.class_key] = self.strategy_class
        counts = [m.snapshot.get("stop_order_count") for m in self.context.members.values() if m.snapshot]
        cta.stop_order_count = max([cta.stop_order_count, *(c for c in counts if isinstance(c, int))])
        if restored is not None:
            # vnpy puts these back after on_init, as it does from its data file
            cta.strategy_data[sid] = dict(restored["variables"])
            cta.restored_fields[sid] = dict(restored.get("fields", {}))
        self._wait_for_contract()
        session.call(lambda: cta.add_strategy(self.class_key, sid, self.vt_symbol, dict(self.params)))
        if sid not in cta.strategies:
            raise EngineError(f"{sid}: vnpy refused the strategy ({self.class_name} on {self.vt_symbol})")
        try:
            cta.init_strategy(sid).result(self.settings.init_timeout)
        except FutureTimeout:
            raise EngineError(f"{sid}: on_init did not finish within {self.settings.init_timeout}s") from None
        if self._init_failure is not None:
            raise EngineError(f"{sid}: on_init raised {_one_line(self._init_failure)}")
        strategy = cta.strategies[sid]
        if restored is not None or self.vt_symbol in cta.halted:
            attach = resume.check(self, strategy, restored)
            if restored is not None:

                def put_back() -> dict[str, str]:
                    renamed = orders.put_back_stops(cta, strategy, restored)
                    orders.attach(cta, strategy, attach)
                    return renamed

                renamed = session.call(put_back)
                if renamed:  # a strategy that cancels a stop order by its old id misses it
                    self.context.logger.warning(
                        "stop order id(s) of the snapshot taken in the account's engine already; "
                        "the orders were put back as %s",
                        ", ".join(f"{old} -> {new}" for old, new in renamed.items()),
                    )
        if self.stream is not None:
            self.stream.warm_up()
        self._raise_if_halted()
        session.call(lambda: cta.start_strategy(sid))
        if not strategy.trading:
            raise EngineError(f"{sid}: on_start raised; see the log")
        with self._lock:
            self.started = True
        self._raise_if_halted()  # halted while it started: the stop takes it out
        if self.stream is not None:
            self.context.spawn(self.stream.run, name="replay")

    def _attach_replay(self, session: VnpySession, restored: dict[str, Any] | None) -> None:
        """The strategy's replay in the account's replay gateway."""
        gateway, plan, context = session.gateway, self.plan, self.context
        assert isinstance(gateway, ReplayGateway) and plan.stream is not None
        others = {}
        for sid, member in context.members.items():
            snapshot = member.snapshot or {}
            paper = snapshot.get("gateway")
            if sid != self.sid and snapshot.get("vt_symbol") == self.vt_symbol and isinstance(paper, dict):
                position = paper.get("position")
                if isinstance(position, int | float) and not isinstance(position, bool):
                    others[sid] = float(position)
        state = restored["gateway"] if restored is not None else None
        symbol, settings = context.spec.symbol, plan.stream
        stream, renamed = session.call(
            lambda: gateway.add_stream(self.sid, self.vt_symbol, symbol, settings, state, others)
        )
        self.stream = stream
        if renamed and restored is not None:
            for saved in restored.get("orders", []):
                saved["vt_orderid"] = renamed.get(saved["vt_orderid"], saved["vt_orderid"])
        cta = session.cta
        assert cta is not None
        stream.capture = self._capture_on_event_thread
        stream.stop_event = context.stop_event
        stream.fence = context.lease_valid
        stream.logger = context.logger
        stream.cross_stops = lambda bar: cta.cross_stop_orders(bar, self.sid)
        stream.deliver = self._deliver

    def _deliver(self, tick: TickData) -> None:
        """A tick of the strategy's replay, to the strategy alone (on the event thread)."""
        cta = self.cta
        strategy = cta.strategies.get(self.sid) if cta is not None else None
        if strategy is not None and strategy.inited:
            cta.call_strategy_func(strategy, strategy.on_tick, tick)

    def stop(self) -> None:
        session = self.session
        if session is None:
            return
        if self.stream is not None:
            self.stream.stop_replay()  # it takes the final snapshot at the next bar boundary
            for thread in self.context.threads:
                thread.join(5.0)
        elif self.started and self._final is None:
            self._final = self._safe(self._capture_on_event_thread)
        try:
            if not session.closed:
                session.call(self._leave, STEP_SECONDS)
        except (events.EngineGone, TimeoutError) as exc:
            self.context.logger.error("the strategy could not be removed from vnpy's engine: %s", exc)
        finally:
            session.detach(self)
            if self.private:
                session.close()

    def evict(self) -> None:
        """On the event thread: what an abandoned engine left, out of the engines."""
        if self.stream is not None:
            self.stream.stop_replay()
        self._leave(replaced=True)

    def _leave(self, replaced: bool = False) -> None:
        """On the event thread: stop the strategy as vnpy does (on_stop, its orders
        cancelled), and take it out of the engines. ``replaced``: evicted for a new
        engine of the strategy, whose position is not what this one held."""
        cta, sid, session = self.cta, self.sid, self.session
        assert session is not None
        if not replaced and session.runners.get(sid, self) is not self:
            return  # evicted already: the strategy in the engines now is a new engine's
        strategy = cta.strategies.get(sid)
        if strategy is not None:
            if not replaced:
                pos = float(strategy.pos) if strategy.inited else self.restored_pos
                known = set(cta.strategy_orderid_map.get(sid, ()))
                session.departed[sid] = Departure(self.vt_symbol, pos, known)
            cta.stop_strategy(sid)  # on_stop, cancel its orders
            strategy.trading = False
            cta.remove_strategy(sid)
        cta.contexts.pop(sid, None)
        cta.on_raise.pop(sid, None)
        cta.strategy_data.pop(sid, None)
        cta.restored_fields.pop(sid, None)
        if isinstance(self.gateway, ReplayGateway):
            self.gateway.remove_stream(sid)

    def snapshot(self, timeout: float) -> dict[str, Any] | None:
        if self._final is not None:
            return copy.deepcopy(self._final)
        if not self.started:
            return copy.deepcopy(self._restored)
        if self.stream is not None:
            result = self.stream.request(self._capture_on_event_thread, timeout)
            return result if isinstance(result, dict) else None
        return self._capture_on_event_thread(timeout)

    def update_params(self, settings: Any, params: dict[str, Any], timeout: float) -> bool:
        """Give the running strategy new parameters, as vnpy's ``edit_strategy`` does,
        on the event thread. Every class parameter is set: those ``params`` leaves out
        go back to the class's default, as on a fresh start. False (nothing changed)
        when the adapter's own settings changed too: a gateway or symbol needs a restart."""
        session = self.session
        if settings != self.settings or session is None or session.closed or not self.started:
            return False
        cta, sid, cls = session.cta, self.sid, self.strategy_class
        assert cta is not None
        setting = {str(name): getattr(cls, str(name), None) for name in cls.parameters} | params

        def edit() -> bool:
            if sid not in cta.strategies:
                return False
            cta.edit_strategy(sid, setting)
            return True

        if not session.call(edit, timeout):
            return False
        self.params = params
        return True

    def halt(self, reason: str) -> None:
        """The resume check of another strategy of the symbol halted this one too:
        a running one crashes with the reason, a starting one refuses to start."""
        self.context.logger.error("halted: %s", reason)
        with self._lock:
            self._halted = reason
            started = self.started
        if started:
            self.context.on_crash(EngineHalted(f"{self.sid}: {reason}"))

    def _raise_if_halted(self) -> None:
        with self._lock:
            reason = self._halted
        if reason is not None:
            raise EngineHalted(f"{self.sid}: {reason}")

    # -- inside ------------------------------------------------------------------------
    def _capture_on_event_thread(self, timeout: float = 5.0) -> dict[str, Any]:
        session = self.session
        assert session is not None
        try:
            result: dict[str, Any] = session.call(self._capture, timeout)
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
        """The snapshot, on the event thread (between two events)."""
        cta, main = self.cta, self.main
        assert cta is not None and main is not None
        strategy = cta.strategies[self.sid]
        variables = {name: plain_variable(self.sid, name, v) for name, v in variables_of(strategy).items()}
        return {
            "format": SNAPSHOT_FORMAT,
            "class": self.class_name,
            "vt_symbol": self.vt_symbol,
            "variables": variables,
            "fields": fields_of(strategy),
            **orders.capture(cta, main, self.sid),
            "gateway": self.stream.state() if self.stream is not None else None,
        }

    def _wait_for_contract(self) -> None:
        assert self.main is not None
        waited, step = 0.0, 0.05
        while self.main.get_contract(self.vt_symbol) is None:
            if waited >= self.settings.connect_timeout or self.context.stop_event.is_set():
                raise EngineError(
                    f"{self.sid}: gateway {self.plan.gateway_name} reported no contract {self.vt_symbol} "
                    f"within {self.settings.connect_timeout}s"
                )
            self.context.stop_event.wait(step)
            waited += step

    def strategy_raised(self, callback: str, exc: BaseException) -> None:
        """vnpy caught an exception of the strategy and stopped it; so do we (the other
        strategies of the engine go on)."""
        if not self.started:
            self._init_failure = exc
            return
        self.context.logger.error("%s raised %s; vnpy stopped the strategy", callback, _one_line(exc))
        self.context.on_crash(EngineError(f"{self.sid}: {callback} raised {_one_line(exc)}"))


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
