"""Resolve a class named by a strategy document without letting the document choose code.

A document names classes (``engine_class``, a feed or a sizer, a gateway) as
``package.module.Class`` or ``package.module:Class``. The name resolves only if all
of these hold, checked in this order:

1. It is one module path and ONE attribute name: no walking through attributes
   (``backtrader.feeds:bt.os.system`` is refused as written).
2. Before anything is imported, the module is admitted by one of

   * a prefix of the operator's ``engine_class_allow`` setting, or one the adapter
     vouches for at this call (``trusted``), matched on whole dotted parts;
   * an ``import_paths`` folder: the module the import system would load for that
     name has its file inside the folder. A folder that merely shares a name with an
     installed package (an empty ``json/``) admits nothing.

3. The attribute is a class DEFINED in an admitted module: its ``__module__`` is under
   an admitted prefix or is a module whose file lies in an import path. A re-export
   (``subprocess.Popen`` imported into an allowed module) is refused.
4. The class is a subclass of the ``kind`` the adapter expects, checked before the
   adapter calls it.

Each refusal is a :class:`ClassRefused` in one line naming the field, the name and
the rule.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from strategy_manager.core.errors import ClassRefused

T = TypeVar("T")

MAX_DOTTED = 300

_path_lock = threading.Lock()


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def split_dotted(dotted: Any, what: str = "engine_class") -> tuple[str, str]:
    """``pkg.mod.Class`` or ``pkg.mod:Class`` -> (``pkg.mod``, ``Class``)."""
    if not isinstance(dotted, str) or len(dotted) > MAX_DOTTED:
        raise ClassRefused(f"{what}: expected a dotted path such as 'package.module.Class'")
    if ":" in dotted:
        module, _, attr = dotted.partition(":")
    else:
        module, _, attr = dotted.rpartition(".")
    parts = module.split(".")
    if not module or not all(p.isidentifier() for p in parts) or not attr.isidentifier():
        raise ClassRefused(
            f"{what} {_shown(dotted)}: expected a dotted path such as 'package.module.Class' "
            "(one module and one class name)"
        )
    if attr.startswith("__"):
        raise ClassRefused(f"{what} {_shown(dotted)}: '{attr}' is not a class name")
    return module, attr


def _matches(module: str, prefix: str) -> bool:
    prefix = prefix.rstrip(".")
    return module == prefix or module.startswith(prefix + ".")


def _under(path: str | None, folder: Path) -> bool:
    if not path:
        return False
    try:
        return Path(path).resolve().is_relative_to(folder)
    except (OSError, ValueError):
        return False


def _module_file(module: ModuleType) -> str | None:
    """The file a loaded module's code came from; None for built-in and namespace modules."""
    spec = getattr(module, "__spec__", None)
    origin = getattr(spec, "origin", None) or getattr(module, "__file__", None)
    return origin if origin and origin not in ("built-in", "frozen", "namespace") else None


