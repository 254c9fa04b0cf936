"""Find engine plugins through entry points, check them, and resolve engine names.

Every plugin, built-in or third-party, comes from the entry-point group
``quant_strategy_manager.engines``; the entry point's name is the engine name. The
registry never lets one plugin's problem hide another: a plugin that fails to
import, breaks the hook contract or shares its name with another distribution is
recorded with the reason, and everything else keeps working.
"""

from __future__ import annotations

import inspect
import time
from collections import defaultdict
from collections.abc import Iterable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal

import pluggy
from attrs import define, field

from strategy_manager.core import hookspecs
from strategy_manager.core.errors import (
    EngineConflict,
    EngineNotFound,
    EngineUnavailable,
)
from strategy_manager.core.settings import Settings
from strategy_manager.core.telemetry import NO_TELEMETRY, Telemetry

Status = Literal["ok", "disabled", "broken", "conflict"]

REQUIRED_HOOKS = ("qsm_engine_info", "qsm_create_engine", "qsm_start_engine", "qsm_stop_engine")
CAPABILITY_HOOKS = {
    "snapshot": ("qsm_snapshot_engine",),
    "restore": ("qsm_restore_engine",),
    "sessions": ("qsm_open_session", "qsm_close_session"),
}
_SPEC_NAMES = {name for name in dir(hookspecs) if name.startswith("qsm_")}


@define
class EnginePlugin:
    """One installed engine, as ``strategy-manager engines`` reports it."""

    name: str
    module: str
    distribution: str | None = None
    dist_version: str | None = None
    status: Status = "ok"
    error: str | None = None
    version: str | None = None
    description: str = ""
    capabilities: list[str] = field(factory=list)
    hooks: list[str] = field(factory=list)
    #: Places in the engine's ``engine_options`` section that hold secrets (paths of keys).
    secret_options: list[list[str]] = field(factory=list)
    plugin: Any = field(default=None, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "error": self.error,
            "distribution": self.distribution,
            "distribution_version": self.dist_version,
            "module": self.module,
            "version": self.version,
            "description": self.description,
            "capabilities": self.capabilities,
            "hooks": self.hooks,
        }


class EngineHooks:
    """The hooks of one engine, callable without touching any other plugin."""

    def __init__(
        self, pm: pluggy.PluginManager, entry: EnginePlugin, telemetry: Telemetry = NO_TELEMETRY
    ) -> None:
        self.entry = entry
        others = [p for p in pm.get_plugins() if p is not entry.plugin]
        self._pm = pm
        self._others = others
        self._callers: dict[str, Any] = {}
        #: Told how long each lifecycle hook took (see :mod:`~strategy_manager.core.telemetry`).
        self.telemetry = telemetry

    @property
    def name(self) -> str:
        return self.entry.name

    def _call(self, hook: str, **kwargs: Any) -> Any:
        caller = self._callers.get(hook)
        if caller is None:
            caller = self._pm.subset_hook_caller(hook, remove_plugins=self._others)
            self._callers[hook] = caller
        return caller(**kwargs)

    def has(self, capability: str) -> bool:
        return capability in self.entry.capabilities

    def validate(self, spec: Any, context: Any) -> None:
        """``qsm_validate_engine`` if the plugin implements it; nothing otherwise."""
        if "qsm_validate_engine" in self.entry.hooks:
            self._call("qsm_validate_engine", spec=spec, context=context)

    def _timed(self, name: str, hook: str, **kwargs: Any) -> Any:
        """A lifecycle hook, its duration and outcome told to the telemetry."""
        started = time.perf_counter()
        ok = False
        try:
            result = self._call(hook, **kwargs)
            ok = True
            return result
        finally:
            self.telemetry.hook_called(self.entry.name, name, time.perf_counter() - started, ok)

    def create(self, spec: Any, context: Any) -> Any:
        return self._timed("create", "qsm_create_engine", spec=spec, context=context)

    def restore(self, engine: Any, snapshot: dict[str, Any], context: Any) -> None:
        self._timed("restore", "qsm_restore_engine", engine=engine, snapshot=snapshot, context=context)

    def start(self, engine: Any, context: Any) -> None:
        self._timed("start", "qsm_start_engine", engine=engine, context=context)

    def stop(self, engine: Any, context: Any) -> None:
        self._timed("stop", "qsm_stop_engine", engine=engine, context=context)

    def snapshot(self, engine: Any, context: Any) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._timed(
            "snapshot", "qsm_snapshot_engine", engine=engine, context=context
        )
        return result

    @property
    def updates_params(self) -> bool:
        """The engine takes changed params in place (``qsm_update_params``)."""
        return "qsm_update_params" in self.entry.hooks

    def update_params(self, engine: Any, spec: Any, context: Any) -> bool | None:
        result: bool | None = self._timed(
            "update_params", "qsm_update_params", engine=engine, spec=spec, context=context
        )
        return result

    # -- accounts (optional hooks) ---------------------------------------------------
    @property
    def has_sessions(self) -> bool:
        """The engine opens shared sessions (capability ``sessions``)."""
        return self.has("sessions")

    @property
    def derives_accounts(self) -> bool:
        return "qsm_session_account" in self.entry.hooks

    def session_account(self, spec: Any, context: Any) -> Any:
        """``qsm_session_account`` if implemented; None otherwise."""
        if not self.derives_accounts:
            return None
        return self._call("qsm_session_account", spec=spec, context=context)

    def open_session(self, account: Any, context: Any) -> Any:
        return self._timed("open_session", "qsm_open_session", account=account, context=context)

    def close_session(self, session: Any, account: Any, context: Any) -> None:
        self._timed("close_session", "qsm_close_session", session=session, account=account, context=context)

    def snapshot_positions(self, snapshot: dict[str, Any], spec: Any) -> dict[str, float] | None:
        """``qsm_snapshot_positions`` if implemented; None otherwise."""
        if "qsm_snapshot_positions" not in self.entry.hooks:
            return None
        result: dict[str, float] | None = self._call("qsm_snapshot_positions", snapshot=snapshot, spec=spec)
        return result


