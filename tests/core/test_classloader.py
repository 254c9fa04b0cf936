from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from strategy_manager.core.classloader import ClassLoader
from strategy_manager.core.errors import ClassRefused


def test_a_class_outside_import_paths_and_allow_list_is_refused_before_import(tmp_path):
    loader = ClassLoader([str(tmp_path)], ["mypkg"])
    sys.modules.pop("wave", None)
    with pytest.raises(ClassRefused, match=r"engine_class 'wave\.open' refused: module 'wave' is neither"):
        loader.load("wave.open", kind=object)
    assert "wave" not in sys.modules


def test_allow_list_prefixes_match_whole_module_names():
    loader = ClassLoader([], ["json"])
    assert loader.load("json.JSONDecoder", kind=object).__name__ == "JSONDecoder"
    with pytest.raises(ClassRefused):
        ClassLoader([], ["js"]).load("json.JSONDecoder", kind=object)


def test_a_module_inside_an_import_path_loads(tmp_path):
    pkg = tmp_path / "scripts_qsm_test"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "engines.py").write_text("class RealTime:\n    pass\n")
    loader = ClassLoader([str(tmp_path)], [])
    assert loader.load("scripts_qsm_test.engines.RealTime", kind=object).__name__ == "RealTime"
    with pytest.raises(ClassRefused, match="has no attribute 'Nope'"):
        loader.load("scripts_qsm_test.engines.Nope", kind=object)


def test_a_namespace_package_inside_an_import_path_loads(tmp_path):
    """The seed's layout: ``scripts/`` without ``__init__.py`` in the project folder."""
    (tmp_path / "scripts_qsm_ns").mkdir()
    (tmp_path / "scripts_qsm_ns" / "dragon.py").write_text("class Engine:\n    pass\n")
    loaded = ClassLoader([str(tmp_path)], []).load("scripts_qsm_ns.dragon.Engine", kind=object)
    assert loaded.__module__ == "scripts_qsm_ns.dragon"


@pytest.mark.parametrize("bad", ["", "NoModule", "a..b", "os.system; rm", "1x.Y", "a.b:", 5, None, "x" * 400])
def test_malformed_paths_are_refused(bad):
    with pytest.raises(ClassRefused, match="expected a dotted path"):
        ClassLoader([], ["os"]).check(bad)


@pytest.mark.parametrize(
    "dotted",
    [
        "backtrader.feeds:bt.os.system",  # the reported exploit: walking from an allowed module
        "json:decoder.JSONDecoder",
        "json:JSONDecoder.__init__",
    ],
)
def test_walking_through_attributes_is_refused_as_written(dotted):
    with pytest.raises(ClassRefused, match="one module and one class name"):
        ClassLoader([], ["json", "backtrader"]).check(dotted)


def test_dunder_names_are_not_class_names():
    with pytest.raises(ClassRefused, match="'__class__' is not a class name"):
        ClassLoader([], ["json"]).load("json:__class__", kind=object)


@pytest.fixture
def reexporting(tmp_path, monkeypatch):
    """An allowed user module that imports other modules' objects."""
    pkg = tmp_path / "qsm_reexport_pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "own.py").write_text("class Base:\n    pass\n")
    (pkg / "mod.py").write_text(
        textwrap.dedent("""
            import os
            from subprocess import Popen
            from json import JSONDecoder
            from qsm_reexport_pkg.own import Base

            class Mine(Base):
                pass

            def factory():
                return Mine()

            instance = Mine()
        """)
    )
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("qsm_reexport_pkg")]:
        del sys.modules[name]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("Popen", "'Popen' is defined in module 'subprocess', outside the allowed modules"),
        ("JSONDecoder", "'JSONDecoder' is defined in module 'json.decoder', outside the allowed modules"),
        ("os", "'os' is a module, not a class"),
        ("factory", "'factory' is a function, not a class"),
        ("instance", "'instance' is a Mine, not a class"),
    ],
)
def test_only_classes_defined_in_admitted_code_load(reexporting, name, message):
    loader = ClassLoader([str(reexporting)], [])
    with pytest.raises(ClassRefused, match=message):
        loader.load(f"qsm_reexport_pkg.mod:{name}", kind=object)
    # a class defined in another module of the same import path is the user's own code
    assert loader.load("qsm_reexport_pkg.mod:Base", kind=object).__module__ == "qsm_reexport_pkg.own"
    assert loader.load("qsm_reexport_pkg.mod:Mine", kind=object).__name__ == "Mine"


def test_the_same_rule_holds_for_allowed_prefixes(reexporting):
    sys.path.insert(0, str(reexporting))
    try:
        loader = ClassLoader([], ["qsm_reexport_pkg.mod"])
        with pytest.raises(ClassRefused, match=r"defined in module 'qsm_reexport_pkg\.own'"):
            loader.load("qsm_reexport_pkg.mod:Base", kind=object)
        assert loader.load("qsm_reexport_pkg.mod:Mine", kind=object).__name__ == "Mine"
    finally:
        sys.path.remove(str(reexporting))


def test_the_kind_is_checked_before_the_class_is_used(tmp_path):
    marker = tmp_path / "constructed"
    (tmp_path / "qsm_kind_mod.py").write_text(
        f"class Wrong:\n    def __init__(self, *a, **k):\n        open({str(marker)!r}, 'w').close()\n"
    )
    loader = ClassLoader([str(tmp_path)], [])
    with pytest.raises(ClassRefused, match=r"'Wrong' is not a subclass of json\.decoder\.JSONDecoder"):
        loader.load("qsm_kind_mod.Wrong", kind=json.JSONDecoder)
    assert not marker.exists()


