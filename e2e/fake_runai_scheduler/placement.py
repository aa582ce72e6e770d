"""Filter and score, as kube-scheduler does: which nodes can take a workload, and which is best.

Scoring packs GPUs (Run:ai's default bin-packing): the node left with the fewest free GPUs wins,
so whole devices stay free for large jobs; among those, the one whose shared devices end fullest.
"""

from __future__ import annotations

from collections import Counter

from runai.names import GPU_MEMORY_LABEL, NODE_POOL_LABEL

from .snapshot import EPSILON, NodeState, Placement
from .workload import Workload


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
    if w.shared:
        share = node.share_of(w)
        if share is None:  # KAI's words: the node's GPU memory is unknown without the label
            return f"node(s) didn't have the {GPU_MEMORY_LABEL} label (gpu memory count not synced)"
        if share > 1 + EPSILON:
            return "node(s) didn't have GPUs with enough memory"
        if node.shared_devices(share, w.devices) is None:
            return ("node(s) didn't have a GPU with enough free share" if w.devices == 1
                    else f"node(s) didn't have {w.devices} GPUs with enough free share")
    return None


def best_placement(nodes: dict[str, NodeState], w: Workload) -> tuple[Placement | None, Counter]:
    reasons: Counter = Counter()
    candidates = []
    for node in nodes.values():
        reason = reject_reason(node, w)
        if reason:
            reasons[reason] += 1
            continue
        share = node.share_of(w) or 0.0
        devices = node.shared_devices(share, w.devices) if w.shared else []
        free_after = node.free_devices - w.whole_gpus - sum(1 for d in devices if d not in node.devices)
        shared_after = sum(node.devices.get(d, 0.0) + share for d in devices)
        candidates.append(((free_after, -shared_after, node.name), Placement(node.name, devices)))
    if not candidates:
        return None, reasons
    return min(candidates, key=lambda c: c[0])[1], reasons


def unschedulable_message(total_nodes: int, reasons: Counter) -> str:
    details = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    return f"Unable to schedule pod: 0/{total_nodes} nodes are available: {details}."
