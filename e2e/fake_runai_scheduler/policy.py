"""Run:ai's queue rules: quota admission (OverLimit, NonPreemptibleOverQuota), preempt and reclaim.

Messages follow KAI (pkg/scheduler/api/unschedule_info.go) so tests and users see Run:ai's words.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import UNLIMITED, Queue
from .placement import best_placement, reject_reason, unschedulable_message
from .snapshot import Bound, NodeState, Placement, QueueUsage, Snapshot
from .workload import Workload

UNITS = {"gpu": "GPUs", "cpu": "CPU millicores", "memory": "MB of memory"}


def _requested(w: Workload) -> dict[str, float]:
    return {"gpu": w.gpus, "cpu": w.cpu_m, "memory": w.memory / 1e6}


def _allocated(usage: QueueUsage, non_preemptible: bool = False) -> dict[str, float]:
    if non_preemptible:
        return {"gpu": usage.non_preemptible_gpu, "cpu": usage.non_preemptible_cpu_m,
                "memory": usage.non_preemptible_memory_mb}
    return {"gpu": usage.gpu, "cpu": usage.cpu_m, "memory": usage.memory_mb}


def _fmt(value: float) -> str:
    return f"{value:g}"


def _first_exceeded(bounds: dict[str, float], allocated: dict[str, float], requested: dict[str, float]):
    """The first resource (and its bound) that the request would push past its bound, or None."""
    for resource in UNITS:
        bound = bounds[resource]
        if bound != UNLIMITED and requested[resource] > 0 and allocated[resource] + requested[resource] > bound + 1e-9:
            return resource, bound
    return None


def over_limit(queue: Queue, usage: QueueUsage, w: Workload) -> str | None:
    allocated, requested = _allocated(usage), _requested(w)
    exceeded = _first_exceeded({r: queue.resource(r).limit for r in UNITS}, allocated, requested)
    if not exceeded:
        return None
    resource, limit = exceeded
    unit = UNITS[resource]
    return (f"{queue.name} quota has reached the allowable limit of {unit}. Limit is {_fmt(limit)} {unit}, "
            f"currently {_fmt(allocated[resource])} {unit} allocated and workload requested "
            f"{_fmt(requested[resource])} {unit}")


def non_preemptible_over_quota(queue: Queue, usage: QueueUsage, w: Workload) -> str | None:
    if w.preemptible:
        return None
    allocated, requested = _allocated(usage, non_preemptible=True), _requested(w)
    exceeded = _first_exceeded({r: queue.resource(r).quota for r in UNITS}, allocated, requested)
    if not exceeded:
        return None
    resource, quota = exceeded
    unit = UNITS[resource]
    return (f"Non-preemptible workload is over quota. Workload requested {_fmt(requested[resource])} {unit}, "
            f"but {queue.name} quota is {_fmt(quota)} {unit}, while {_fmt(allocated[resource])} {unit} are "
            f"already allocated for non-preemptible pods. Use a preemptible workload to go over quota.")


def under_quota_after(queue: Queue, usage: QueueUsage, w: Workload) -> bool:
    quota = queue.gpu.quota
    return quota == UNLIMITED or usage.gpu + w.gpus <= quota + 1e-9


def _lowest_priority_newest_first(bounds) -> list[Bound]:
    """Victim order: least important first, and among equals the youngest (it has done the least work)."""
    newest_first = sorted(bounds, key=lambda b: (b.workload.created, b.workload.name), reverse=True)
    return sorted(newest_first, key=lambda b: b.workload.priority)


def _evict_until_fits(node: NodeState, w: Workload, candidates: list[Bound], extra_ok=lambda chosen: True):
    chosen: list[Bound] = []
    for victim in candidates:
        if reject_reason(node.without(chosen), w) is None and extra_ok(chosen):
            break
        chosen.append(victim)
    if reject_reason(node.without(chosen), w) is None and extra_ok(chosen):
        return chosen
    return None


def preemption_victims(snapshot: Snapshot, queue: Queue, w: Workload) -> list[Bound] | None:
    """Lower-priority preemptible pods of the same queue whose eviction lets ``w`` fit (and stay in limit)."""
    usage = snapshot.queues[queue.name]
    candidates = _lowest_priority_newest_first(
        b for b in snapshot.by_queue[queue.name]
        if b.workload.preemptible and b.workload.priority < w.priority and not b.terminating)

    def within_limit(chosen: list[Bound]) -> bool:
        freed = sum(b.workload.gpus for b in chosen)
        limit = queue.gpu.limit
        return limit == UNLIMITED or usage.gpu - freed + w.gpus <= limit + 1e-9

    return _best_victims(snapshot, w, candidates, within_limit)


def reclaim_victims(snapshot: Snapshot, queues: dict[str, Queue], queue: Queue, w: Workload) -> list[Bound] | None:
    """Preemptible pods of queues over their GPU quota, taken back by a queue that stays within its own."""
    if not under_quota_after(queue, snapshot.queues[queue.name], w):
        return None
    over = {}
    for name, usage in snapshot.queues.items():
        other = queues.get(name)
        if name != queue.name and other and other.gpu.quota != UNLIMITED and usage.gpu > other.gpu.quota + 1e-9:
            over[name] = usage.gpu - other.gpu.quota
    candidates = sorted(_lowest_priority_newest_first(b for name in over for b in snapshot.by_queue[name]
                                                      if b.workload.preemptible and not b.terminating),
                        key=lambda b: -over[b.workload.queue])  # stable: most-over queue first

    def victims_stay_at_quota(chosen: list[Bound]) -> bool:
        """Reclaim takes back over-quota use only: each victim is taken while its queue is still over quota."""
        taken: dict[str, float] = {}
        for victim in chosen:
            name = victim.workload.queue
            if taken.get(name, 0.0) >= over[name] - 1e-9:
                return False
            taken[name] = taken.get(name, 0.0) + victim.workload.gpus
        return True

    return _best_victims(snapshot, w, candidates, victims_stay_at_quota)


def _best_victims(snapshot: Snapshot, w: Workload, candidates: list[Bound], extra_ok) -> list[Bound] | None:
    best = None
    for node in snapshot.nodes.values():
        on_node = [b for b in candidates if b.placement.node == node.name]
        if not on_node and reject_reason(node, w) is not None:
            continue
        chosen = _evict_until_fits(node, w, on_node, extra_ok)
        if chosen and (best is None or len(chosen) < len(best)):
            best = chosen
    return best


@dataclass
class Decision:
    """What the rules allow for one pod on a snapshot: a placement, victims to evict first, or why not."""
    placement: Placement | None = None
    victims: list[Bound] | None = None
    reclaim: bool = False
    message: str = ""


def decide(snapshot: Snapshot, queues: dict[str, Queue], queue: Queue, w: Workload) -> Decision:
    """Quota admission, then filter and score, else preempt within the queue or reclaim from others."""
    usage = snapshot.queues[queue.name]
    limit_message = over_limit(queue, usage, w)
    if limit_message:
        victims = preemption_victims(snapshot, queue, w)
        return Decision(victims=victims) if victims else Decision(message=limit_message)
    quota_message = non_preemptible_over_quota(queue, usage, w)
    if quota_message:
        return Decision(message=quota_message)
    placement, reasons = best_placement(snapshot.nodes, w)
    if placement:
        return Decision(placement=placement)
    victims = preemption_victims(snapshot, queue, w)
    if victims:
        return Decision(victims=victims)
    victims = reclaim_victims(snapshot, queues, queue, w)
    if victims:
        return Decision(victims=victims, reclaim=True)
    return Decision(message=unschedulable_message(len(snapshot.nodes), reasons))