class EngineRegistry:
    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._entries: dict[str, list[EnginePlugin]] = defaultdict(list)
        self._hooks: dict[str, EngineHooks] = {}
        self._telemetry: Telemetry = NO_TELEMETRY

    @property
    def telemetry(self) -> Telemetry:
        """Told how long every engine's lifecycle hooks take (default: nobody)."""
        return self._telemetry

    @telemetry.setter
    def telemetry(self, telemetry: Telemetry) -> None:
        self._telemetry = telemetry
        for hooks in self._hooks.values():
            hooks.telemetry = telemetry

    @classmethod
    def from_entry_points(
        cls, settings: Settings | None = None, group: str = hookspecs.ENTRY_POINT_GROUP
    ) -> EngineRegistry:
        registry = cls(settings)
        registry.load_entry_points(entry_points(group=group))
        return registry

    # -- loading --------------------------------------------------------------
    def load_entry_points(self, eps: Iterable[EntryPoint]) -> None:
        by_name: dict[str, list[EntryPoint]] = defaultdict(list)
        for ep in eps:
            seen = {(_dist_name(e), e.value) for e in by_name[ep.name]}
            if (_dist_name(ep), ep.value) not in seen:  # the same dist found twice on sys.path
                by_name[ep.name].append(ep)
        for name, group in by_name.items():
            if len(group) > 1:
                claimants = ", ".join(sorted(f"{_dist_name(e)} ({e.value})" for e in group))
                for ep in group:
                    self._entries[name].append(
                        _entry_for(
                            ep,
                            status="conflict",
                            error=f"engine name '{name}' is claimed by {claimants}",
                        )
                    )
                continue
            ep = group[0]
            if not self.settings.engine_enabled(name):
                self._entries[name].append(
                    _entry_for(ep, status="disabled", error="not enabled by configuration")
                )
                continue
            entry = _entry_for(ep)
            try:
                plugin = ep.load()
            except Exception as exc:
                entry.status, entry.error = "broken", f"import failed: {_describe(exc)}"
            else:
                self._register(entry, plugin)
            self._entries[name].append(entry)
        self._hooks.clear()

    def add_plugin(self, name: str, plugin: Any, distribution: str = "(in-process)") -> EnginePlugin:
        """Register a plugin object directly, as entry points do (embedding, tests)."""
        module = getattr(plugin, "__name__", type(plugin).__name__)
        entry = EnginePlugin(name=name, module=module, distribution=distribution)
        if self._entries.get(name):
            other = self._entries[name][0]
            entry.status = "conflict"
            entry.error = f"engine name '{name}' is claimed by {other.distribution} and {distribution}"
        elif not self.settings.engine_enabled(name):
            entry.status, entry.error = "disabled", "not enabled by configuration"
        else:
            self._register(entry, plugin)
        self._entries[name].append(entry)
        self._hooks.clear()
        return entry

    def _register(self, entry: EnginePlugin, plugin: Any) -> None:
        problems = _unmarked_hooks(plugin)
        try:
            self.pm.register(plugin, name=f"engine:{entry.name}")
        except (pluggy.PluginValidationError, ValueError) as exc:
            entry.status, entry.error = "broken", _describe(exc)
            return
        entry.plugin = plugin
        callers = self.pm.get_hookcallers(plugin) or []
        entry.hooks = sorted(c.name for c in callers)
        unknown = [c.name for c in callers if c.spec is None]
        if unknown:
            problems.append(f"unknown hooks {unknown} (misspelled?)")
        missing = [h for h in REQUIRED_HOOKS if h not in entry.hooks]
        if missing:
            problems.append(f"missing required hooks {missing}")
        if not problems:
            problems.extend(self._read_info(entry))
        if problems:
            self.pm.unregister(plugin)
            entry.plugin = None
            entry.status, entry.error = "broken", "; ".join(problems)

    def _read_info(self, entry: EnginePlugin) -> list[str]:
        caller = self.pm.subset_hook_caller(
            "qsm_engine_info", [p for p in self.pm.get_plugins() if p is not entry.plugin]
        )
        try:
            info = caller()
        except Exception as exc:
            return [f"qsm_engine_info raised {_describe(exc)}"]
        if not isinstance(info, dict):
            return [f"qsm_engine_info returned {type(info).__name__}, expected a dict"]
        problems = []
        if info.get("name") != entry.name:
            problems.append(
                f"qsm_engine_info names engine {info.get('name')!r} but its entry point is {entry.name!r}"
            )
        if not isinstance(info.get("version"), str):
            problems.append("qsm_engine_info has no 'version' string")
        capabilities = info.get("capabilities", [])
        if not isinstance(capabilities, list) or not all(isinstance(c, str) for c in capabilities):
            problems.append("qsm_engine_info 'capabilities' must be a list of strings")
            capabilities = []
        for capability, hooks in CAPABILITY_HOOKS.items():
            for hook in hooks:
                if capability in capabilities and hook not in entry.hooks:
                    problems.append(f"claims capability '{capability}' but does not implement {hook}")
        entry.version = info.get("version")
        entry.description = str(info.get("description", ""))
        entry.capabilities = list(capabilities)
        secret = info.get("secret_options", [])
        if isinstance(secret, list) and all(
            isinstance(p, list) and p and all(isinstance(k, str) for k in p) for p in secret
        ):
            entry.secret_options = [list(p) for p in secret]
        else:
            problems.append("qsm_engine_info 'secret_options' must be a list of key paths (lists of strings)")
        return problems

    # -- queries --------------------------------------------------------------
    def entries(self) -> list[EnginePlugin]:
        return sorted(
            (e for group in self._entries.values() for e in group),
            key=lambda e: (e.name, e.distribution or ""),
        )

    def names(self, status: Status = "ok") -> list[str]:
        return sorted(
            n for n, group in self._entries.items() if len(group) == 1 and group[0].status == status
        )

    def secret_options(self) -> dict[str, list[list[str]]]:
        """What each loaded engine declares secret in its ``engine_options`` section."""
        return {e.name: e.secret_options for e in self.entries() if e.secret_options}

    def resolve(self, name: str) -> EngineHooks:
        """The hooks of engine ``name``, or a one-line error saying why not."""
        if name in self._hooks:
            return self._hooks[name]
        group = self._entries.get(name)
        if not group:
            installed = ", ".join(sorted(self._entries)) or "none"
            raise EngineNotFound(f"engine '{name}' is not installed (installed: {installed})")
        entry = group[0]
        if entry.status == "conflict":
            raise EngineConflict(entry.error or f"engine '{name}' is claimed twice")
        if entry.status == "disabled":
            raise EngineUnavailable(f"engine '{name}' is installed but not enabled by configuration")
        if entry.status == "broken":
            raise EngineUnavailable(f"engine '{name}' is broken: {entry.error}")
        hooks = EngineHooks(self.pm, entry, self._telemetry)
        self._hooks[name] = hooks
        return hooks


def _dist_name(ep: EntryPoint) -> str:
    return ep.dist.name if ep.dist is not None else "(unknown distribution)"


def _entry_for(ep: EntryPoint, status: Status = "ok", error: str | None = None) -> EnginePlugin:
    return EnginePlugin(
        name=ep.name,
        module=ep.value,
        distribution=_dist_name(ep),
        dist_version=ep.dist.version if ep.dist is not None else None,
        status=status,
        error=error,
    )


def _unmarked_hooks(plugin: Any) -> list[str]:
    """Functions named like hooks that lack ``@hookimpl``: silently ignored otherwise."""
    marker = f"{hookspecs.PROJECT}_impl"
    names = [
        n
        for n, obj in inspect.getmembers(plugin)
        if n.startswith("qsm_") and callable(obj) and not hasattr(obj, marker)
    ]
    return [f"{n} is not marked @hookimpl" for n in names if n in _SPEC_NAMES] + [
        f"{n} is not a known hook (misspelled?)" for n in names if n not in _SPEC_NAMES
    ]


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
