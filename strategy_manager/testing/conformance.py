"""The checks of :class:`EngineConformance`; see the package docstring for use."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.context import Account, EngineContext, SessionContext, account_dir
from strategy_manager.core.errors import QsmError
from strategy_manager.core.registry import EngineHooks, EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import StrategySpec, parse_strategy
from strategy_manager.core.validation import validate_document
from strategy_manager.core.worker import EngineWorker, WorkerState
from strategy_manager.testing.driver import json_roundtrip

CORRUPT_SNAPSHOTS: list[Any] = [{}, {"qsm_conformance": "not a state this engine wrote"}]


class EngineConformance:
    """Base class of an adapter's conformance tests. Set ``engine`` and implement
    :meth:`strategy_document`; override the other attributes when needed."""

    #: The engine name, as in the entry point and in documents.
    engine: str = ""
    #: Module prefixes ``engine_class`` may come from, for the sample document.
    class_allow: tuple[str, ...] = ()
    #: How long create+start and stop may each take, in seconds.
    start_seconds: float = 10.0
    stop_seconds: float = 5.0
    #: How long after start the engine runs before it is snapshotted or stopped.
    run_seconds: float = 0.2

    # -- what the adapter author provides -------------------------------------------
    def strategy_document(self, tmp_path: Path) -> dict[str, Any]:
        raise NotImplementedError("return a sample strategy document for your engine")

    def bad_documents(self, tmp_path: Path) -> list[dict[str, Any]]:
        """Variants of :meth:`strategy_document` the engine's validation must refuse.
        By default the sample with a parameter no engine has; add your own (a value
        of the wrong type, a missing setting ...)."""
        document = self.strategy_document(tmp_path)
        params = {**document.get("params", {}), "qsm_conformance_no_such_param": 1}
        return [{**document, "params": params}]

    def edited_params(self, tmp_path: Path) -> dict[str, Any] | None:
        """For an engine with ``qsm_update_params``: the sample's params with an edit the
        engine should take in place (None: that check is skipped)."""
        return None

    def settings(self, tmp_path: Path) -> Settings:
        return Settings(data_dir=str(tmp_path / "data"), engine_class_allow=self.class_allow)

    def account(self, tmp_path: Path) -> dict[str, Any]:
        """For an engine that declares ``sessions``: one account of the ``accounts``
        setting (``{"engine": ..., connection settings}``) the session checks open."""
        raise NotImplementedError(
            f"engine {self.engine!r} declares 'sessions': return the settings of an account from account()"
        )

    def account_documents(self, tmp_path: Path, name: str) -> list[dict[str, Any]]:
        """Three documents of account ``name``; by default the sample under three keys.
        Override it when a document on an account differs (its connection settings
        belong to the account)."""
        base = self.strategy_document(tmp_path)
        return [{**base, "strategy_key": f"{base['strategy_key']}-{i}", "account": name} for i in range(3)]

    # -- helpers --------------------------------------------------------------------
    def registry(self, tmp_path: Path) -> EngineRegistry:
        return EngineRegistry.from_entry_points(self.settings(tmp_path))

    def hooks(self, tmp_path: Path) -> EngineHooks:
        return self.registry(tmp_path).resolve(self.engine)

    def spec(self, tmp_path: Path) -> StrategySpec:
        return parse_strategy(self.strategy_document(tmp_path))

    def context(self, tmp_path: Path, hooks: EngineHooks, spec: StrategySpec) -> EngineContext:
        settings = self.settings(tmp_path)
        return EngineContext(
            spec=spec,
            data_dir=tmp_path / "engine",
            classes=ClassLoader(settings.import_paths, settings.engine_class_allow),
            options=dict(settings.engine_options.get(self.engine, {})),
        )

    def worker(self, tmp_path: Path, snapshot: Any = None) -> tuple[EngineWorker, list[dict[str, Any]]]:
        hooks, spec = self.hooks(tmp_path), self.spec(tmp_path)
        saved: list[dict[str, Any]] = []
        worker = EngineWorker(
            spec,
            hooks,
            lambda: self.context(tmp_path, hooks, spec),
            load_snapshot=lambda: snapshot,
            state_sink=saved.append,
            stop_timeout=self.stop_seconds,
        )
        return worker, saved

    def session_context(self, tmp_path: Path, account: Account, problems: list[Any]) -> SessionContext:
        settings = self.settings(tmp_path)
        return SessionContext(
            account=account,
            data_dir=account_dir(settings.data_dir, self.engine, account.name),
            classes=ClassLoader(settings.import_paths, settings.engine_class_allow),
            options=dict(settings.engine_options.get(self.engine, {})),
            report=problems.append,
        )

    def kit_account(self, tmp_path: Path) -> Account:
        hooks = self.hooks(tmp_path)
        if not hooks.has("sessions"):
            pytest.skip(f"engine {self.engine!r} declares no 'sessions' capability")
        definition = self.account(tmp_path)
        assert definition.get("engine") == self.engine, "account() must name your engine as its 'engine'"
        return Account("kit-account", self.engine, {k: v for k, v in definition.items() if k != "engine"})

    def timed_stop(self, worker: EngineWorker) -> float:
        t0 = time.monotonic()
        worker.stop()
        return time.monotonic() - t0

    # -- the checks ----------------------------------------------------------------
    def test_plugin_loads_through_its_entry_point(self, tmp_path: Path) -> None:
        assert self.engine, "set the class attribute `engine` to your engine's name"
        entries = [e for e in self.registry(tmp_path).entries() if e.name == self.engine]
        assert entries, (
            f"no entry point named {self.engine!r} in group quant_strategy_manager.engines: "
            "is your distribution installed (pip install -e .) and is the name right?"
        )
        entry = entries[0]
        assert entry.status == "ok", f"engine {self.engine!r} is {entry.status}: {entry.error}"

    def test_engine_info_is_complete(self, tmp_path: Path) -> None:
        entry = self.hooks(tmp_path).entry
        assert entry.version, "qsm_engine_info must return a non-empty 'version'"
        assert entry.description, "qsm_engine_info should return a one-line 'description'"
        assert all(isinstance(c, str) for c in entry.capabilities)

    def test_validation_accepts_the_sample_and_starts_nothing(self, tmp_path: Path) -> None:
        registry = self.registry(tmp_path)
        assert "qsm_validate_engine" in registry.resolve(self.engine).entry.hooks, (
            "implement qsm_validate_engine: it lets a bad document be refused before it is "
            "stored or started (see strategy_manager.core.hookspecs)"
        )
        before = set(threading.enumerate())
        spec = validate_document(self.settings(tmp_path), registry, self.strategy_document(tmp_path))
        assert spec.engine == self.engine
        started = [t.name for t in threading.enumerate() if t not in before and t.is_alive()]
        assert not started, f"validation started threads: {', '.join(started)}; it must only check"

    def test_validation_refuses_a_bad_parameter(self, tmp_path: Path) -> None:
        registry, settings = self.registry(tmp_path), self.settings(tmp_path)
        bad_documents = self.bad_documents(tmp_path)
        assert bad_documents, "bad_documents() must return at least one document your engine refuses"
        for document in bad_documents:
            with pytest.raises(QsmError) as raised:
                validate_document(settings, registry, document)
                pytest.fail(
                    f"qsm_validate_engine accepted {document.get('params')!r}: check the params' "
                    "names (and types where the engine can tell) and raise InvalidStrategy"
                )
            message = str(raised.value)
            assert "\n" not in message, f"the error should be one line: {message!r}"
            spec_id = ":".join(str(document[k]) for k in ("user_id", "symbol", "strategy_key"))
            assert message.startswith(f"{spec_id}: "), f"the error should name the strategy: {message!r}"

    def test_create_start_and_a_prompt_stop(self, tmp_path: Path) -> None:
        worker, _ = self.worker(tmp_path)
        t0 = time.monotonic()
        worker.start()
        assert time.monotonic() - t0 < self.start_seconds, (
            f"create+start took over {self.start_seconds}s: qsm_start_engine must return "
            "promptly and run long work on context.spawn (stop and thread contract, rule 2)"
        )
        assert worker.state is WorkerState.RUNNING, f"after start the worker is {worker.state}"
        time.sleep(self.run_seconds)
        elapsed = self.timed_stop(worker)
        assert elapsed < self.stop_seconds, (
            f"stop took {elapsed:.1f}s (limit {self.stop_seconds}s): threads must end on "
            "context.stop_event and qsm_stop_engine return within seconds (stop and thread contract, "
            "rules 3 and 4)"
        )
        assert worker.error is None, f"stop reported: {worker.error}"
        assert worker.state is WorkerState.STOPPED

    def test_snapshot_is_plain_json(self, tmp_path: Path) -> None:
        hooks = self.hooks(tmp_path)
        if not hooks.has("snapshot"):
            pytest.skip(f"engine {self.engine!r} declares no 'snapshot' capability")
        worker, _ = self.worker(tmp_path)
        worker.start()
        try:
            time.sleep(self.run_seconds)
            state = hooks.snapshot(worker.engine, worker.context)
        finally:
            worker.stop(save_state=False)
        assert isinstance(state, dict), f"qsm_snapshot_engine returned {type(state).__name__}, not a dict"
        try:
            text = json.dumps(state, allow_nan=False)
        except (TypeError, ValueError) as exc:
            pytest.fail(f"the snapshot is not plain JSON data: {exc}")
        assert json.loads(text) == state, "the snapshot changes when it goes through JSON"

    def test_restore_into_a_fresh_engine_gives_the_same_snapshot(self, tmp_path: Path) -> None:
        hooks, spec = self.hooks(tmp_path), self.spec(tmp_path)
        if not (hooks.has("snapshot") and hooks.has("restore")):
            pytest.skip(f"engine {self.engine!r} does not declare both 'snapshot' and 'restore'")
        worker, saved = self.worker(tmp_path)
        worker.start()
        time.sleep(self.run_seconds)
        worker.stop()
        assert saved, "stopping a running engine saved no snapshot"
        state = json_roundtrip(saved[-1])
        context = self.context(tmp_path, hooks, spec)
        engine = hooks.create(spec, context)
        try:
            hooks.restore(engine, state, context)
            again = hooks.snapshot(engine, context)
        finally:
            context.stop_event.set()
            hooks.stop(engine, context)
            context.join_threads(self.stop_seconds)
        assert again == state, (
            "a fresh engine restored from a snapshot (and not started) must snapshot to the "
            f"same state;\nrestored: {state}\nsnapshot: {again}"
        )

    def test_a_stop_during_start_is_handled(self, tmp_path: Path) -> None:
        worker, _ = self.worker(tmp_path)
        before = set(threading.enumerate())
        starter = threading.Thread(target=lambda: _quietly(worker.start), daemon=True)
        starter.start()
        time.sleep(0.001)
        elapsed = self.timed_stop(worker)
        starter.join(self.start_seconds)
        assert not starter.is_alive(), (
            "start never returned after a concurrent stop (stop and thread contract, rule 2)"
        )
        if worker.state is WorkerState.RUNNING:  # the stop came first; stop the start's engine
            elapsed += self.timed_stop(worker)
        assert elapsed < self.start_seconds + self.stop_seconds
        _assert_no_threads_left(before, self.stop_seconds)

    def test_a_double_stop_is_harmless(self, tmp_path: Path) -> None:
        worker, saved = self.worker(tmp_path)
        worker.start()
        time.sleep(self.run_seconds)
        worker.stop()
        count = len(saved)
        worker.stop()
        assert worker.state is WorkerState.STOPPED
        assert len(saved) == count, "a second stop saved another snapshot"

    @pytest.mark.parametrize("corrupt", CORRUPT_SNAPSHOTS, ids=["empty", "foreign"])
    def test_a_corrupt_snapshot_is_refused_with_a_clear_error(self, tmp_path: Path, corrupt: Any) -> None:
        if not self.hooks(tmp_path).has("restore"):
            pytest.skip(f"engine {self.engine!r} declares no 'restore' capability")
        worker, _ = self.worker(tmp_path, snapshot=corrupt)
        with pytest.raises(QsmError) as raised:
            worker.start()
            worker.stop(save_state=False)
            pytest.fail(
                f"restoring the snapshot {corrupt!r} was accepted silently: raise "
                "strategy_manager.core.errors.SnapshotError naming what is wrong"
            )
        message = str(raised.value)
        assert "\n" not in message, f"the error should be one line: {message!r}"
        assert worker.spec.id in message, f"the error should name the strategy: {message!r}"
        assert worker.state is WorkerState.FAILED

    def test_no_thread_is_left_after_stop(self, tmp_path: Path) -> None:
        before = set(threading.enumerate())
        worker, _ = self.worker(tmp_path)
        worker.start()
        time.sleep(self.run_seconds)
        worker.stop()
        assert worker.error is None, f"stop reported: {worker.error}"
        _assert_no_threads_left(before, self.stop_seconds)

    def test_edited_params_are_taken_by_the_running_engine(self, tmp_path: Path) -> None:
        hooks = self.hooks(tmp_path)
        if not hooks.updates_params:
            pytest.skip(f"engine {self.engine!r} does not implement qsm_update_params")
        params = self.edited_params(tmp_path)
        if params is None:
            pytest.skip("return an edit your engine takes in place from edited_params() to check it")
        worker, _ = self.worker(tmp_path)
        worker.start()
        try:
            time.sleep(self.run_seconds)
            document = {**self.strategy_document(tmp_path), "params": params}
            spec = validate_document(self.settings(tmp_path), self.registry(tmp_path), document)
            assert worker.spec.differs_only_in_params(spec), "edited_params() must change the params"
            engine, t0 = worker.engine, time.monotonic()
            why = worker.update_params(spec, self.start_seconds)
            assert why is None, f"qsm_update_params did not take {params!r}: {why}"
            assert time.monotonic() - t0 < self.start_seconds
            assert worker.engine is engine and worker.state is WorkerState.RUNNING, (
                "qsm_update_params must change the running engine, not replace or stop it"
            )
            assert worker.context is not None and worker.context.spec is spec
        finally:
            elapsed = self.timed_stop(worker)
        assert worker.error is None, f"stop after an in-place edit reported: {worker.error}"
        assert elapsed < self.stop_seconds

    # -- shared sessions (engines that declare "sessions") ------------------------------
    def test_a_session_opens_and_closes_off_the_callers_thread_in_time(self, tmp_path: Path) -> None:
        account = self.kit_account(tmp_path)
        hooks = self.hooks(tmp_path)
        problems: list[Any] = []
        context = self.session_context(tmp_path, account, problems)
        before = set(threading.enumerate())
        session = _on_a_thread(lambda: hooks.open_session(account, context), self.start_seconds, "open")
        assert session is not None, "qsm_open_session returned None: return the session object"
        _on_a_thread(lambda: hooks.close_session(session, account, context), self.stop_seconds, "close")
        _assert_no_threads_left(before, self.stop_seconds)

    def test_the_strategies_of_an_account_share_its_session(self, tmp_path: Path) -> None:
        account = self.kit_account(tmp_path)
        hooks = self.hooks(tmp_path)
        context = self.session_context(tmp_path, account, [])
        before = set(threading.enumerate())
        session = _on_a_thread(lambda: hooks.open_session(account, context), self.start_seconds, "open")
        documents = self.account_documents(tmp_path, account.name)
        assert len(documents) >= 3, "account_documents() must return three documents of the account"
        specs = [parse_strategy(d) for d in documents[:3]]
        workers = [self._member(tmp_path, hooks, spec, account, session) for spec in specs]
        try:
            for worker in workers[:2]:
                worker.start()
                assert worker.state is WorkerState.RUNNING, f"{worker.id} in the session is {worker.state}"
            time.sleep(self.run_seconds)
            workers[0].stop()
            assert workers[0].error is None, f"stop reported: {workers[0].error}"
            assert workers[1].state is WorkerState.RUNNING and workers[1].error is None, (
                "stopping one strategy of an account disturbed another: the session is shared, its "
                f"engines are not ({workers[1].error})"
            )
            try:
                workers[2].start()
            except QsmError as exc:
                pytest.fail(
                    f"a strategy could not start in the session after another of the account stopped "
                    f"({exc}): a stop hook must leave the account's session open (the core closes it)"
                )
            assert workers[2].state is WorkerState.RUNNING
        finally:
            for worker in workers:
                worker.stop(save_state=False)
            _on_a_thread(lambda: hooks.close_session(session, account, context), self.stop_seconds, "close")
        _assert_no_threads_left(before, self.stop_seconds)

    def _member(
        self, tmp_path: Path, hooks: EngineHooks, spec: StrategySpec, account: Account, session: Any
    ) -> EngineWorker:
        settings = self.settings(tmp_path)

        def make_context() -> EngineContext:
            return EngineContext(
                spec=spec,
                data_dir=tmp_path / "engines" / spec.strategy_key,
                classes=ClassLoader(settings.import_paths, settings.engine_class_allow),
                options=dict(settings.engine_options.get(self.engine, {})),
                account=account,
                session=session,
            )

        return EngineWorker(spec, hooks, make_context, stop_timeout=self.stop_seconds)

    def test_positions_of_a_snapshot_are_numbers_by_symbol(self, tmp_path: Path) -> None:
        hooks = self.hooks(tmp_path)
        if "qsm_snapshot_positions" not in hooks.entry.hooks:
            pytest.skip(f"engine {self.engine!r} does not implement qsm_snapshot_positions")
        worker, saved = self.worker(tmp_path)
        worker.start()
        time.sleep(self.run_seconds)
        worker.stop()
        assert saved, "stopping a running engine saved no snapshot"
        positions = hooks.snapshot_positions(json_roundtrip(saved[-1]), worker.spec)
        assert positions is None or (
            isinstance(positions, dict)
            and all(isinstance(k, str) and isinstance(v, int | float) for k, v in positions.items())
        ), f"qsm_snapshot_positions must return {{symbol: number}} or None, not {positions!r}"


def _on_a_thread(call: Any, seconds: float, what: str) -> Any:
    """Run ``call`` on another thread (as the core's hook pool does) within ``seconds``."""
    outcome: list[Any] = []

    def body() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as exc:
            outcome.append((False, exc))

    thread = threading.Thread(target=body, name=f"kit-{what}", daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"qsm_{what}_session did not return within {seconds}s (the core gives up on it)"
    ok, value = outcome[0]
    if not ok:
        raise value
    return value


def _quietly(call: Any) -> None:
    with contextlib.suppress(QsmError):
        call()


def _assert_no_threads_left(before: set[threading.Thread], grace: float) -> None:
    deadline = time.monotonic() + grace
    while True:
        left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    names = ", ".join(t.name for t in left)
    assert not left, (
        f"threads still running after stop: {names} (stop and thread contract, rule 4: start them "
        "with context.spawn, or join them in qsm_stop_engine)"
    )
