"""A point-in-time view of nodes, bound pods and queue usage that a scheduling cycle decides on.

GPUs are tracked per device, as Run:ai does: whole-GPU pods take free devices; fraction pods share
a device up to 1.0 in total. A device holding fractions is no longer free for whole GPUs.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field

from .quantities import bytes_, count, millicores
from .workload import GPU, Workload, container_requests

GPU_INDEX_ANNOTATION = "runai-gpu-index"
EPSILON = 1e-9


@dataclass
class Placement:
    node: str
    device: int | None = None  # for fractions


@dataclass
class Bound:
    workload: Workload | None  # None for pods of other schedulers
    placement: Placement
    whole_gpus: int
    fraction: float
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
        if bound.fraction:
            device = bound.placement.device
            if device is None or self.devices.get(device, 0) + bound.fraction > 1 + EPSILON:
                device = self.fraction_device(bound.fraction)
                device = device if device is not None else max(self.devices, default=-1) + 1
                bound.placement.device = device
            self.devices[device] = self.devices.get(device, 0.0) + bound.fraction

    def without(self, victims: list[Bound]) -> NodeState:
        """This node as it would be once ``victims`` are gone."""
        clone = copy.copy(self)
        clone.used_cpu_m, clone.used_memory, clone.used_pods, clone.whole_used = 0.0, 0.0, 0, 0
        clone.devices, clone.bound = {}, []
        ids = {id(v) for v in victims}
        for bound in self.bound:
            if id(bound) not in ids:
                clone.add(copy.copy(bound))
        return clone

    def fraction_device(self, fraction: float) -> int | None:
        """Best fit: the fullest device that still has room; else a new device if one is free."""
        fitting = [(used, -index) for index, used in self.devices.items() if used + fraction <= 1 + EPSILON]
        if fitting:
            return -max(fitting)[1]  # fullest first, then the lowest index
        if self.free_devices >= 1:
            taken = set(self.devices)
            return next(i for i in range(self.gpu_devices + len(taken) + 1) if i not in taken)
        return None


@dataclass
class QueueUsage:
    gpu: float = 0.0
    cpu_m: float = 0.0
    memory_mb: float = 0.0
    non_preemptible_gpu: float = 0.0
    non_preemptible_cpu_m: float = 0.0
    non_preemptible_memory_mb: float = 0.0

    def add(self, w: Workload) -> None:
        self.gpu += w.gpus
        self.cpu_m += w.cpu_m
        self.memory_mb += w.memory / 1e6
        if not w.preemptible:
            self.non_preemptible_gpu += w.gpus
            self.non_preemptible_cpu_m += w.cpu_m
            self.non_preemptible_memory_mb += w.memory / 1e6


def node_state(node: dict) -> NodeState:
    status, meta = node.get("status", {}), node["metadata"]
    alloc = status.get("allocatable") or {}
    labels = meta.get("labels") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    alloc_gpus = count(alloc.get(GPU))
    devices = int(labels.get("nvidia.com/gpu.count", alloc_gpus) or 0)
    return NodeState(name=meta["name"], labels=labels, taints=(node.get("spec") or {}).get("taints") or [],
                     ready=ready, unschedulable=bool((node.get("spec") or {}).get("unschedulable")),
                     alloc_cpu_m=millicores(alloc.get("cpu")), alloc_memory=bytes_(alloc.get("memory")),
                     alloc_pods=count(alloc.get("pods", 110)), alloc_gpus=alloc_gpus, gpu_devices=devices)


def pod_is_active(pod: dict) -> bool:
    return pod.get("status", {}).get("phase") not in ("Succeeded", "Failed")


class Snapshot:
    def __init__(self, nodes: list[dict]):
        self.nodes: dict[str, NodeState] = {n["metadata"]["name"]: node_state(n) for n in nodes}
        self.queues: dict[str, QueueUsage] = defaultdict(QueueUsage)
        self.by_queue: dict[str, list[Bound]] = defaultdict(list)

    def add_bound(self, pod: dict, node: str, workload: Workload | None, device: int | None = None) -> None:
        if workload is not None:
            whole, fraction, cpu, memory = workload.whole_gpus, workload.fraction, workload.cpu_m, workload.memory
        else:
            whole, cpu, memory = container_requests(pod)
            fraction = 0.0
        if device is None:
            raw = (pod["metadata"].get("annotations") or {}).get(GPU_INDEX_ANNOTATION)
            device = int(raw) if raw and raw.isdigit() else None
        bound = Bound(workload, Placement(node, device), whole, fraction, cpu, memory,
                      terminating=bool(pod["metadata"].get("deletionTimestamp")))
        if node in self.nodes:
            self.nodes[node].add(bound)
        if workload is not None:
            self.queues[workload.queue].add(workload)
            self.by_queue[workload.queue].append(bound)
