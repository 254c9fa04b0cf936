"""What each distribution declares: license text, classifiers, URLs, authors, the
adapters' range on the core, and the extras a user installs."""

from __future__ import annotations

import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import ROOT

PROJECTS = {
    "quant-strategy-manager": ROOT,
    "qsm-backtrader": ROOT / "qsm_backtrader",
    "qsm-vnpy": ROOT / "qsm_vnpy",
}


def project(folder):
    return tomllib.loads((folder / "pyproject.toml").read_text())["project"]


CORE_VERSION = Version(project(ROOT)["version"])


@pytest.mark.parametrize("name", PROJECTS)
def test_each_distribution_carries_the_license_text_and_its_metadata(name):
    folder = PROJECTS[name]
    meta = project(folder)
    assert meta["name"] == name
    assert meta["license"] == "MIT"
    assert meta["license-files"] == ["LICENSE"]
    assert (folder / "LICENSE").read_text() == (ROOT / "LICENSE").read_text()
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    assert meta["authors"], name
    assert "Typing :: Typed" in meta["classifiers"]
    assert f"Programming Language :: Python :: {meta['requires-python'].removeprefix('>=')}" in (
        meta["classifiers"]
    )
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(meta["urls"])


@pytest.mark.parametrize("name", ["qsm-backtrader", "qsm-vnpy"])
def test_adapters_accept_this_core_and_not_the_next_minor(name):
    (core,) = [
        Requirement(r) for r in project(PROJECTS[name])["dependencies"] if r.startswith("quant-strategy")
    ]
    assert CORE_VERSION in core.specifier
    assert Version(f"{CORE_VERSION.major}.{CORE_VERSION.minor + 1}.0") not in core.specifier


def test_the_core_extras_name_the_adapters_with_their_version_and_a_testing_extra():
    extras = project(ROOT)["optional-dependencies"]
    for extra, names in (("vnpy", {"qsm-vnpy"}), ("backtrader", {"qsm-backtrader"}), ("all", {"qsm-vnpy", "qsm-backtrader"})):
        requirements = [Requirement(r) for r in extras[extra] if Requirement(r).name != "quant-strategy-manager"]
        assert {r.name for r in requirements} == names
        for r in requirements:
            adapter = project(PROJECTS[r.name])
            assert Version(adapter["version"]) in r.specifier
    assert [Requirement(r).name for r in extras["testing"]] == ["pytest"]


def test_the_web_extra_is_part_of_all_and_names_its_http_stack():
    extras = project(ROOT)["optional-dependencies"]
    assert {Requirement(r).name for r in extras["web"]} == {"starlette", "uvicorn", "prometheus-client"}
    selves = [Requirement(r) for r in extras["all"] if Requirement(r).name == "quant-strategy-manager"]
    assert [r.extras for r in selves] == [{"web"}]


@pytest.mark.parametrize("package", ["strategy_manager", "qsm_backtrader/src/qsm_backtrader", "qsm_vnpy/src/qsm_vnpy"])
def test_every_package_is_marked_typed(package):
    assert (ROOT / package / "py.typed").is_file()


README_URL = "https://github.com/quant-strategy-manager/quant-strategy-manager/"


@pytest.mark.parametrize("name", PROJECTS)
def test_readme_links_work_on_a_package_index_page(name):
    """A package index shows the README alone: every link is absolute, and those into
    the repository name a file or folder that exists."""
    import re

    readme = PROJECTS[name] / project(PROJECTS[name])["readme"]
    targets = re.findall(r"\]\(([^)\s]+)\)", readme.read_text())
    for target in targets:
        assert target.startswith("https://"), f"{readme.name}: relative link {target!r}"
        if target.startswith(README_URL):
            kind, branch, path = target.removeprefix(README_URL).split("/", 2)
            assert (kind, branch) in (("blob", "main"), ("tree", "main")), target
            assert (ROOT / path).exists(), f"{readme.name}: {target} names no file in the repository"
    for url in project(PROJECTS[name])["urls"].values():
        assert url.startswith(README_URL.rstrip("/"))


def test_the_readme_install_commands_are_the_ones_ci_runs():
    readme, ci = (ROOT / "README.md").read_text(), (ROOT / ".ci" / "wheels").read_text()
    for command in ('pip install ".[all]" ./qsm_backtrader ./qsm_vnpy', 'pip install --find-links dist "quant-strategy-manager[all]"'):
        assert command in readme
    assert 'pip install --quiet --dry-run ".[all]" ./qsm_backtrader ./qsm_vnpy' in ci
    assert '--find-links "$repo/dist" "quant-strategy-manager[all]==$version"' in ci
    assert ".ci/wheels" in (ROOT / ".ci" / "run").read_text()
