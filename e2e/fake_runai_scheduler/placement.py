"""Filter and score, as kube-scheduler does: which nodes can take a workload, and which is best.

Scoring packs GPUs (Run:ai's default bin-packing): the node left with the fewest free GPUs wins,
so whole devices stay free for large jobs.
"""

from __future__ import annotations

from collections import Counter

from .snapshot import EPSILON, NodeState, Placement
from .workload import NODE_POOL_LABEL, Workload


def tolerates(tolerations: list, taint: dict) -> bool:
    for toleration in tolerations:
        if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
            continue
        if toleration.get("operator") == "Exists":
            if not toleration.get("key") or toleration["key"] == taint.get("key"):
                return True
        elif toleration.get("key") == taint.get("key") and toleration.get("value", "") == taint.get("value", ""):
            return True
    return False


def reject_reason(node: NodeState, w: Workload) -> str | None:
    """Why ``node`` cannot take ``w`` now, or None if it can."""
    if not node.ready:
        return "node(s) were not ready"
    if node.unschedulable:
        return "node(s) were unschedulable"
    if node.labels.get(NODE_POOL_LABEL) != w.node_pool:
        return "node(s) were in another node pool"
    if any(node.labels.get(key) != value for key, value in w.node_selector.items()):
        return "node(s) didn't match Pod's node selector"
    for taint in node.taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not tolerates(w.tolerations, taint):
            return "node(s) had untolerated taint"
    if node.used_pods + 1 > node.alloc_pods:
        return "Too many pods"
    if node.used_cpu_m + w.cpu_m > node.alloc_cpu_m + EPSILON:
        return "Insufficient cpu"
    if node.used_memory + w.memory > node.alloc_memory + EPSILON:
        return "Insufficient memory"
    if w.whole_gpus and (w.whole_gpus > node.free_devices or node.whole_used + w.whole_gpus > node.alloc_gpus):
        return "node(s) didn't have enough free GPUs"
    if w.fraction and node.fraction_device(w.fraction) is None:
        return "node(s) didn't have a GPU with enough free share"
    return None


def best_placement(nodes: dict[str, NodeState], w: Workload) -> tuple[Placement | None, Counter]:
    reasons: Counter = Counter()
    candidates = []
    for node in nodes.values():
        reason = reject_reason(node, w)
        if reason:
            reasons[reason] += 1
            continue
        device = node.fraction_device(w.fraction) if w.fraction else None
        free_after = node.free_devices - w.whole_gpus - (1 if w.fraction and device not in node.devices else 0)
        shared_after = node.devices.get(device, 0.0) + w.fraction if device is not None else 0.0
        candidates.append(((free_after, -shared_after, node.name), Placement(node.name, device)))
    if not candidates:
        return None, reasons
    return min(candidates, key=lambda c: c[0])[1], reasons


def unschedulable_message(total_nodes: int, reasons: Counter) -> str:
    details = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    return f"Unable to schedule pod: 0/{total_nodes} nodes are available: {details}."
