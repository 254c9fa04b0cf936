"""An engine with shared sessions, for the account tests: it counts opens and closes,
records the threads the session hooks run on, and can refuse, hang or report."""

from __future__ import annotations

import threading
import time
from typing import Any

from strategy_manager.core.errors import ConfigError, HookError
from strategy_manager.core.hookspecs import hookimpl


class FakeSession:
    def __init__(self, account: Any, report: Any) -> None:
        self.account = account
        self.report = report
        self.closed = False
        self.cancelled_orders = False
        #: Engines attached to it now.
        self.engines: set[int] = set()
        #: Engines still attached when it was closed (must stay empty).
        self.closed_under: list[int] = []


class SessionEngine:
    """Engine ``sess``. Each strategy's engine runs a thread until stopped; params
    ``desk`` make the engine derive the account ``desk:<desk>`` (settings
    ``{"desk": desk, "host": params.host}``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opened: list[FakeSession] = []
        self.open_attempts = 0
        self.open_threads: list[str] = []
        self.close_threads: list[str] = []
        #: Refuse this many opens first (a login refused).
        self.refuse = 0
        #: While set, an open blocks until it is cleared.
        self.hang = threading.Event()
        self.release = threading.Event()
        #: strategy id -> the session its engine got at each start.
        self.sessions_seen: dict[str, list[Any]] = {}
        self.contexts: dict[str, Any] = {}

    @hookimpl
    def qsm_engine_info(self) -> dict[str, Any]:
        return {
            "name": "sess",
            "version": "1",
            "capabilities": ["snapshot", "restore", "sessions"],
            "description": "shared sessions, for tests",
        }

    @hookimpl
    def qsm_session_account(self, spec: Any, context: Any) -> dict[str, Any] | None:
        desk = spec.params.get("desk")
        if desk is None:
            return None
        return {"name": f"desk:{desk}", "settings": {"desk": desk, "host": spec.params.get("host", "h1")}}

    @hookimpl
    def qsm_open_session(self, account: Any, context: Any) -> Any:
        with self.lock:
            self.open_attempts += 1
            self.open_threads.append(threading.current_thread().name)
            refuse = self.refuse > 0
            self.refuse -= refuse
        if account.settings.get("broken"):
            raise ConfigError(f"account {account.name}: setting 'broken' is set")
        if refuse:
            raise HookError(f"account {account.name}: login refused by the broker")
        if self.hang.is_set():
            self.release.wait(30)
        session = FakeSession(account, context.report)
        with self.lock:
            self.opened.append(session)
        return session

    @hookimpl
    def qsm_close_session(self, session: FakeSession, account: Any, context: Any) -> None:
        self.close_threads.append(threading.current_thread().name)
        session.closed_under = sorted(session.engines)
        session.cancelled_orders = context.cancel_orders
        session.closed = True

    @hookimpl
    def qsm_create_engine(self, spec: Any, context: Any) -> Any:
        return {"id": spec.id, "n": 0, "session": context.session}

    @hookimpl
    def qsm_restore_engine(self, engine: Any, snapshot: dict[str, Any], context: Any) -> None:
        engine["n"] = snapshot["n"]

    @hookimpl
    def qsm_start_engine(self, engine: Any, context: Any) -> None:
        session = context.session
        with self.lock:
            self.sessions_seen.setdefault(engine["id"], []).append(session)
            self.contexts[engine["id"]] = context
        if session is not None:
            if session.closed:
                raise HookError("started on a closed session")
            session.engines.add(id(engine))

        def run() -> None:
            while not context.stop_event.wait(0.01):
                engine["n"] += 1

        context.spawn(run)

    @hookimpl
    def qsm_stop_engine(self, engine: Any, context: Any) -> None:
        session = context.session
        if session is not None:
            time.sleep(0.01)  # a stop takes a moment: a close must wait for it
            session.engines.discard(id(engine))

    @hookimpl
    def qsm_snapshot_engine(self, engine: Any, context: Any) -> dict[str, Any]:
        return {"n": engine["n"], "position": 1}

    @hookimpl
    def qsm_snapshot_positions(self, snapshot: dict[str, Any], spec: Any) -> dict[str, float] | None:
        return {spec.symbol: snapshot["position"]}
