"""The Ray driver: one host per Ray node, strategies spread over them, failed hosts'
strategies moved to the others (``strategy-manager run --executor ray``).

Nodes that run strategies offer the custom resource ``qsm_host`` (``ray start
--resources='{"qsm_host": 1}'``); its amount is the node's weight. On each such node
the driver starts one detached actor, :class:`~strategy_manager.scaleout.host.StrategyHost`,
with no CPUs, that resource, and a hard affinity to the node, so Ray never moves it.
Ray never restarts a host either (``max_restarts=0``): after a failure the strategies
go to the other hosts, by the leases in the store, rather than to a copy Ray started
while the old process may still run.

What the driver learns comes from three places, each polled on this thread: Ray (a
pending ``until_ended`` call per host fails when Ray declares the host dead; the node
list), the store's heartbeat records (``read_owners``) and the strategy documents. What
to do about it is decided by :class:`~strategy_manager.scaleout.fleet.Fleet`. No call
to a host is ever waited on here: a frozen host must not freeze the driver.

A node whose host died is not used again until the driver restarts (a host that keeps
dying would move its strategies back and forth). Hosts outlive a driver that crashes
(they are detached) and keep running their strategies; a driver that starts again
adopts them, with their assignments. A driver that is asked to stop stops them all.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from strategy_manager.core.clock import SystemClock
from strategy_manager.core.errors import ExecutorError, QsmError
from strategy_manager.core.leases import this_process
from strategy_manager.core.settings import Settings
from strategy_manager.core.spec import parse_document
from strategy_manager.core.store import Store
from strategy_manager.scaleout.fleet import Event, Fleet, HostView, Push
from strategy_manager.scaleout.host import StrategyHost

log = logging.getLogger("strategy_manager.scaleout")

#: The custom resource a node offers to run strategies; its amount is the node's weight.
RESOURCE = "qsm_host"
#: The Ray namespace of the hosts (their names are ``qsm-host-<node id>``).
NAMESPACE = "qsm"
#: Seconds between looks at Ray's node list.
NODE_POLL_SECONDS = 1.0
#: Seconds a stopping driver gives the hosts beyond ``stop_timeout``.
STOP_MARGIN_SECONDS = 10.0
#: A host's calls run on this many threads (one waits in ``until_ended``).
HOST_CONCURRENCY = 4

EventSink = Callable[[str, str, str], None]


def host_name(node_id: str) -> str:
    """The Ray name of the host on ``node_id`` (a prefix of the node id is unique enough)."""
    return f"qsm-host-{node_id[:12]}"


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ExecutorError(
            "executor ray: Ray is not installed; pip install 'quant-strategy-manager[ray]'"
        ) from None
    return ray


@attrs.define
class _Handle:
    actor: Any
    node: str
    ended: Any
    ready: Any | None
    was_ready: bool = False


class RayDriver:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        address: str,
        on_event: EventSink | None = None,
        log_level: int = logging.WARNING,
        log_to_driver: bool = True,
    ) -> None:
        ray = _ray()
        self.ray = ray
        # Hosts run elsewhere: every path they are given must not depend on our cwd.
        self.settings = attrs.evolve(settings, data_dir=str(Path(settings.data_dir).resolve()))
        self.store = store
        self.on_event = on_event
        self.log_level = log_level
        self.fleet = Fleet(settings.lease_seconds)
        self.wall = SystemClock()
        self.boot_id = this_process(self.wall.now()).boot_id
        self._handles: dict[str, _Handle] = {}
        #: Nodes not to start a host on again (its host died or refused), with the reason.
        self.spent: dict[str, str] = {}
        self._pushes: list[Any] = []
        self._stopping = threading.Event()
        self._seen_token: object = object()
        #: When each kind of look is next due (monotonic seconds).
        self._next: dict[str, float] = {}
        #: When the heartbeats were last read or tried (wall seconds).
        self._owners_tried = 0.0
        self.ticks = 0
        try:
            ray.init(address=address, namespace=NAMESPACE, log_to_driver=log_to_driver)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: Ray's choice
            raise ExecutorError(f"executor ray: cannot join the Ray cluster at {address}: {exc}") from None
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        self._affinity = NodeAffinitySchedulingStrategy
        self._actor_class = ray.remote(StrategyHost)

    # -- running ---------------------------------------------------------------------------
    def run(self, seconds: float | None = None) -> None:
        """Start and adopt the hosts, then keep the fleet until :meth:`request_stop` (or
        ``seconds``); then stop every host."""
        deadline = None if seconds is None else time.monotonic() + seconds
        try:
            self.start()
            while not self._stopping.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                self.tick()
                self._stopping.wait(self._tick_seconds())
        finally:
            self.stop()

    def start(self) -> None:
        """Find the nodes, start or adopt a host on each; ExecutorError if none offers
        ``qsm_host``."""
        self._discover()
        if not self._handles:
            raise ExecutorError(
                f"executor ray: no live Ray node offers the resource '{RESOURCE}'; start the nodes that "
                f"should run strategies with: ray start --resources='{{\"{RESOURCE}\": 1}}'"
            )

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop the hosts and return (from a signal handler); never blocks."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def tick(self) -> None:
        """One look at everything, and what follows from it."""
        self.ticks += 1
        now = time.time()
        mono = time.monotonic()
        try:
            self._watch()
            if mono >= self._next.get("nodes", 0.0):
                self._next["nodes"] = mono + NODE_POLL_SECONDS
                self._discover()
        except Exception:  # Ray unreachable for a while: the hosts trade on meanwhile
            log.exception("driver: Ray call failed; retrying")
        try:
            due = self.fleet.next_due()
            # A host may fall silent now: read the heartbeats once at that time, not at the next round.
            silent_soon = due is not None and now >= due > self._owners_tried
            if mono >= self._next.get("owners", 0.0) or silent_soon:
                self._next["owners"] = mono + self.settings.lease_renew_seconds / 2
                self._owners_tried = now
                self.fleet.heard(self.store.read_owners(), now)
            if mono >= self._next.get("documents", 0.0):
                self._next["documents"] = mono + self.settings.poll_interval
                self._read_documents()
        except QsmError as exc:  # the hosts carry on; so does the driver, less often
            log.error("driver: store unavailable, retrying: %s", exc)
            later = mono + min(self.settings.poll_interval * 5, 10.0)
            self._next["owners"] = self._next["documents"] = later
        pushes, events = self.fleet.step(now)
        for event in events:
            self._emit(event)
        self._send(pushes)

    def _tick_seconds(self) -> float:
        due = self.fleet.next_due()
        wait = min(0.2, self.settings.lease_renew_seconds / 2)
        if due is not None:
            wait = min(wait, max(0.01, due - time.time()))
        return wait

    def stop(self) -> None:
        """Stop every host (snapshots written, leases released) within ``stop_timeout``
        plus a margin, then remove them from Ray."""
        ray = self.ray
        stops = {}
        for name, handle in self._handles.items():
            try:
                stops[name] = handle.actor.stop.remote()
            except Exception as exc:  # a dead actor's handle
                log.debug("host %s: stop not sent: %s", name, exc)
        if stops:
            ready, _ = ray.wait(
                list(stops.values()),
                num_returns=len(stops),
                timeout=self.settings.stop_timeout + STOP_MARGIN_SECONDS,
            )
            late = [name for name, ref in stops.items() if ref not in ready]
            for name in late:
                log.error("host %s did not stop in time; killed (its leases expire)", name)
        for handle in self._handles.values():
            try:
                ray.kill(handle.actor, no_restart=True)
            except Exception as exc:
                log.debug("kill: %s", exc)
        self._handles.clear()
        ray.shutdown()

    # -- what the driver looks at ----------------------------------------------------------
    def _discover(self) -> None:
        ray = self.ray
        nodes = ray.nodes()
        for node in nodes:
            node_id = node["NodeID"]
            name = host_name(node_id)
            if not node.get("Alive"):
                if name in self._handles:
                    self.fleet.ray_lost(name, "its node is dead")
                    self._forget(name, "its node is dead")
                continue
            weight = float(node.get("Resources", {}).get(RESOURCE, 0.0))
            if weight <= 0 or name in self._handles or node_id in self.spent:
                continue
            self._host_on(node_id, weight)

    def _host_on(self, node_id: str, weight: float) -> None:
        ray = self.ray
        name = host_name(node_id)
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            actor = None
        if actor is not None:  # a host an earlier driver started: adopt it with its assignment
            try:
                info = ray.get(actor.ready.remote(), timeout=10)
                version, ids = ray.get(actor.assignment.remote(), timeout=10)
            except Exception as exc:
                log.warning("host %s exists but does not answer; not adopted yet: %s", name, exc)
                return
            token = info["owner"].rsplit(":", 1)[-1]
            view = HostView(name, node_id, token, since=time.time(), weight=weight, version=version)
            self._handles[name] = _Handle(actor, node_id, actor.until_ended.remote(), None, was_ready=True)
            self.fleet.adopt(view, ids)
            return
        token = secrets.token_hex(4)
        actor = self._actor_class.options(
            name=name,
            namespace=NAMESPACE,
            lifetime="detached",
            num_cpus=0,
            resources={RESOURCE: weight},
            scheduling_strategy=self._affinity(node_id, soft=False),
            max_restarts=0,
            max_concurrency=HOST_CONCURRENCY,
        ).remote(self.settings, node_id, token, self.boot_id, self.log_level)
        self._handles[name] = _Handle(actor, node_id, actor.until_ended.remote(), actor.ready.remote())
        self.fleet.add(HostView(name, node_id, token, since=time.time(), weight=weight))

    def _watch(self) -> None:
        """Hosts that answered, ended, or that Ray declared dead; pushes answered."""
        ray = self.ray
        refs = {}
        for name, handle in self._handles.items():
            refs[handle.ended] = (name, "ended")
            if handle.ready is not None:
                refs[handle.ready] = (name, "ready")
        if refs:
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
            for ref in done:
                name, what = refs[ref]
                self._answered(name, what, ref)
        if self._pushes:
            done, self._pushes = ray.wait(self._pushes, num_returns=len(self._pushes), timeout=0)
            for ref in done:
                try:
                    ray.get(ref)
                except Exception as exc:  # its host is dead: the ended call says so too
                    log.debug("assignment not delivered: %s", exc)

    def _answered(self, name: str, what: str, ref: Any) -> None:
        handle = self._handles.get(name)
        if handle is None:
            return
        try:
            value = self.ray.get(ref)
        except Exception as exc:  # RayActorError and its kin: Ray says it is dead
            why = _first_line(exc)
            self.fleet.ray_lost(name, why)
            self._forget(name, why if handle.was_ready else f"it never started: {why}")
            return
        if what == "ready":
            handle.ready, handle.was_ready = None, True
            self.fleet.started(name, value["owner"], value["pid"])
            self._emit(Event("host-ready", name, f"{value['owner']} on node {value['node'][:12]}"))
        else:  # its orchestrator ended by itself (a fatal store error)
            self.fleet.ray_lost(name, f"its orchestrator ended ({value})")
            self._forget(name, f"ended: {value}")
            try:
                self.ray.kill(handle.actor, no_restart=True)
            except Exception as exc:
                log.debug("kill: %s", exc)

    def _forget(self, name: str, why: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            self.spent[handle.node] = why

    def _read_documents(self) -> None:
        token = self.store.change_token()
        if token == self._seen_token:
            return
        documents = self.store.list_strategies()
        self._seen_token = token
        idents = []
        seen = set()
        for index, document in enumerate(documents):
            ident = parse_document(document, index)[0]
            if ident not in seen:
                seen.add(ident)
                idents.append(ident)
        self.fleet.strategies(idents)

    def _send(self, pushes: list[Push]) -> None:
        for push in pushes:
            handle = self._handles.get(push.name)
            if handle is None:
                continue
            try:
                ref = handle.actor.assign.remote(sorted(push.ids), push.version, push.claim_now)
            except Exception as exc:
                log.debug("assignment to %s not sent: %s", push.name, exc)
                continue
            self._pushes.append(ref)

    def _emit(self, event: Event) -> None:
        log.info("%s %s: %s", event.kind, event.host, event.detail)
        if self.on_event is not None:
            self.on_event(event.kind, event.host, event.detail)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


__all__ = ["NAMESPACE", "RESOURCE", "RayDriver", "host_name"]
