"""One vnpy account as vnpy's own trader runs it: an event engine, a ``MainEngine``, a
``CtaEngine`` and one gateway connection, shared by every CTA strategy of the
account (:class:`qsm_vnpy.cta.CtaRunner` attaches and detaches them).

The core opens the session of an account when its first strategy is about to start
(``qsm_open_session``) and closes it after the last one stopped and a grace period
(``qsm_close_session``); every runner of the account gets it as ``context.session``.
A strategy without one (no account, a replay of its own, a test) gets a private
session that its runner opens and closes, so there is one code path.

What stays per strategy: its fence (the CTA engine asks the strategy's own
``context.lease_valid()`` before each of its orders), its log lines (vnpy's CTA
log lines are routed to the strategy's logger by the name vnpy puts in them), its
crash (an exception in one strategy's callback stops that strategy only), and, on
the replay, its replay (:mod:`qsm_vnpy.replay_stream`).

A live gateway reconnects by itself (vnpy's gateways do). vnpy has no event for a
lost connection, so the session reports a failure to the core only when the
gateway reports no contract within ``connect_timeout`` of connecting: the login
failed, and the open fails with that message on every strategy of the account.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from vnpy.event import Event, EventEngine
from vnpy.trader.event import EVENT_LOG
from vnpy.trader.object import LogData
from vnpy_ctastrategy.base import EVENT_CTA_LOG

from qsm_vnpy import events
from qsm_vnpy.engines import MemoryCtaEngine, QsmMainEngine
from qsm_vnpy.replay import ReplayGateway
from qsm_vnpy.settings import ReplayAccountSettings
from strategy_manager.core.errors import EngineError

if TYPE_CHECKING:
    from qsm_vnpy.cta import CtaRunner


class VnpySession:
    def __init__(
        self,
        name: str,
        gateway_class: Any,
        gateway_name: str,
        setting: dict[str, Any],
        logger: logging.LoggerAdapter,  # type: ignore[type-arg]
        replay: ReplayAccountSettings | None = None,
        shared: bool = True,
        connect_timeout: float = 30.0,
        report: Callable[[str | None], None] = lambda problem: None,
    ) -> None:
        self.name = name
        self.gateway_class = gateway_class
        self.gateway_name = gateway_name
        self.setting = setting
        self.logger = logger
        self.replay = replay
        #: Shared by an account's strategies (else one strategy's own).
        self.shared = shared
        self.connect_timeout = connect_timeout
        self.report = report
        self.main: QsmMainEngine | None = None
        self.cta: MemoryCtaEngine | None = None
        self.gateway: Any = None
        #: When the gateway was connected (monotonic), for a live gateway's position wait.
        self.connected_at = 0.0
        #: Strategy id -> its runner, while attached.
        self.runners: dict[str, CtaRunner] = {}
        self._lock = threading.Lock()

    @property
    def event_engine(self) -> EventEngine:
        assert self.main is not None
        return self.main.event_engine

    def open(self) -> VnpySession:
        """Start the engines and connect the gateway; returns once a live gateway has
        reported a contract (logged in), or raises EngineError after ``connect_timeout``."""
        event_engine = EventEngine(1)
        events.install(event_engine)
        event_engine.register(EVENT_LOG, self._log)
        event_engine.register(EVENT_CTA_LOG, self._log)
        self.main = main = QsmMainEngine(event_engine)
        self.gateway = gateway = main.add_gateway(self.gateway_class, self.gateway_name)
        self.cta = cta = main.add_engine(MemoryCtaEngine)
        if self.replay is not None:
            gateway.configure(self.replay, self.shared)
            cta.replay = gateway
        cta.init_engine()
        main.connect(dict(self.setting), self.gateway_name)
        self.connected_at = time.monotonic()
        if self.shared and self.replay is None:
            self._wait_for_login()
        return self

    def _wait_for_login(self) -> None:
        assert self.main is not None
        deadline = time.monotonic() + self.connect_timeout
        while not self.main.get_all_contracts():
            if time.monotonic() > deadline:
                self.close()
                raise EngineError(
                    f"account {self.name}: gateway {self.gateway_name} reported no contract within "
                    f"{self.connect_timeout:g}s of connecting (login refused, or its servers unreachable?)"
                )
            time.sleep(0.05)

    def close(self, cancel_orders: bool = False) -> None:
        """Disconnect; with ``cancel_orders``, cancel every open order of the account first.
        Leaves no thread of the session running."""
        main, cta = self.main, self.cta
        if main is None:
            return
        if cancel_orders:
            for order in main.get_all_active_orders():
                main.cancel_order(order.create_cancel_request(), order.gateway_name)
            self.logger.warning("cancelled every open order of the account before disconnecting")
        main.close()
        if cta is not None:
            cta.init_executor.shutdown(wait=True)
        self.main = None

    @property
    def closed(self) -> bool:
        return self.main is None

    # -- the account's strategies ---------------------------------------------------------
    def attach(self, runner: CtaRunner) -> None:
        """Admit a strategy's runner. One left behind by an engine the core abandoned
        (its fence is down for good) is taken out first."""
        with self._lock:
            old = self.runners.get(runner.sid)
            if old is not None and not old.context.fence.down:
                raise EngineError(f"{runner.sid}: already runs in the session of account {self.name}")
            self.runners[runner.sid] = runner
        if old is not None:
            self.logger.warning("%s: removing what an abandoned engine of it left in the session", runner.sid)
            self.call(old.evict, 30.0)

    def detach(self, runner: CtaRunner) -> None:
        with self._lock:
            if self.runners.get(runner.sid) is runner:
                del self.runners[runner.sid]

    def call(self, fn: Callable[[], Any], timeout: float | None = None) -> Any:
        """Run ``fn`` on the event thread, between two events; return its result."""
        return events.call_on_event_thread(self.event_engine, fn, timeout)

    def broker_position(self, vt_symbol: str) -> float:
        """The gateway's net position in the symbol (long minus short); call on the event thread."""
        if isinstance(self.gateway, ReplayGateway):
            return self.gateway.broker_position(vt_symbol)
        from vnpy.trader.constant import Direction

        assert self.main is not None
        total = 0.0
        for position in self.main.get_all_positions():
            if position.vt_symbol == vt_symbol:
                total += (-1.0 if position.direction == Direction.SHORT else 1.0) * position.volume
        return total

    def _log(self, event: Event) -> None:
        """vnpy's log lines: a CTA line naming a strategy to that strategy's logger."""
        log: LogData = event.data
        level = log.level if isinstance(log.level, int) else logging.INFO
        message = log.msg
        if message.startswith("[") and "]  " in message:
            runner = self.runners.get(message[1 : message.index("]  ")])
            if runner is not None:
                runner.context.logger.log(level, "%s", message[message.index("]  ") + 3 :])
                return
        self.logger.log(level, "%s", message)