def test_trusted_prefixes_apply_to_the_one_call():
    loader = ClassLoader([], [])
    assert loader.load("json.JSONDecoder", kind=json.JSONDecoder, trusted=["json"]) is json.JSONDecoder
    with pytest.raises(ClassRefused, match="refused"):
        loader.load("json.JSONDecoder", kind=object)


def test_errors_name_the_field_they_came_from():
    with pytest.raises(ClassRefused, match=r"^params\.backtrader\.feed\.factory 'os:system' refused"):
        ClassLoader([], []).load("os:system", kind=object, what="params.backtrader.feed.factory")


# -- import paths admit what lies in them, not what shares a name with it -----------------
COLLISION = textwrap.dedent("""
    import json, sys
    from strategy_manager.core.classloader import ClassLoader
    from strategy_manager.core.errors import ClassRefused

    loader = ClassLoader([sys.argv[1]], [])
    results = {}
    for dotted in sys.argv[2:]:
        try:
            loader.load(dotted, kind=object)
            results[dotted] = "loaded"
        except ClassRefused as exc:
            results[dotted] = str(exc)
    top = {d.split(".")[0] for d in sys.argv[2:]}
    print(json.dumps({"results": results, "imported": sorted(t for t in top if t in sys.modules)}))
""")


def test_a_folder_named_like_an_installed_package_admits_nothing(tmp_path):
    """An empty ``json``, ``wave`` or ``backtrader`` folder in an import path, and a
    namespace folder shadowing a real package that lies outside: none is admitted, and
    (checked in a fresh process) none of those packages is imported."""
    paths = tmp_path / "paths"
    for name in ("json", "wave", "backtrader", "qsm_outside_pkg"):
        (paths / name).mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "qsm_outside_pkg").mkdir(parents=True)
    marker = tmp_path / "imported-outside"
    (outside / "qsm_outside_pkg" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Thing:\n    pass\n"
    )
    names = ["wave.Wave_read", "backtrader.Strategy", "qsm_outside_pkg.Thing", "json.JSONDecoder"]
    result = subprocess.run(
        [sys.executable, "-c", COLLISION, str(paths), *names],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(outside), "PATH": ""},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name in names:
        assert "refused" in report["results"][name], (name, report)
    assert report["imported"] == ["json"]  # json was imported by the script itself
    assert not marker.exists()


def test_a_module_already_imported_from_elsewhere_is_not_admitted_by_a_same_named_file(tmp_path):
    (tmp_path / "json.py").write_text("class JSONDecoder:\n    pass\n")
    with pytest.raises(ClassRefused, match="neither inside the import paths"):
        ClassLoader([str(tmp_path)], []).load("json.JSONDecoder", kind=object)


# -- whatever a document names, only admitted classes of the expected kind load -------------
@pytest.fixture(scope="module")
def hostile_paths(tmp_path_factory):
    """An import path with a user module that imports dangerous things, a shadowing
    folder, and outside it a module that would leave a marker if it were ever imported."""
    root = tmp_path_factory.mktemp("hostile_names")
    imports, outside = root / "imports", root / "outside"
    (imports / "qsm_prop_user").mkdir(parents=True)
    (imports / "qsm_prop_evil").mkdir()  # a namespace folder shadowing the outside module
    outside.mkdir()
    marker = root / "marker"
    (imports / "qsm_prop_user" / "__init__.py").write_text("")
    (imports / "qsm_prop_user" / "mod.py").write_text(
        "import os, subprocess\nfrom subprocess import Popen\nfrom json import JSONDecoder\n"
        "class Own(JSONDecoder):\n    pass\n"
    )
    (outside / "qsm_prop_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\nclass Evil:\n    pass\n")
    sys.path.append(str(outside))
    yield imports, marker
    sys.path.remove(str(outside))


NAMES_MODULES = ["os", "subprocess", "builtins", "json", "json.decoder", "wave", "qsm_prop_evil",
                 "qsm_prop_user", "qsm_prop_user.mod", "importlib"]  # fmt: skip
NAMES_ATTRS = ["system", "Popen", "os", "subprocess", "JSONDecoder", "Own", "Evil", "open", "__class__",
               "import_module", "decoder", "loads"]  # fmt: skip


@given(
    module=st.sampled_from(NAMES_MODULES),
    walk=st.lists(st.sampled_from(NAMES_ATTRS), max_size=2),
    attr=st.sampled_from(NAMES_ATTRS),
    sep=st.sampled_from([".", ":"]),
    kind=st.sampled_from([object, json.JSONDecoder, subprocess.Popen]),
)
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whatever_a_name_says_only_an_admitted_class_of_the_kind_loads(
    hostile_paths, module, walk, attr, sep, kind
):
    imports, marker = hostile_paths
    dotted = module + sep + ".".join([*walk, attr])
    loader = ClassLoader([str(imports)], ["json"])
    try:
        loaded = loader.load(dotted, kind=kind)
    except ClassRefused as exc:
        assert "\n" not in str(exc)
    else:
        assert isinstance(loaded, type) and issubclass(loaded, kind)
        assert loaded.__module__.split(".")[0] in ("json", "qsm_prop_user"), (dotted, loaded)
    assert not marker.exists()
    assert "qsm_prop_evil" not in sys.modules and "wave" not in sys.modules
