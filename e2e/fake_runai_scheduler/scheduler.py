"""FakeRunaiScheduler: a watch-and-bind scheduler with Run:ai's queue, GPU and preemption semantics.

Each cycle takes a snapshot of the informer caches (pods, nodes, namespaces, Jobs, PriorityClasses),
orders pending pods (most deprived queue first, then priority, then age), and for each one:
quota admission -> filter and score -> bind, else preempt or reclaim, else report Unschedulable.
A gang (a Job with kai.scheduler/batch-min-member) goes through the same steps member by member on a
trial copy of the snapshot, and is bound, or makes its evictions, only when every member fits.
State lives in the API (bindings, annotations), so a restarted scheduler rebuilds it by listing.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass, field

from kube import ApiError, KubeApi
from runai.names import PRIORITY_CLASSES

from .binder import Writer
from .config import UNLIMITED, Queue, SchedulerConfig
from .informer import Informer
from .policy import decide
from .snapshot import Bound, Placement, Snapshot, pod_is_active
from .workload import Workload, owner_job_key, workload_of

log = logging.getLogger(__name__)
ASSUME_SECONDS = 30


@dataclass
class Assumed:
    placement: Placement
    since: float = field(default_factory=time.monotonic)


def units(pending: list[tuple[Workload, dict]]) -> list[list[tuple[Workload, dict]]]:
    """What is scheduled as one: a pod, or a gang's pending members, at its first member's place in the order."""
    result: list[list[tuple[Workload, dict]]] = []
    gangs: dict[str, list[tuple[Workload, dict]]] = {}
    for item in pending:
        w = item[0]
        if not w.gang:
            result.append([item])
        elif w.group in gangs:
            gangs[w.group].append(item)
        else:
            gangs[w.group] = [item]
            result.append(gangs[w.group])
    return result


class FakeRunaiScheduler:
    def __init__(self, api: KubeApi, config: SchedulerConfig, period: float = 1.0,
                 create_priority_classes: bool = True, update_pod_eviction_condition: bool = False):
        self.api, self.config, self.period = api, config, period
        self.name = config.scheduler_name
        self.create_priority_classes = create_priority_classes
        self._wake = threading.Event()
        self._stopped = threading.Event()
        paths = {"pods": "/api/v1/pods", "nodes": "/api/v1/nodes", "namespaces": "/api/v1/namespaces",
                 "jobs": "/apis/batch/v1/jobs", "priorityclasses": "/apis/scheduling.k8s.io/v1/priorityclasses"}
        self.informers = {kind: Informer(api, path, self.wake) for kind, path in paths.items()}
        self.writer = Writer(api, self.name, update_pod_eviction_condition)
        self.assumed: dict[str, Assumed] = {}
        self.reported: dict[str, str] = {}
        self.evictions: dict[str, set[str]] = {}
        self._thread: threading.Thread | None = None

    # Lifecycle ---------------------------------------------------------------------------------
    def start(self) -> FakeRunaiScheduler:
        if self.create_priority_classes:
            self.ensure_priority_classes()
        for informer in self.informers.values():
            informer.start()
        for kind, informer in self.informers.items():
            if not informer.wait_synced(60):
                raise TimeoutError(f"could not list {kind} from the API server")
        self._thread = threading.Thread(target=self._loop, name=f"{self.name} loop", daemon=True)
        self._thread.start()
        log.info("%s started: queues %s", self.name, ", ".join(self.config.queues))
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()
        for informer in self.informers.values():
            informer.stop()
        if self._thread:
            self._thread.join(10)
        self.writer.flush()

    @property
    def update_pod_eviction_condition(self) -> bool:
        """Whether victims get the DisruptionTarget condition before deletion (KAI's flag; off by default)."""
        return self.writer.update_pod_eviction_condition

    @update_pod_eviction_condition.setter
    def update_pod_eviction_condition(self, enabled: bool) -> None:
        self.writer.update_pod_eviction_condition = enabled

    def wake(self) -> None:
        """Run a cycle now: something the cycle reads has changed."""
        self._wake.set()

    def add_queue(self, queue: Queue) -> None:
        """Serve another Run:ai project (the e2e suite creates projects as it goes)."""
        self.config = dataclasses.replace(self.config, queues={**self.config.queues, queue.name: queue})
        self.wake()

    def ensure_priority_classes(self) -> None:
        """Run:ai installs these; without them a priorityClassName label falls back to train (50)."""
        for name, value in PRIORITY_CLASSES.items():
            try:
                self.api.request("POST", "/apis/scheduling.k8s.io/v1/priorityclasses", body={
                    "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": name},
                    "value": value, "preemptionPolicy": "PreemptLowerPriority",
                    "description": "Run:ai workload priority (created by the fake Run:ai scheduler)"})
            except ApiError as err:
                if err.status != 409:
                    raise

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.period)
            self._wake.clear()
            if self._stopped.is_set():
                return
            time.sleep(0.005)  # let a burst of watch events land in one cycle
            try:
                self.run_cycle()
            except Exception:  # noqa: BLE001 - a failed cycle is retried on the next wake-up
                log.exception("scheduling cycle failed")
                time.sleep(0.5)

    # One cycle ---------------------------------------------------------------------------------
    def run_cycle(self) -> int:
        """Schedule what is pending now; return how many pods were bound."""
        pods = self.informers["pods"].items()
        priority_classes = {pc["metadata"]["name"]: int(pc.get("value", 0))
                            for pc in self.informers["priorityclasses"].items()}
        snapshot = Snapshot(self.informers["nodes"].items())
        live_uids = {pod["metadata"]["uid"] for pod in pods}
        pending: list[tuple[Workload, dict]] = []
        for pod in pods:
            if not pod_is_active(pod):
                continue
            uid, spec = pod["metadata"]["uid"], pod["spec"]
            ours = spec.get("schedulerName") == self.name
            w = self._workload(pod, priority_classes) if ours else None
            if spec.get("nodeName"):
                self.assumed.pop(uid, None)
                snapshot.add_bound(pod, spec["nodeName"], w)
            elif ours and uid in self.assumed:
                snapshot.add_bound(pod, self.assumed[uid].placement.node, w, self.assumed[uid].placement.devices)
            elif ours and not pod["metadata"].get("deletionTimestamp") and self._owner_known(pod):
                pending.append((w, pod))
        self._forget(live_uids)
        largest = max((n.gpu_memory_mib for n in snapshot.nodes.values()), default=0)
        for w, _ in pending:
            if w.gpu_memory_mib:  # until placed, as the least share it can take (on the largest device)
                w.memory_share = w.gpu_memory_mib / largest if largest else 0.0
        pending.sort(key=lambda item: self._order(snapshot, item[0]))
        bound = 0
        for unit in units(pending):
            w = unit[0][0]
            if not w.gang:
                bound += self._schedule(snapshot, w, unit[0][1], live_uids)
                continue
            running = sum(1 for b in snapshot.bound() if b.workload.group == w.group and not b.terminating)
            bound += self._schedule_gang(snapshot, unit, running, live_uids)
        return bound

    def _owner_known(self, pod: dict) -> bool:
        """A Job's pod waits until the Job is in the cache: its PodGroup (a gang or not) is read from the Job.

        The pods' watch can deliver them before the Jobs' watch delivers their Job; scheduled then, a gang's
        members would each be bound alone (KAI's podgrouper likewise creates no PodGroup before the owner)."""
        job_key = owner_job_key(pod)
        return job_key is None or self.informers["jobs"].get(job_key) is not None

    def _workload(self, pod: dict, priority_classes: dict[str, int]) -> Workload:
        job_key = owner_job_key(pod)
        owner = self.informers["jobs"].get(job_key) if job_key else None
        namespace = self.informers["namespaces"].get(f"/{pod['metadata']['namespace']}")
        return workload_of(pod, owner, namespace, priority_classes)

    def _order(self, snapshot: Snapshot, w: Workload) -> tuple:
        queue = self.config.queues.get(w.queue)
        quota = queue.gpu.quota if queue else UNLIMITED
        share = snapshot.queues[w.queue].gpu / quota if quota not in (UNLIMITED, 0) else 0.0
        return share, -w.priority, w.created, w.name

    def _forget(self, live_uids: set[str]) -> None:
        now = time.monotonic()
        for uid in [u for u, a in self.assumed.items() if u not in live_uids or now - a.since > ASSUME_SECONDS]:
            del self.assumed[uid]
        for table in (self.reported, self.evictions):
            for uid in [u for u in table if u not in live_uids]:
                del table[uid]

    def _admissible(self, w: Workload, live_uids: set[str]) -> Queue | None:
        """The pod's queue if the pod may be scheduled now; else None, with the reason reported."""
        if w.invalid:
            self._report(w, w.invalid)
            return None
        queue = self.config.queues.get(w.queue)
        if queue is None:
            self._report(w, f"Queue '{w.queue}' does not exist")
            return None
        if self.evictions.get(w.uid, set()) & live_uids:
            return None  # pipelined: waiting for the pods it preempted to terminate
        return queue

    def _schedule(self, snapshot: Snapshot, w: Workload, pod: dict, live_uids: set[str]) -> int:
        queue = self._admissible(w, live_uids)
        if queue is None:
            return 0
        decision = decide(snapshot, self.config.queues, queue, w)
        if decision.placement:
            return self._bind(snapshot, w, pod, decision.placement)
        if decision.victims:
            self._evict([w], decision.victims, decision.reclaim, snapshot)
        else:
            self._report(w, decision.message)
        return 0

    def _schedule_gang(self, snapshot: Snapshot, members: list[tuple[Workload, dict]], running: int,
                       live_uids: set[str]) -> int:
        """All pending members of a gang bind in this cycle, or none does (KAI's batch-min-member).

        They are placed one by one on a trial copy of the snapshot, evicting where the rules allow; only when
        every member fits is anything written: the bindings, or the evictions the gang then waits for."""
        queues = [self._admissible(w, live_uids) for w, _ in members]
        if any(q is None for q in queues):
            return 0
        first = members[0][0]
        if running >= first.min_member:  # the gang runs; a replacement member is scheduled on its own
            return sum(self._schedule(snapshot, w, pod, live_uids) for w, pod in members)
        if running + len(members) < first.min_member:
            return 0  # the Job controller has not created every member yet
        trial = snapshot.copy()
        placements: list[Placement] = []
        victims: list[Bound] = []
        reclaim = False
        for (w, pod), queue in zip(members, queues, strict=True):
            decision = decide(trial, self.config.queues, queue, w)
            if decision.victims:
                trial.remove(decision.victims)
                victims += decision.victims
                reclaim = reclaim or decision.reclaim
                decision = decide(trial, self.config.queues, queue, w)
            if not decision.placement:
                message = (f"Resources were found for {running + len(placements)} pods while {first.min_member} "
                           f"are required for gang scheduling. Additional pods cannot be scheduled due to: "
                           f"{decision.message or 'no node fits it even after preemption'}")
                for member, _ in members:
                    self._report(member, message)
                return 0
            placements.append(decision.placement)
            trial.add_bound(pod, decision.placement.node, w, decision.placement.devices)
        if victims:
            self._evict([w for w, _ in members], snapshot.same_bounds(victims), reclaim, snapshot)
            return 0
        return sum(self._bind(snapshot, w, pod, placement)
                   for (w, pod), placement in zip(members, placements, strict=True))

    def _bind(self, snapshot: Snapshot, w: Workload, pod: dict, placement: Placement) -> int:
        if w.gpu_memory_mib:
            w.memory_share = snapshot.nodes[placement.node].share_of(w)  # what it takes on this node
        if not self.writer.bind(w, placement):
            return 0
        self.assumed[w.uid] = Assumed(placement)
        snapshot.add_bound(pod, placement.node, w, placement.devices)
        self.reported.pop(w.uid, None)
        log.info("bound %s to %s (queue %s, %g GPU%s)", w.key, placement.node, w.queue, w.gpus,
                 f" on devices {placement.devices}" if w.shared else "")
        return 1

    def _evict(self, preemptors: list[Workload], victims: list[Bound], reclaim: bool, snapshot: Snapshot) -> None:
        """Evict the victims, each with its whole gang (a gang below its minimum would hold GPUs for nothing)."""
        victims = snapshot.with_gangs(victims)
        for w in preemptors:
            self.evictions[w.uid] = {v.workload.uid for v in victims}
        for victim in victims:
            log.info("%s %s for %s", "reclaiming" if reclaim else "preempting", victim.workload.key,
                     preemptors[0].key)
            victim.terminating = True
            self.writer.evict(victim.workload, preemptors[0], reclaim)

    def _report(self, w: Workload, message: str) -> None:
        if self.reported.get(w.uid) != message:
            self.reported[w.uid] = message
            log.info("cannot schedule %s: %s", w.key, message)
            self.writer.unschedulable(w, message)
