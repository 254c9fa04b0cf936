"""Every ```console block in docs/ runs, and prints what the page says it prints.

In a block, a line starting with ``$ `` is a command (run with bash in a fresh
folder holding a copy of examples/, one folder and one home per page, so a page's
commands build on each other); the lines up to the next command are its expected
output.
``...`` on a line of its own stands for any number of lines; inside a line, for any
text. Run with ``UPDATE_DOCS=1`` to write the actual output back into the page
(then put ``...`` where the output varies from run to run: times, pids, paths).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted(p for p in (ROOT / "docs").glob("*.md") if "```console" in p.read_text())
BLOCK = re.compile(r"^```console\n(.*?)^```$", re.S | re.M)


def commands(block: str) -> list[tuple[str, list[str]]]:
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def matches(expected: list[str], actual: list[str]) -> bool:
    if not expected:
        return not actual
    head, rest = expected[0], expected[1:]
    if head == "...":
        return any(matches(rest, actual[i:]) for i in range(len(actual) + 1))
    if not actual:
        return False
    pattern = ".*".join(re.escape(part) for part in head.split("..."))
    return re.fullmatch(pattern, actual[0]) is not None and matches(rest, actual[1:])


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_console_blocks_run_as_shown(page: Path, tmp_path: Path, monkeypatch) -> None:
    text = page.read_text()
    blocks = BLOCK.findall(text)
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QSM_", "MONGO_", "ENABLE_", "XDG_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["COLUMNS"] = "100"
    # A home of its own: outside a project folder the store goes in the user data directory.
    env["HOME"] = str(tmp_path / "home")
    env["TZ"] = "UTC"  # the local zone of the times shown
    failures, updated = [], text
    for block in blocks:
        new_block = block
        for command, expected in commands(block):
            run = subprocess.run(
                ["bash", "-c", command],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            actual = (run.stdout + run.stderr).rstrip("\n").splitlines()
            if not matches(expected, actual):
                failures.append(
                    f"$ {command}\n--- expected\n"
                    + "\n".join(expected)
                    + "\n--- actual\n"
                    + "\n".join(actual)
                )
                old = "\n".join([f"$ {command}", *expected])
                new_block = new_block.replace(old, "\n".join([f"$ {command}", *actual]), 1)
        updated = updated.replace(block, new_block, 1)
    if failures and os.environ.get("UPDATE_DOCS"):
        page.write_text(updated)
    assert not failures, f"{page.name}:\n\n" + "\n\n".join(failures)


def test_configuration_page_documents_every_setting_with_its_variable_and_default() -> None:
    import json

    import attrs

    from strategy_manager.core.settings import Settings

    page = (ROOT / "docs" / "configuration.md").read_text()
    for f in attrs.fields(Settings):
        default = f.default.factory() if isinstance(f.default, attrs.Factory) else f.default
        default = list(default) if isinstance(default, tuple) else default
        env = f.metadata["env"] or "ENABLE_<ENGINE>"
        row = f"| `{f.name}` | `{env}` | `{json.dumps(default, ensure_ascii=False)}` |"
        assert row in page, f"docs/configuration.md lacks the row for {f.name}: {row}"


def _contract(text: str) -> str:
    """The five numbered rules after the contract's heading, with markup and wrapping removed."""
    start = text.index("1. Every hook is called")
    end = text.index("5.", start)
    end = text.index("\n\n", end)
    return " ".join(text[start:end].replace("``", "`").split())


def test_the_stop_and_thread_contract_reads_the_same_in_the_hookspecs_and_the_guide() -> None:
    from strategy_manager.core import hookspecs

    guide = (ROOT / "docs" / "writing-an-adapter.md").read_text()
    assert _contract(hookspecs.__doc__ or "") == _contract(guide)


def test_the_guide_references_every_field_of_the_spec_and_everything_public_of_the_context() -> None:
    import attrs

    from strategy_manager.core.context import EngineContext
    from strategy_manager.core.spec import StrategySpec

    guide = (ROOT / "docs" / "writing-an-adapter.md").read_text()
    spec_table = guide[guide.index("### `StrategySpec`") : guide.index("### `qsm_engine_info()`")]
    for f in attrs.fields(StrategySpec):
        assert f"`{f.name}`" in spec_table, f"the StrategySpec reference lacks {f.name}"
    context_table = guide[guide.index("### `EngineContext`") : guide.index("### `StrategySpec`")]
    # what the core sets up for itself, not for adapters
    internal = {"classes", "on_crash", "on_finish", "threads", "fence", "data_dir", "join_threads"}
    public = {n for n in dir(EngineContext) if not n.startswith("_")} | {
        f.name for f in attrs.fields(EngineContext)
    }
    for name in sorted(public - internal):
        assert f"`{name}" in context_table, f"the EngineContext reference lacks {name}"
