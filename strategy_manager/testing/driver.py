"""Helpers for an adapter's own tests: call its hooks in the worker's order, wait for
the orchestrator's snapshots. See the package docstring."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import Account, EngineContext, Member, SessionContext, account_dir
from strategy_manager.core.spec import StrategySpec
from strategy_manager.core.store.protocol import Snapshot, Store
from strategy_manager.core.worker import WIND_DOWN_SECONDS


def json_roundtrip(value: Any) -> Any:
    """What a store gives back: a snapshot must survive plain JSON unchanged."""
    return json.loads(json.dumps(value, allow_nan=False))


class HookDriver:
    """Calls one plugin module's ``qsm_*`` hooks directly, in the order the core's
    worker does, and keeps the engines it made so :meth:`close` stops them all.

    Snapshots go through :func:`json_roundtrip` both ways, as through a store.

    Accounts: :meth:`open_session` opens an account's session as the core does;
    give it to :meth:`create` or :meth:`start` (``session=``, ``account=``,
    ``members=``) to run strategies in it, and :meth:`close` closes it after their
    engines.
    """

    def __init__(self, plugin: ModuleType, data_dir: Path, class_allow: Iterable[str] = ()) -> None:
        self.plugin = plugin
        self.data_dir = data_dir
        #: The operator's rules: ``class_allow`` plays ``engine_class_allow``.
        self.classes = ClassLoader((), list(class_allow))
        self.engines: list[tuple[Any, EngineContext]] = []
        self.sessions: list[tuple[Any, Account]] = []
        #: What sessions reported through ``context.report``, in order.
        self.reports: list[tuple[str, str | None]] = []

    def context(
        self,
        spec: StrategySpec,
        session: Any = None,
        account: Account | None = None,
        members: dict[str, Member] | None = None,
        **options: Any,
    ) -> EngineContext:
        return EngineContext(
            spec=spec,
            data_dir=self.data_dir / spec.strategy_key,
            classes=self.classes,
            options=options,
            account=account,
            session=session,
            members=members or {},
        )

    def session_context(
        self, account: Account, cancel_orders: bool = False, **options: Any
    ) -> SessionContext:
        return SessionContext(
            account=account,
            data_dir=account_dir(self.data_dir.parent.parent, account.engine, account.name),
            classes=self.classes,
            options=options,
            report=lambda problem: self.reports.append((account.name, problem)),
            cancel_orders=cancel_orders,
        )

    def open_session(self, account: Account, **options: Any) -> Any:
        """The account's session, as the core opens it (``qsm_open_session``)."""
        session = self.plugin.qsm_open_session(
            account=account, context=self.session_context(account, **options)
        )
        assert session is not None, "qsm_open_session returned None"
        self.sessions.append((session, account))
        return session

    def close_session(self, session: Any, cancel_orders: bool = False, **options: Any) -> None:
        """Close a session :meth:`open_session` opened (``qsm_close_session``)."""
        for index, (opened, account) in enumerate(self.sessions):
            if opened is session:
                del self.sessions[index]
                context = self.session_context(account, cancel_orders, **options)
                self.plugin.qsm_close_session(session=session, account=account, context=context)
                return
        raise AssertionError("not a session this driver opened")

    def create(
        self,
        spec: StrategySpec,
        snapshot: dict[str, Any] | None = None,
        session: Any = None,
        account: Account | None = None,
        members: dict[str, Member] | None = None,
        **options: Any,
    ) -> tuple[Any, EngineContext]:
        context = self.context(spec, session, account, members, **options)
        engine = self.plugin.qsm_create_engine(spec=spec, context=context)
        self.engines.append((engine, context))
        if snapshot is not None:
            self.plugin.qsm_restore_engine(engine=engine, snapshot=json_roundtrip(snapshot), context=context)
        return engine, context

    def start(
        self,
        spec: StrategySpec,
        snapshot: dict[str, Any] | None = None,
        session: Any = None,
        account: Account | None = None,
        members: dict[str, Member] | None = None,
        **options: Any,
    ) -> tuple[Any, EngineContext]:
        engine, context = self.create(spec, snapshot, session, account, members, **options)
        self.plugin.qsm_start_engine(engine=engine, context=context)
        return engine, context

    def snapshot(self, engine: Any, context: EngineContext) -> dict[str, Any]:
        state = self.plugin.qsm_snapshot_engine(engine=engine, context=context)
        return json_roundtrip(state)  # type: ignore[no-any-return]

    def run_to_end(
        self, spec: StrategySpec, snapshot: dict[str, Any] | None = None, timeout: float = 120
    ) -> dict[str, Any]:
        """Start an engine that finishes on its own (a replay) and snapshot it at the end."""
        engine, context = self.start(spec, snapshot)
        assert not context.join_threads(timeout), f"engine still running after {timeout}s"
        return self.snapshot(engine, context)

    def stop(self, engine: Any, context: EngineContext) -> dict[str, Any]:
        """The worker's stop: the stop event, a moment for the engine's threads, the
        final snapshot, then the stop hook. Returns the snapshot."""
        context.stop_event.set()
        context.join_threads(WIND_DOWN_SECONDS)
        state = self.snapshot(engine, context)
        self.plugin.qsm_stop_engine(engine=engine, context=context)
        assert not context.join_threads(5), "an engine thread survived the stop"
        return state

    def close(self) -> None:
        """Stop every engine this driver made, then close its sessions (a test's teardown)."""
        for engine, context in self.engines:
            context.stop_event.set()
            self.plugin.qsm_stop_engine(engine=engine, context=context)
            context.join_threads(5)
        for session, _account in list(self.sessions):
            self.close_session(session)


def wait_for_snapshot(
    store: Store,
    strategy_id: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 60,
) -> Snapshot:
    """The first stored snapshot of ``strategy_id`` whose state satisfies ``predicate``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = store.latest_snapshot(strategy_id)
        if record is not None and predicate(record.state):
            return record
        time.sleep(0.05)
    latest = store.latest_snapshot(strategy_id)
    seen = f"snapshot #{latest.seq}" if latest else "no snapshot"
    raise AssertionError(f"{strategy_id}: no snapshot as expected within {timeout}s; latest: {seen}")
