"""What the core reports as it works, for whoever watches: a metrics exporter, say.

The core calls a :class:`Telemetry` at a few places; the default does nothing, so
the core needs no metrics library and pays nothing when nobody watches. A server
(``strategy_manager.web``) subclasses it and turns the calls into metrics.

Each method is called on the thread doing the work (the control thread, a hook
thread, the snapshot writer, whichever thread calls the store), so an
implementation must return at once, never block and never raise.

:class:`TimedStore` wraps a store and reports the latency and outcome of every call
through a telemetry, so neither store needs to know about it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from strategy_manager.core.errors import QsmError
from strategy_manager.core.store.protocol import SnapshotWrite, StatusRecord


class Telemetry:
    """The seam: every method is a no-op here."""

    def hook_called(self, engine: str, hook: str, seconds: float, ok: bool) -> None:
        """An engine hook (create, restore, start, stop, snapshot, open_session,
        close_session) returned or raised."""

    def store_called(self, op: str, seconds: float, ok: bool) -> None:
        """A store method returned (``ok``) or raised a store error."""

    def snapshots_saved(self, writes: Sequence[SnapshotWrite]) -> None:
        """The store accepted a batch of snapshot writes."""

    def loop_turned(self, late: float | None, busy: float) -> None:
        """The control loop did one turn: it woke ``late`` seconds after it meant to
        (None when an event woke it early), then worked ``busy`` seconds."""

    def status_changed(self, records: Sequence[StatusRecord]) -> None:
        """Strategies changed state (or reason, lease, next transition, snapshot):
        their new status, as the control loop computed it, whether or not this
        process writes it to the store."""


#: The default: nobody watches.
NO_TELEMETRY = Telemetry()

#: Store methods that are not timed: iterators and plain attributes.
_UNTIMED = frozenset({"watch", "close"})


class TimedStore:
    """A store whose every call is timed through ``telemetry``: ``op`` is the
    method's name, ``ok`` False when it raised a :class:`QsmError` (a programming
    error propagates unreported). Everything else passes through unchanged."""

    def __init__(self, store: Any, telemetry: Telemetry) -> None:
        self._store = store
        self._telemetry = telemetry
        self.kind: str = store.kind
        self.location: str = store.location

    @property
    def inner(self) -> Any:
        return self._store

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._store, name)
        if name.startswith("_") or name in _UNTIMED or not callable(value):
            return value
        timed = self._timed(name, value)
        self.__dict__[name] = timed  # looked up once
        return timed

    def _timed(self, op: str, method: Callable[..., Any]) -> Callable[..., Any]:
        telemetry = self._telemetry

        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                result = method(*args, **kwargs)
            except QsmError as exc:
                telemetry.store_called(op, time.perf_counter() - started, False)
                seqs = getattr(exc, "seqs", None)  # a batch partly written
                if op == "save_snapshots" and seqs:
                    writes = args[0] if args else kwargs["writes"]
                    saved = [w for w, seq in zip(writes, seqs, strict=False) if seq is not None]
                    telemetry.snapshots_saved(saved)
                raise
            telemetry.store_called(op, time.perf_counter() - started, True)
            if op == "save_snapshots":
                telemetry.snapshots_saved(args[0] if args else kwargs["writes"])
            return result

        call.__name__ = op
        return call


__all__ = ["NO_TELEMETRY", "Telemetry", "TimedStore"]
