from __future__ import annotations

import re
from importlib.metadata import EntryPoint

import pytest

from strategy_manager.core.errors import EngineConflict, EngineNotFound, EngineUnavailable
from strategy_manager.core.hookspecs import ENTRY_POINT_GROUP
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings

MOD = "tests.core.sample_plugins"


def ep(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def registry(*eps: EntryPoint, settings: Settings | None = None) -> EngineRegistry:
    reg = EngineRegistry(settings)
    reg.load_entry_points(eps)
    return reg


def entry(reg: EngineRegistry, name: str):
    (found,) = [e for e in reg.entries() if e.name == name]
    return found


def test_a_valid_plugin_is_ok_and_resolves_to_its_own_hooks_only():
    reg = registry(ep("good", f"{MOD}:good"), ep("other", f"{MOD}:other"))
    assert entry(reg, "good").status == "ok"
    hooks = reg.resolve("good")
    engine = hooks.create(spec="S", context=None)
    hooks.start(engine, context=None)
    hooks.stop(engine, context=None)
    # Only one plugin answered: a single engine dict, not a list from every plugin.
    assert engine == {"spec": "S", "started": True, "stopped": True}


def test_unknown_engine_error_names_it_and_lists_installed_ones():
    reg = registry(ep("good", f"{MOD}:good"), ep("other", f"{MOD}:other"))
    with pytest.raises(EngineNotFound, match=r"engine 'nope' is not installed \(installed: good, other\)"):
        reg.resolve("nope")


def test_two_distributions_claiming_one_name_are_reported_and_the_rest_still_resolve():
    reg = registry(ep("twin", f"{MOD}:good"), ep("twin", f"{MOD}:other"), ep("other", f"{MOD}:other"))
    twins = [e for e in reg.entries() if e.name == "twin"]
    assert [e.status for e in twins] == ["conflict", "conflict"]
    with pytest.raises(
        EngineConflict, match=r"'twin' is claimed by .*sample_plugins:good.*sample_plugins:other"
    ):
        reg.resolve("twin")
    assert reg.resolve("other").name == "other"


def test_a_plugin_that_fails_to_import_is_recorded_and_others_keep_working():
    reg = registry(ep("broken", "tests.core.broken_plugin"), ep("good", f"{MOD}:good"))
    broken = entry(reg, "broken")
    assert broken.status == "broken"
    assert "ImportError: No module named 'some_missing_engine_library'" in broken.error
    with pytest.raises(EngineUnavailable, match="engine 'broken' is broken: import failed"):
        reg.resolve("broken")
    assert reg.resolve("good").name == "good"


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("misspelled", r"unknown hooks \['qsm_start_engin'\]"),
        ("unmarked", "qsm_snapshot_engine is not marked @hookimpl"),
        ("wrong_signature", "qsm_create_engine.*extra"),
        (
            "missing",
            r"missing required hooks \['qsm_create_engine', 'qsm_start_engine', 'qsm_stop_engine'\]",
        ),
        (
            "claims_snapshot",
            "claims capability 'snapshot' but does not implement qsm_snapshot_engine",
        ),
        ("info_raises", "qsm_engine_info raised RuntimeError: no version file"),
    ],
)
def test_contract_violations_are_reported_not_ignored(name, reason):
    reg = registry(ep(name, f"{MOD}:{name}"), ep("good", f"{MOD}:good"))
    found = entry(reg, name)
    assert found.status == "broken"
    assert re.search(reason, found.error), found.error
    assert reg.resolve("good").name == "good"
    # A broken plugin's hooks are not left behind in the plugin manager.
    assert len(reg.pm.get_plugins()) == 1


def test_engine_info_must_name_the_entry_point():
    reg = registry(ep("renamed", f"{MOD}:wrong_name"))
    assert (
        "names engine 'not-its-entry-point-name' but its entry point is 'renamed'"
        in entry(reg, "renamed").error
    )


def test_engines_outside_the_allow_list_are_listed_disabled_and_never_imported():
    reg = registry(
        ep("good", f"{MOD}:good"),
        ep("broken", "tests.core.broken_plugin"),
        settings=Settings(engines=("good",)),
    )
    assert entry(reg, "broken").status == "disabled"  # not imported, so not broken
    with pytest.raises(EngineUnavailable, match="engine 'broken' is installed but not enabled"):
        reg.resolve("broken")
    assert reg.names() == ["good"]


def test_enable_switch_turns_one_engine_off():
    reg = registry(ep("good", f"{MOD}:good"), settings=Settings(enable={"good": False}))
    assert entry(reg, "good").status == "disabled"


def test_installed_builtin_engines_are_found_through_entry_points():
    reg = EngineRegistry.from_entry_points()
    assert {"python", "demo"} <= set(reg.names())
    assert entry(reg, "demo").distribution == "quant-strategy-manager"
