"""Resolve a document's ``engine_class`` without letting a database row import anything.

A dotted path is imported only if its module lies inside one of the configured
``import_paths`` folders, or its module name starts with an allowed prefix (the
``engine_class_allow`` setting plus the prefixes an engine plugin vouches for).
Anything else is refused before any import happens.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from strategy_manager.core.errors import ClassRefused

_path_lock = threading.Lock()


def split_dotted(dotted: str) -> tuple[str, str]:
    """``pkg.mod.Class`` or ``pkg.mod:Class`` -> (``pkg.mod``, ``Class``)."""
    if ":" in dotted:
        module, _, attr = dotted.partition(":")
    else:
        module, _, attr = dotted.rpartition(".")
    if not module or not attr or not all(p.isidentifier() for p in [*module.split("."), *attr.split(".")]):
        raise ClassRefused(f"engine_class {dotted!r}: expected a dotted path such as 'package.module.Class'")
    return module, attr


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix.rstrip(".") + ".")


class ClassLoader:
    def __init__(self, import_paths: Sequence[str], allow: Iterable[str]) -> None:
        self.import_paths = [str(Path(p).resolve()) for p in import_paths]
        self.allow = tuple(p for p in allow if p)

    def with_prefixes(self, prefixes: Iterable[str]) -> ClassLoader:
        return ClassLoader(self.import_paths, (*self.allow, *prefixes))

    def check(self, dotted: str) -> tuple[str, str]:
        """Raise ClassRefused unless ``dotted`` may be imported; return (module, attr)."""
        module, attr = split_dotted(dotted)
        if any(_matches(module, prefix) for prefix in self.allow):
            return module, attr
        top = module.split(".")[0]
        if self.import_paths and importlib.machinery.PathFinder.find_spec(top, self.import_paths):
            return module, attr
        raise ClassRefused(
            f"engine_class {dotted!r} refused: module '{module}' is neither inside the import "
            f"paths {self.import_paths or '(none set)'} nor under an allowed prefix "
            f"{list(self.allow) or '(none set)'}; add it to import_paths or engine_class_allow"
        )

    def load(self, dotted: str) -> Any:
        module_name, attr = self.check(dotted)
        with _path_lock:
            for path in reversed(self.import_paths):
                if path not in sys.path:
                    sys.path.insert(0, path)
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ClassRefused(f"engine_class {dotted!r}: cannot import '{module_name}': {exc}") from exc
        target: Any = module
        for part in attr.split("."):
            try:
                target = getattr(target, part)
            except AttributeError:
                raise ClassRefused(
                    f"engine_class {dotted!r}: module '{module_name}' has no attribute '{part}'"
                ) from None
        return target
