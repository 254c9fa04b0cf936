"""A host: the orchestrator of one Ray node, restricted to the strategies assigned to it.

The driver makes each host a detached Ray actor pinned to its node; this class knows
nothing of Ray. Inside, it is an ordinary :class:`MultiStrategyOrchestrator` with its
own lease keeper, snapshot writer and hook pool, so it fences its own engines when it
cannot renew its leases, whatever Ray or the driver believe. The assignment only
says which leases it may claim: a strategy taken away is snapshotted, stopped and
released; one added is claimed as soon as the store grants its lease.

Its owner id is ``host:pid:<token>``, with the token chosen by the driver, which finds
the host's heartbeat record in the store by it; the record's details carry the Ray
node id, for ``status`` and ``hosts``.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Collection
from typing import Any

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.errors import ConfigError
from strategy_manager.core.leases import this_process
from strategy_manager.core.masking import RedactingFilter, Redactor
from strategy_manager.core.orchestrator import MultiStrategyOrchestrator
from strategy_manager.core.registry import EngineRegistry
from strategy_manager.core.settings import Settings
from strategy_manager.core.store import open_store

log = logging.getLogger("strategy_manager.scaleout")


class StrategyHost:
    def __init__(
        self,
        settings: Settings,
        node: str,
        token: str,
        driver_boot_id: str = "",
        log_level: int | None = None,
    ) -> None:
        """``driver_boot_id``: the driver machine's, which an embedded store must share.
        ``log_level``: send this process's log records to its stderr (a Ray worker's,
        which Ray keeps and shows at the driver); None leaves logging alone."""
        me = this_process(SystemClock().now())
        if settings.store_kind == "embedded" and driver_boot_id and me.boot_id != driver_boot_id:
            raise ConfigError(
                f"host on node {node[:12]} ({me.host}): the embedded store {settings.embedded_path} is a "
                "file on the driver's machine, not this one; set MONGO_URI so every node shares one store"
            )
        registry = EngineRegistry.from_entry_points(settings)
        if log_level is not None:
            _log_to_stderr(log_level, Redactor.for_settings(settings, registry.secret_options()))
        self.node = node
        self._ids: frozenset[str] = frozenset()
        self._version = -1
        self._lock = threading.Lock()
        self._ended = threading.Event()
        self.ended_because = ""
        self.store = open_store(settings)
        self.orchestrator = MultiStrategyOrchestrator(
            settings,
            self.store,
            registry,
            owner=f"{socket.gethostname()}:{os.getpid()}:{token}",
            assigned=self._assigned,
            owner_details={"executor": "ray", "ray_node": node},
        )
        threading.Thread(target=self._run, name="qsm-host", daemon=True).start()

    def _assigned(self, strategy_id: str) -> bool:
        return strategy_id in self._ids

    def _run(self) -> None:
        try:
            self.orchestrator.run()
        finally:
            fatal = self.orchestrator.fatal
            self.ended_because = f"fatal: {fatal}" if fatal is not None else "stopped"
            self.store.close()
            self._ended.set()

    # -- called by the driver (as actor methods) -------------------------------------------
    def ready(self) -> dict[str, Any]:
        """Who this host is; answered once it runs."""
        record = self.orchestrator.record
        return {"owner": record.owner, "host": record.host, "pid": record.pid, "node": self.node}

    def assign(self, strategy_ids: Collection[str], version: int, claim_now: bool = False) -> int:
        """The whole set this host may run, as of ``version``; an older version than one
        already applied is ignored (calls may arrive out of order). Returns the version
        in force."""
        with self._lock:
            if version <= self._version:
                return self._version
            self._version = version
            self._ids = frozenset(strategy_ids)
        log.info("assignment %d: %d strategies%s", version, len(strategy_ids), ", claim now" * claim_now)
        self.orchestrator.reassigned(claim_now=claim_now)
        return version

    def assignment(self) -> tuple[int, list[str]]:
        """The version and set in force (a driver that restarts reads them back)."""
        with self._lock:
            return self._version, sorted(self._ids)

    def until_ended(self) -> str:
        """Returns when the orchestrator has stopped, saying why; the driver keeps one
        call of it pending per host, so a Ray death notice or an end reaches it at once."""
        self._ended.wait()
        return self.ended_because

    def stop(self) -> str:
        """Snapshot and stop every engine, release the leases, and return."""
        self.orchestrator.request_stop()
        self._ended.wait()
        return self.ended_because

    def counts(self) -> dict[str, int]:
        """Strategies assigned here, by state."""
        counts: dict[str, int] = {}
        for worker in self.orchestrator.list_workers():
            if self._assigned(worker["strategy_id"]):
                counts[worker["state"]] = counts.get(worker["state"], 0) + 1
        return counts


def _log_to_stderr(level: int, redactor: Redactor) -> None:
    """The host's log records on its stderr (Ray keeps it, and shows it at the driver),
    masked like the CLI's; lifecycle events always, at INFO."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter(redactor))
    ours = logging.getLogger("strategy_manager")
    ours.addHandler(handler)
    ours.setLevel(level)
    ours.propagate = False
    logging.getLogger("strategy_manager.events").setLevel(min(level, logging.INFO))


__all__ = ["StrategyHost"]
