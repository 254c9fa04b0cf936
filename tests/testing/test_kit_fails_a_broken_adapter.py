"""The conformance kit fails an adapter that breaks the contract, and says why."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import pip_install_target

BROKEN = """
import threading
from strategy_manager.core.hookspecs import hookimpl

class Engine:
    def __init__(self):
        self.ticks = 0
        self.alive = True

    def loop(self):
        while self.alive:            # ignores context.stop_event, and nobody clears alive
            self.ticks += 1
            threading.Event().wait(0.01)

@hookimpl
def qsm_engine_info():
    return {"name": "broken", "version": "0.1", "capabilities": ["snapshot", "restore"],
            "description": "breaks the contract on purpose"}

@hookimpl
def qsm_validate_engine(spec, context):
    # accepts anything, and starts a thread while it is at it
    threading.Thread(target=threading.Event().wait, args=(2,), name="validating", daemon=True).start()

@hookimpl
def qsm_create_engine(spec, context):
    return Engine()

@hookimpl
def qsm_restore_engine(engine, snapshot, context):
    engine.ticks = snapshot.get("ticks", 0)   # accepts anything

@hookimpl
def qsm_start_engine(engine, context):
    threading.Thread(target=engine.loop, name="broken-loop", daemon=True).start()

@hookimpl
def qsm_stop_engine(engine, context):
    pass                             # leaves its thread running

@hookimpl
def qsm_snapshot_engine(engine, context):
    return {"ticks": engine.ticks, "seen": {1, 2}}   # a set is not JSON
"""

SELFISH = """
from strategy_manager.core.errors import HookError, InvalidStrategy
from strategy_manager.core.hookspecs import hookimpl

class Session:
    closed = False

@hookimpl
def qsm_engine_info():
    return {"name": "selfish", "version": "0.1", "capabilities": ["sessions"],
            "description": "closes its account's shared session when one strategy stops"}

@hookimpl
def qsm_validate_engine(spec, context):
    if spec.params:
        raise InvalidStrategy(f"{spec.id}: params: none accepted")

@hookimpl
def qsm_open_session(account, context):
    return Session()

@hookimpl
def qsm_close_session(session, account, context):
    session.closed = True

@hookimpl
def qsm_create_engine(spec, context):
    return {}

@hookimpl
def qsm_start_engine(engine, context):
    if context.session is not None and context.session.closed:
        raise HookError(f"{context.strategy_id}: the session is closed")

@hookimpl
def qsm_stop_engine(engine, context):
    if context.session is not None:
        context.session.closed = True   # the session is the account's, not this strategy's
"""

KIT_TEST = """
from strategy_manager.testing import EngineConformance

class TestSelfish(EngineConformance):
    engine = "selfish"

    def strategy_document(self, tmp_path):
        return {"user_id": "t", "symbol": "X", "strategy_key": "k", "engine": "selfish"}

    def account(self, tmp_path):
        return {"engine": "selfish", "host": "broker.example"}

class TestBroken(EngineConformance):
    engine = "broken"
    stop_seconds = 1.0

    def strategy_document(self, tmp_path):
        return {"user_id": "t", "symbol": "X", "strategy_key": "k", "engine": "broken"}
"""


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> str:
    src = tmp_path_factory.mktemp("broken_src")
    (src / "qsm_broken").mkdir()
    (src / "qsm_broken" / "__init__.py").write_text(BROKEN)
    (src / "qsm_selfish").mkdir()
    (src / "qsm_selfish" / "__init__.py").write_text(SELFISH)
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "qsm-broken"
        version = "0.1"
        [project.entry-points."quant_strategy_manager.engines"]
        broken = "qsm_broken"
        selfish = "qsm_selfish"
        [tool.setuptools]
        packages = ["qsm_broken", "qsm_selfish"]
        """)
    )
    site = pip_install_target(tmp_path_factory.mktemp("site"), src)
    work = tmp_path_factory.mktemp("work")
    (work / "test_kit.py").write_text(KIT_TEST)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rf", "test_kit.py"],
        cwd=work,
        env={**os.environ, "PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    return result.stdout


def test_the_kit_passes_what_the_adapter_does_right(report):
    summary = report.split("short test summary")[1]
    assert "TestBroken::test_plugin_loads_through_its_entry_point" not in summary
    assert "TestSelfish::test_a_session_opens_and_closes_off_the_callers_thread_in_time" not in summary
    assert "TestSelfish::test_create_start_and_a_prompt_stop" not in summary


@pytest.mark.parametrize(
    "check, message",
    [
        ("test_snapshot_is_plain_json", "the snapshot is not plain JSON data"),
        ("test_a_corrupt_snapshot_is_refused_with_a_clear_error", "was accepted silently"),
        ("test_no_thread_is_left_after_stop", "threads still running after stop: broken-loop"),
        ("test_validation_accepts_the_sample_and_starts_nothing", "validation started threads: validating"),
        ("test_validation_refuses_a_bad_parameter", "qsm_validate_engine accepted {'qsm_conformance_no_such_param': 1}"),
        (
            "TestSelfish::test_the_strategies_of_an_account_share_its_session",
            "a stop hook must leave the account's session open (the core closes it)",
        ),
    ],
)
def test_the_kit_fails_each_breach_with_a_message_that_says_what_to_fix(report, check, message):
    summary = report.split("short test summary")[1]
    failed = [line for line in summary.splitlines() if check in line]
    assert failed, f"{check} did not fail:\n{report}"
    assert message in report
