"""Example strategy files that installed distributions ship, found by name.

A distribution lists its examples under the entry-point group
``quant_strategy_manager.examples``. The entry point names a mapping in one of its
packages, example name to a description::

    EXAMPLES = {
        "vnpy": {
            "file": "strategies.json",           # beside the mapping, in the same package
            "about": "one line for listings",
            "before": "a command to run first",  # optional: files the example reads
        },
    }

Each file is a JSON array of strategy documents (what ``strategies import`` reads).
Loading a mapping imports only the package that holds it, so listing examples stays
as cheap as listing engines. A broken entry is listed with its reason; the others
are unaffected.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from attrs import define

from strategy_manager.core.errors import QsmError

EXAMPLES_GROUP = "quant_strategy_manager.examples"


@define(frozen=True)
class Example:
    name: str
    distribution: str
    #: The package the file lies in, e.g. ``qsm_vnpy.examples``.
    package: str
    file: str
    about: str = ""
    before: str | None = None
    #: Why the example cannot be used; None when it can.
    error: str | None = None

    def path(self) -> Path:
        """The file on disk (installed packages are folders, never zip files here)."""
        return Path(str(resources.files(self.package).joinpath(self.file)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "file": str(self.path()) if self.error is None else None,
            "about": self.about,
            "before": self.before,
            "error": self.error,
        }


def _from_entry_point(ep: EntryPoint) -> list[Example]:
    distribution = ep.dist.name if ep.dist is not None else "?"
    try:
        mapping = ep.load()
        if not isinstance(mapping, Mapping):
            raise TypeError(f"{ep.value} is a {type(mapping).__name__}, not a mapping")
    except Exception as exc:  # a broken distribution must not hide the others
        return [Example(ep.name, distribution, ep.module, "", error=f"cannot load {ep.value}: {exc}")]
    found = []
    for name, info in mapping.items():
        example = Example(
            str(name),
            distribution,
            ep.module,
            str(info.get("file", "")),
            about=str(info.get("about", "")),
            before=info.get("before"),
        )
        if not example.file or not example.path().is_file():
            example = Example(
                example.name,
                distribution,
                ep.module,
                example.file,
                example.about,
                example.before,
                error=f"{ep.module}: no file {example.file!r}",
            )
        found.append(example)
    return found


def find_examples() -> list[Example]:
    """Every installed example, sorted by name; a name claimed twice is an error on both."""
    found: list[Example] = []
    for ep in entry_points(group=EXAMPLES_GROUP):
        found.extend(_from_entry_point(ep))
    by_name: dict[str, list[Example]] = {}
    for example in found:
        by_name.setdefault(example.name, []).append(example)
    result = []
    for _, same in sorted(by_name.items()):
        if len(same) > 1:
            owners = ", ".join(sorted(e.distribution for e in same))
            same = [
                Example(
                    e.name,
                    e.distribution,
                    e.package,
                    e.file,
                    e.about,
                    e.before,
                    error=f"example name claimed by {owners}",
                )
                for e in same
            ]
        result.extend(same)
    return result


def get_example(name: str) -> Example:
    """The usable example called ``name``; QsmError naming the installed ones otherwise."""
    examples = find_examples()
    for example in examples:
        if example.name == name:
            if example.error:
                raise QsmError(f"example {name}: {example.error}")
            return example
    known = ", ".join(e.name for e in examples if e.error is None) or "none"
    raise QsmError(f"example {name}: not installed (installed: {known})")


#: The adapter template's files, relative to its folder (what ``examples engine`` copies).
ENGINE_TEMPLATE = "qsm-example-engine"
_TEMPLATE_FILES = ("*.md", "*.toml", "src/qsm_example_engine/*.py", "tests/*.py")


def copy_engine_template(destination: Path) -> list[Path]:
    """Copy the example engine adapter (a complete distribution) into ``destination``,
    which must not exist yet; return the files written."""
    if destination.exists():
        raise QsmError(f"{destination}: already exists; name a new folder")
    source = Path(str(resources.files("strategy_manager.examples").joinpath(ENGINE_TEMPLATE)))
    files = sorted(f for pattern in _TEMPLATE_FILES for f in source.glob(pattern))
    written = []
    for f in files:
        target = destination / f.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.read_bytes())
        written.append(target)
    return written
