"""A point-in-time view of nodes, bound pods and queue usage that a scheduling cycle decides on.

GPUs are tracked per device, as Run:ai does: whole-GPU pods take free devices; shared pods (a
fraction, or GPU memory as a share of the node's device memory) take their share on one device, or
on each of several distinct devices, up to 1.0 per device. A device holding shares is no longer free
for whole GPUs.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field

from runai.names import GPU_COUNT_LABEL, GPU_INDEX_ANNOTATION, GPU_MEMORY_LABEL, GPU_RESOURCE

from .quantities import bytes_, count, millicores
from .workload import Workload, container_requests

EPSILON = 1e-9


@dataclass
class Placement:
    node: str
    devices: list[int] = field(default_factory=list)  # for shared requests


@dataclass
class Bound:
    workload: Workload | None  # None for pods of other schedulers
    placement: Placement
    whole_gpus: int
    share: float  # of each device in placement.devices
    devices: int
    cpu_m: float
    memory: float
    terminating: bool


@dataclass
class NodeState:
    name: str
    labels: dict
    taints: list
    ready: bool
    unschedulable: bool
    alloc_cpu_m: float
    alloc_memory: float
    alloc_pods: int
    alloc_gpus: int
    gpu_devices: int
    gpu_memory_mib: int = 0  # per device, from the label; 0 when the label is missing
    used_cpu_m: float = 0.0
    used_memory: float = 0.0
    used_pods: int = 0
    whole_used: int = 0
    devices: dict[int, float] = field(default_factory=dict)  # device index -> fraction in use
    bound: list[Bound] = field(default_factory=list)

    @property
    def free_devices(self) -> int:
        return self.gpu_devices - self.whole_used - len(self.devices)

    def add(self, bound: Bound) -> None:
        self.bound.append(bound)
        self.used_cpu_m += bound.cpu_m
        self.used_memory += bound.memory
        self.used_pods += 1
        self.whole_used += bound.whole_gpus
        if bound.share:
            chosen = bound.placement.devices
            if len(set(chosen)) != bound.devices or any(
                    self.devices.get(d, 0) + bound.share > 1 + EPSILON for d in chosen):
                # Unknown or stale device indices (a pod bound before a restart): place it as it would be now.
                chosen = self.shared_devices(bound.share, bound.devices) or [
                    max(self.devices, default=-1) + 1 + i for i in range(bound.devices)]
                bound.placement.devices = chosen
            for device in chosen:
                self.devices[device] = self.devices.get(device, 0.0) + bound.share

    def without(self, victims: list[Bound]) -> NodeState:
        """This node as it would be once ``victims`` are gone (a copy: this one is unchanged)."""
        ids = {id(v) for v in victims}
        clone = copy.copy(self)
        clone._refill([copy.copy(b) for b in self.bound if id(b) not in ids])
        return clone

    def drop(self, gone: list[Bound]) -> None:
        """Forget ``gone`` in place, keeping the other Bound objects (the queues' lists hold the same ones)."""
        ids = {id(b) for b in gone}
        self._refill([b for b in self.bound if id(b) not in ids])

    def _refill(self, bounds: list[Bound]) -> None:
        self.used_cpu_m, self.used_memory, self.used_pods, self.whole_used = 0.0, 0.0, 0, 0
        self.devices, self.bound = {}, []
        for bound in bounds:
            self.add(bound)

    def share_of(self, w: Workload) -> float | None:
        """The share of one device ``w`` takes here; None when this node cannot express it (no memory label)."""
        if w.gpu_memory_mib:
            return w.gpu_memory_mib / self.gpu_memory_mib if self.gpu_memory_mib else None
        return w.fraction

    def shared_devices(self, share: float, count: int = 1) -> list[int] | None:
        """Best fit for ``count`` distinct devices: the fullest ones that still have room, then free ones."""
        fitting = sorted(((-used, index) for index, used in self.devices.items() if used + share <= 1 + EPSILON))
        chosen = [index for _, index in fitting[:count]]
        missing = count - len(chosen)
        if missing > self.free_devices:
            return None
        taken = set(self.devices)
        free = (i for i in range(self.gpu_devices + len(taken) + 1) if i not in taken)
        return chosen + [next(free) for _ in range(missing)]


@dataclass
class QueueUsage:
    gpu: float = 0.0
    cpu_m: float = 0.0
    memory_mb: float = 0.0
    non_preemptible_gpu: float = 0.0
    non_preemptible_cpu_m: float = 0.0
    non_preemptible_memory_mb: float = 0.0

    def add(self, w: Workload, sign: int = 1) -> None:
        """Count ``w`` in (sign 1) or, once it is gone, out (sign -1)."""
        self.gpu += sign * w.gpus
        self.cpu_m += sign * w.cpu_m
        self.memory_mb += sign * w.memory / 1e6
        if not w.preemptible:
            self.non_preemptible_gpu += sign * w.gpus
            self.non_preemptible_cpu_m += sign * w.cpu_m
            self.non_preemptible_memory_mb += sign * w.memory / 1e6


def node_state(node: dict) -> NodeState:
    status, meta = node.get("status", {}), node["metadata"]
    alloc = status.get("allocatable") or {}
    labels = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    alloc_gpus = count(alloc.get(GPU_RESOURCE))
    devices = int(labels.get(GPU_COUNT_LABEL, alloc_gpus) or 0)
    memory = labels.get(GPU_MEMORY_LABEL, "")
    return NodeState(name=meta["name"], labels=labels, taints=(node.get("spec") or {}).get("taints") or [],
                     ready=ready, unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
                     alloc_cpu_m=millicores(alloc.get("cpu")), alloc_memory=bytes_(alloc.get("memory")),
                     alloc_pods=count(alloc.get("pods", 110)), alloc_gpus=alloc_gpus, gpu_devices=devices,
                     gpu_memory_mib=int(memory) if memory.isdigit() else 0)


def pod_is_active(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


class Snapshot:
    def __init__(self, nodes: list[dict]):
        self.nodes: dict[str, NodeState] = {n["metadata"]["name"]: node_state(n) for n in nodes}
        self.queues: dict[str, QueueUsage] = defaultdict(QueueUsage)
        self.by_queue: dict[str, list[Bound]] = defaultdict(list)

    def add_bound(self, pod: dict, node: str, workload: Workload | None, devices: list[int] | None = None) -> None:
        devices_wanted = 1
        if workload is not None:
            if workload.gpu_memory_mib and node in self.nodes:
                workload.memory_share = self.nodes[node].share_of(workload) or 0.0  # counted as placed
            whole, share, cpu, memory = workload.whole_gpus, workload.share, workload.cpu_m, workload.memory
            devices_wanted = workload.devices
        else:
            whole, cpu, memory = container_requests(pod)
            share = 0.0
        if devices is None:
            raw = (pod["metadata"].get("annotations") or {}).get(GPU_INDEX_ANNOTATION, "")
            devices = [int(d) for d in raw.split(",") if d.isdigit()]
        bound = Bound(workload, Placement(node, list(devices)), whole, share, devices_wanted, cpu, memory,
                      terminating=bool(pod["metadata"].get("deletionTimestamp")))
        if node in self.nodes:
            self.nodes[node].add(bound)
        if workload is not None:
            self.queues[workload.queue].add(workload)
            self.by_queue[workload.queue].append(bound)

    def copy(self) -> Snapshot:
        """A trial copy: a gang is placed member by member on it before anything is written."""
        return copy.deepcopy(self)

    def remove(self, victims: list[Bound]) -> None:
        """The snapshot as it will be once ``victims`` (its own Bound objects) are gone."""
        by_node: dict[str, list[Bound]] = defaultdict(list)
        for victim in victims:
            by_node[victim.placement.node].append(victim)
            if victim.workload is not None:
                self.queues[victim.workload.queue].add(victim.workload, sign=-1)
                self.by_queue[victim.workload.queue] = [b for b in self.by_queue[victim.workload.queue]
                                                        if b is not victim]
        for node, gone in by_node.items():
            if node in self.nodes:
                self.nodes[node].drop(gone)

    def bound(self) -> list[Bound]:
        """Every bound pod of a known queue."""
        return [b for bounds in self.by_queue.values() for b in bounds]

    def same_bounds(self, others: list[Bound]) -> list[Bound]:
        """This snapshot's Bound objects for the pods of ``others`` (found on a trial copy)."""
        uids = {b.workload.uid for b in others if b.workload is not None}
        return [b for b in self.bound() if b.workload.uid in uids]

    def with_gangs(self, victims: list[Bound]) -> list[Bound]:
        """The victims and every other bound member of their gangs, each once, in order."""
        groups = {v.workload.group for v in victims if v.workload is not None and v.workload.gang}
        chosen = {id(v): v for v in victims}
        for bound in self.bound():
            if bound.workload.group in groups and not bound.terminating:
                chosen.setdefault(id(bound), bound)
        return list(chosen.values())