class ClassLoader:
    """The operator's rules (``import_paths``, ``engine_class_allow``) for one process."""

    def __init__(self, import_paths: Sequence[str], allow: Iterable[str]) -> None:
        self.import_paths = [Path(p).resolve() for p in import_paths]
        self.allow = tuple(p for p in allow if p)

    # -- admission before import ------------------------------------------------------
    def _folder_of(self, module_name: str) -> Path | None:
        """The import path folder the import system would load ``module_name`` from, if any."""
        files = self._would_run(module_name)
        if not files:
            return None
        for folder in self.import_paths:
            if all(_under(f, folder) for f in files):
                return folder
        return None

    def _would_run(self, module_name: str) -> list[str]:
        """The files importing ``module_name`` would run (package ``__init__`` files and
        the module's own), found as the import system finds them with the import paths
        first; empty when it cannot be found, is built in, or is a namespace package."""
        parts = module_name.split(".")
        files: list[str] = []
        search: list[str] = [*map(str, self.import_paths), *sys.path]
        for depth in range(1, len(parts) + 1):
            name = ".".join(parts[:depth])
            loaded = sys.modules.get(name)
            if loaded is not None:
                spec = getattr(loaded, "__spec__", None)
                origin = getattr(spec, "origin", None) or getattr(loaded, "__file__", None)
                search = [str(p) for p in getattr(loaded, "__path__", None) or []]
            else:
                if depth == 1 and (
                    importlib.machinery.BuiltinImporter.find_spec(name) is not None
                    or importlib.machinery.FrozenImporter.find_spec(name) is not None
                ):
                    return []
                spec = importlib.machinery.PathFinder.find_spec(parts[depth - 1], search)
                if spec is None:
                    return []
                origin = spec.origin
                search = [str(p) for p in spec.submodule_search_locations or []]
            if origin in ("built-in", "frozen"):
                return []
            if origin and origin != "namespace":
                files.append(origin)
            elif depth == len(parts):
                return []  # a namespace package holds no classes
        return files

    def admitted_by(self, module_name: str, trusted: Iterable[str] = ()) -> str | Path | None:
        """The prefix or import path folder that admits ``module_name``, or None."""
        for prefix in (*self.allow, *trusted):
            if prefix and _matches(module_name, prefix):
                return prefix
        return self._folder_of(module_name)

    def admits(self, dotted: str, trusted: Iterable[str] = ()) -> bool:
        """Whether ``dotted`` is well formed and its module admitted; imports nothing."""
        try:
            module, _ = split_dotted(dotted)
        except ClassRefused:
            return False
        return self.admitted_by(module, trusted) is not None

    def check(self, dotted: str, trusted: Iterable[str] = (), what: str = "engine_class") -> tuple[str, str]:
        """Raise ClassRefused unless ``dotted``'s module may be imported; return (module, attr)."""
        module, attr = split_dotted(dotted, what)
        trusted = tuple(trusted)
        if self.admitted_by(module, trusted) is None:
            prefixes = [*self.allow, *trusted]
            raise ClassRefused(
                f"{what} {_shown(dotted)} refused: module '{module}' is neither inside the import "
                f"paths {[str(p) for p in self.import_paths] or '(none set)'} nor under an allowed "
                f"prefix {prefixes or '(none set)'}; add it to import_paths or engine_class_allow"
            )
        return module, attr

    # -- loading ------------------------------------------------------------------------
    def load(
        self, dotted: str, kind: type[T], trusted: Iterable[str] = (), what: str = "engine_class"
    ) -> type[T]:
        """The class ``dotted`` names, a subclass of ``kind``, under the rules above.

        ``trusted`` are module prefixes the calling adapter vouches for, for classes of
        this ``kind`` only; ``what`` names the document field in errors.
        """
        if not isinstance(kind, type):
            raise TypeError(f"kind must be a class, got {kind!r}")
        trusted = tuple(trusted)
        module_name, attr = self.check(dotted, trusted, what)
        shown = _shown(dotted)
        source = self.admitted_by(module_name, trusted)
        if isinstance(source, Path):
            with _path_lock:
                for path in reversed(self.import_paths):
                    if str(path) not in sys.path:
                        sys.path.insert(0, str(path))
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            reason = " ".join(str(exc).split())[:200]
            raise ClassRefused(f"{what} {shown}: cannot import '{module_name}': {reason}") from None
        if isinstance(source, Path) and not _under(_module_file(module), source):
            raise ClassRefused(f"{what} {shown} refused: module '{module_name}' was not loaded from {source}")
        target = vars(module).get(attr)
        if target is None:
            raise ClassRefused(f"{what} {shown}: module '{module_name}' has no attribute '{attr}'")
        if not isinstance(target, type):
            raise ClassRefused(f"{what} {shown} refused: '{attr}' is a {type(target).__name__}, not a class")
        defined_in = getattr(target, "__module__", None)
        if not isinstance(defined_in, str) or not self._defines(defined_in, trusted):
            raise ClassRefused(
                f"{what} {shown} refused: '{attr}' is defined in module '{defined_in}', outside the "
                "allowed modules (a class imported into an allowed module is not enough)"
            )
        if not issubclass(target, kind):
            raise ClassRefused(
                f"{what} {shown} refused: '{attr}' is not a subclass of {kind.__module__}.{kind.__qualname__}"
            )
        return target

    def _defines(self, module_name: str, trusted: tuple[str, ...]) -> bool:
        """Whether a class whose ``__module__`` is ``module_name`` comes from admitted code."""
        if any(p and _matches(module_name, p) for p in (*self.allow, *trusted)):
            return True
        module = sys.modules.get(module_name)
        if module is None:
            return False
        return any(_under(_module_file(module), folder) for folder in self.import_paths)
