"""The exception hierarchy. Every message is one line naming the thing and the reason."""

from __future__ import annotations


class QsmError(Exception):
    """Root of every error quant-strategy-manager raises on purpose."""


class ConfigError(QsmError):
    """A configuration file or value is malformed."""


class EngineError(QsmError):
    """Something about an engine plugin: unknown, disabled, broken, or a hook that raised."""


class EngineNotFound(EngineError):
    """No installed plugin provides the requested engine name."""


class EngineConflict(EngineError):
    """Two distributions claim the same engine name."""


class EngineUnavailable(EngineError):
    """The engine is installed but disabled by configuration, or failed to load."""


class HookError(EngineError):
    """A plugin's hook raised while driving one strategy."""


class EngineHalted(EngineError):
    """An engine refuses to run until a person looks (say, its restored position
    disagrees with the broker's). The strategy is marked FAILED at once, without
    restarts; a change of its document or ``strategies enable`` tries again."""


class InvalidStrategy(QsmError):
    """A strategy document failed validation."""


class ClassRefused(QsmError):
    """An ``engine_class`` lies outside the configured import paths or allow-list."""


class StoreError(QsmError):
    """The strategy store could not be reached or refused an operation."""


class StoreLost(StoreError):
    """The store this process opened is gone (its file deleted or replaced): carrying
    on would fork the state into a store nobody else sees. Fatal for an orchestrator."""


class SnapshotError(QsmError):
    """A snapshot could not be encoded, written or decoded."""


class HookTimeout(HookError):
    """An engine hook did not return in time; its thread is abandoned and the engine
    is never called again."""


class ScheduleError(QsmError):
    """A trading calendar or schedule cannot be built."""


class ExecutorError(QsmError):
    """The chosen executor cannot run: Ray not installed, its cluster unreachable, or
    no node of it offered to run strategies."""
