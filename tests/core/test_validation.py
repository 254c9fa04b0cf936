"""validate_document: parse, resolve the engine, ask the engine; one-line errors naming
the strategy; cheap to call from any thread."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from typing import Any

import pytest

from strategy_manager.core.errors import (
    EngineNotFound,
    EngineUnavailable,
    HookError,
    InvalidStrategy,
    QsmError,
)
from strategy_manager.core.hookspecs import hookimpl
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.validation import check_params, validate_document
from tests.core.sample_plugins import Good

DOC = {"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "checked", "params": {"n": 1}}


class Checked(Good):
    """Validates: ``n`` must be a positive integer; records the threads it ran on."""

    def __init__(self, name: str = "checked") -> None:
        super().__init__(name)
        self.threads: list[str] = []

    @hookimpl
    def qsm_validate_engine(self, spec: Any, context: Any) -> None:
        self.threads.append(threading.current_thread().name)
        assert context.spec is spec and context.data_dir.name == "u_600000.SH_k"
        check_params(spec.id, "params for checked", spec.params, {"n": 1})
        if spec.params.get("n", 1) < 1:
            raise InvalidStrategy("n must be positive")  # no strategy id: the core adds it


class Buggy(Good):
    @hookimpl
    def qsm_validate_engine(self, spec: Any, context: Any) -> None:
        raise KeyError("oops\nsecond line")


def registry(settings: Settings | None = None, **plugins: Any) -> EngineRegistry:
    reg = EngineRegistry(settings or Settings())
    for name, plugin in plugins.items():
        reg.add_plugin(name, plugin)
    return reg


def test_a_valid_document_gives_its_spec():
    spec = validate_document(Settings(), registry(checked=Checked()), DOC)
    assert spec.id == "u:600000.SH:k" and spec.params == {"n": 1}


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"n": "five"}, "u:600000.SH:k: params for checked: 'n' must be an integer, got 'five'"),
        ({"n": 1.5}, "u:600000.SH:k: params for checked: 'n' must be an integer, got 1.5"),
        ({"n": True}, "u:600000.SH:k: params for checked: 'n' must be an integer, got True"),
        ({"m": 1}, "u:600000.SH:k: params for checked: unknown 'm'; known: n"),
        ({"n": 0}, "u:600000.SH:k: n must be positive"),
    ],
)
def test_the_engines_refusal_is_one_line_naming_the_strategy(params, message):
    with pytest.raises(InvalidStrategy) as raised:
        validate_document(Settings(), registry(checked=Checked()), {**DOC, "params": params})
    assert str(raised.value) == message


def test_an_unknown_or_disabled_engine_is_an_error():
    with pytest.raises(EngineNotFound, match=r"^u:600000.SH:k: engine 'nosuchengine' is not installed"):
        validate_document(Settings(), registry(checked=Checked()), {**DOC, "engine": "nosuchengine"})
    off = registry(Settings(enable={"checked": False}), checked=Checked())
    with pytest.raises(EngineUnavailable, match="not enabled by configuration"):
        validate_document(Settings(), off, DOC)


def test_a_document_that_does_not_parse_is_refused_before_any_engine():
    with pytest.raises(InvalidStrategy, match="missing required field 'symbol'"):
        validate_document(Settings(), registry(), {k: v for k, v in DOC.items() if k != "symbol"})


def test_a_plugin_bug_is_reported_like_a_refusal_in_one_line():
    with pytest.raises(HookError) as raised:
        validate_document(Settings(), registry(checked=Buggy("checked")), DOC)
    assert str(raised.value) == "u:600000.SH:k: engine 'checked' failed to validate it: KeyError: 'oops\\nsecond line'"


def test_an_engine_without_the_hook_is_validated_by_parsing_only():
    assert validate_document(Settings(), registry(checked=Good("checked")), DOC).engine == "checked"


def test_it_runs_on_any_thread():
    plugin = Checked()
    reg = registry(checked=plugin)
    results: list[Any] = []

    def check(n: int) -> None:
        try:
            results.append(validate_document(Settings(), reg, {**DOC, "params": {"n": n}}))
        except QsmError as exc:
            results.append(exc)

    threads = [threading.Thread(target=check, args=(n,), name=f"validate-{n}") for n in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(type(r).__name__ for r in results) == ["InvalidStrategy", "StrategySpec"]
    assert sorted(plugin.threads) == ["validate-0", "validate-1"]


def test_validating_a_demo_document_imports_no_engine_library():
    code = """
import json, sys
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.validation import validate_document
doc = {"user_id": "u", "symbol": "600000.SH", "strategy_key": "k", "engine": "demo", "params": {"fast": 3}}
validate_document(Settings(), EngineRegistry.from_entry_points(Settings()), doc)
print(json.dumps(sorted(m for m in ("backtrader", "vnpy", "pandas", "numpy") if m in sys.modules)))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout) == []


@pytest.mark.parametrize(
    ("given", "accepted", "message"),
    [
        ({"a": 1}, {"a": 2.5}, None),  # an integer is a number
        ({"a": 1.5}, {"a": 2}, "'a' must be an integer, got 1.5"),
        ({"a": "x"}, {"a": None}, None),  # a None default tells nothing
        ({"a": [1]}, {"a": (1, 2)}, None),  # nor does a tuple
        ({"a": 1}, {"a": False}, "'a' must be true or false, got 1"),
        ({"a": 1}, {"a": "s"}, "'a' must be a string, got 1"),
        ({"a": False}, {"a": 0.5}, "'a' must be a number, got False"),
        ({"b": 1, "c": 2}, {"a": 1}, "unknown 'b', 'c'; known: a"),
        ({"\x1b": 1}, {}, r"unknown '\x1b'; known: (none)"),
    ],
)
def test_check_params_names_and_types(given, accepted, message):
    if message is None:
        check_params("s", "params", given, accepted)
        return
    with pytest.raises(InvalidStrategy) as raised:
        check_params("s", "params", given, accepted)
    assert str(raised.value) == f"s: params: {message}"
