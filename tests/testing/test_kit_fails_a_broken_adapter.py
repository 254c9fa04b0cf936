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

KIT_TEST = """
from strategy_manager.testing import EngineConformance

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
    assert "test_plugin_loads_through_its_entry_point" not in report.split("short test summary")[1]


@pytest.mark.parametrize(
    "check, message",
    [
        ("test_snapshot_is_plain_json", "the snapshot is not plain JSON data"),
        ("test_a_corrupt_snapshot_is_refused_with_a_clear_error", "was accepted silently"),
        ("test_no_thread_is_left_after_stop", "threads still running after stop: broken-loop"),
        ("test_validation_accepts_the_sample_and_starts_nothing", "validation started threads: validating"),
        ("test_validation_refuses_a_bad_parameter", "qsm_validate_engine accepted {'qsm_conformance_no_such_param': 1}"),
    ],
)
def test_the_kit_fails_each_breach_with_a_message_that_says_what_to_fix(report, check, message):
    summary = report.split("short test summary")[1]
    failed = [line for line in summary.splitlines() if check in line]
    assert failed, f"{check} did not fail:\n{report}"
    assert message in report
