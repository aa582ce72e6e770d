"""What a pod asks of the scheduler: queue, priority, preemptibility, GPUs, CPU, memory, placement.

Queue resolution follows KAI's CalcPodGroupQueue (owner label, pod label, project label), then
Run:ai's namespace convention (the namespace's runai/queue label), then 'default-queue'.
Priority comes from the PriorityClass a `priorityClassName` label names; a missing class means
train (50), and a job is preemptible below 100 unless kai.scheduler/preemptibility says otherwise.
A shared GPU request is a fraction or an amount of GPU memory (MiB) per device, on one or more
devices; memory becomes a fraction only on a node, against its `nvidia.com/gpu.memory` label.
"""

from __future__ import annotations

from dataclasses import dataclass

from runai.names import (
    BATCH_MIN_MEMBER_ANNOTATION,
    DEFAULT_QUEUE,
    DEVICES_ANNOTATION,
    FRACTION_ANNOTATION,
    GPU_RESOURCE,
    MEMORY_ANNOTATION,
    NODE_POOL_LABEL,
    NON_PREEMPTIBLE_PRIORITY,
    PREEMPTIBILITY_LABEL,
    PRIORITY_LABEL,
    PROJECT_LABEL,
    QUEUE_LABEL,
    TRAIN_PRIORITY,
)

from .quantities import bytes_, count, millicores


@dataclass
class Workload:
    namespace: str
    name: str
    uid: str
    queue: str
    priority: int
    preemptible: bool
    whole_gpus: int
    fraction: float
    cpu_m: float
    memory: float
    node_selector: dict
    tolerations: list
    node_pool: str | None
    created: str
    group: str
    invalid: str | None = None
    gpu_memory_mib: int = 0
    devices: int = 1  # devices a shared request spans
    # gpu_memory_mib as a share of one device: set for the node the pod is bound to, or, while pending,
    # against the largest labelled device (the least it can count against the queue's quota).
    memory_share: float = 0.0
    min_member: int = 1  # pods of its group that must be bound together (a gang when > 1)

    @property
    def shared(self) -> bool:
        return bool(self.fraction or self.gpu_memory_mib)

    @property
    def share(self) -> float:
        """The share of each device this pod takes."""
        return self.fraction or self.memory_share

    @property
    def gpus(self) -> float:
        return self.whole_gpus + self.share * self.devices

    @property
    def gang(self) -> bool:
        return self.min_member > 1

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def container_requests(pod: dict) -> tuple[int, float, float]:
    """(whole GPUs, CPU millicores, memory bytes) summed over the pod's containers."""
    gpus, cpu, memory = 0, 0.0, 0.0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        gpus += count(limits.get(GPU_RESOURCE, requests.get(GPU_RESOURCE)))
        cpu += millicores(requests.get("cpu", limits.get("cpu")))
        memory += bytes_(requests.get("memory", limits.get("memory")))
    return gpus, cpu, memory


def owner_job_key(pod: dict) -> str | None:
    for ref in pod["metadata"].get("ownerReferences", []):
        if ref.get("kind") == "Job":
            return f"{pod['metadata']['namespace']}/{ref['name']}"
    return None


def resolve_queue(pod_labels: dict, owner_labels: dict, namespace_labels: dict) -> str:
    for labels in (owner_labels, pod_labels):
        if labels.get(QUEUE_LABEL):
            return labels[QUEUE_LABEL]
    for labels in (owner_labels, pod_labels):
        if labels.get(PROJECT_LABEL):
            pool = pod_labels.get(NODE_POOL_LABEL)
            return f"{labels[PROJECT_LABEL]}-{pool}" if pool else labels[PROJECT_LABEL]
    return namespace_labels.get(QUEUE_LABEL) or DEFAULT_QUEUE


def resolve_priority(pod: dict, owner_labels: dict, priority_classes: dict[str, int]) -> tuple[int, bool]:
    pod_labels = pod["metadata"].get("labels") or {}
    name = owner_labels.get(PRIORITY_LABEL) or pod_labels.get(PRIORITY_LABEL) or pod["spec"].get("priorityClassName")
    priority = priority_classes.get(name, TRAIN_PRIORITY) if name else TRAIN_PRIORITY
    explicit = owner_labels.get(PREEMPTIBILITY_LABEL) or pod_labels.get(PREEMPTIBILITY_LABEL)
    if explicit in ("preemptible", "non-preemptible"):
        return priority, explicit == "preemptible"
    return priority, priority < NON_PREEMPTIBLE_PRIORITY


def workload_of(pod: dict, owner: dict | None, namespace: dict | None, priority_classes: dict[str, int]) -> Workload:
    meta = pod["metadata"]
    pod_labels = meta.get("labels") or {}
    owner_labels = (owner or {}).get("metadata", {}).get("labels") or {}
    namespace_labels = (namespace or {}).get("metadata", {}).get("labels") or {}
    whole, cpu, memory = container_requests(pod)
    priority, preemptible = resolve_priority(pod, owner_labels, priority_classes)
    shared, invalid = shared_request(meta.get("annotations") or {}, whole)
    fraction, gpu_memory_mib, devices = shared
    owner_uid = (owner or {}).get("metadata", {}).get("uid") or meta["uid"]
    min_member, gang_invalid = gang_size((owner or {}).get("metadata", {}).get("annotations") or {})
    group = f"pg-{owner['metadata']['name']}-{owner_uid}" if min_member > 1 else f"pg-{meta['name']}-{owner_uid}"
    return Workload(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        queue=resolve_queue(pod_labels, owner_labels, namespace_labels),
        priority=priority, preemptible=preemptible, whole_gpus=whole, fraction=fraction,
        cpu_m=cpu, memory=memory, node_selector=pod["spec"].get("nodeSelector") or {},
        tolerations=pod["spec"].get("tolerations") or [], node_pool=pod_labels.get(NODE_POOL_LABEL),
        created=meta.get("creationTimestamp", ""), group=group, invalid=invalid or gang_invalid,
        gpu_memory_mib=gpu_memory_mib, devices=devices, min_member=min_member,
    )


def gang_size(job_annotations: dict) -> tuple[int, str | None]:
    """(min_member, why the annotation is invalid or None): one PodGroup for the Job, bound all or nothing."""
    raw = job_annotations.get(BATCH_MIN_MEMBER_ANNOTATION)
    if raw is None:
        return 1, None
    if not raw.isdigit() or int(raw) < 1:
        return 1, f"{BATCH_MIN_MEMBER_ANNOTATION} annotation must be a whole number >= 1, got {raw!r}"
    return int(raw), None


def shared_request(annotations: dict, whole: int) -> tuple[tuple[float, int, int], str | None]:
    """((fraction, GPU memory MiB, devices), why the annotations are invalid or None)."""
    nothing = (0.0, 0, 1)
    raw_fraction, raw_memory = annotations.get(FRACTION_ANNOTATION), annotations.get(MEMORY_ANNOTATION)
    raw_devices = annotations.get(DEVICES_ANNOTATION)
    fraction, memory, devices = 0.0, 0, 1
    if raw_fraction is not None:
        try:
            fraction = float(raw_fraction)
        except ValueError:
            return nothing, f"gpu-fraction annotation {raw_fraction!r} is not a number"
        if not 0 < fraction < 1:
            return nothing, f"gpu-fraction annotation must be between 0 and 1 (exclusive), got {raw_fraction}"
    if raw_memory is not None:
        if not raw_memory.isdigit() or int(raw_memory) < 1:
            return nothing, f"gpu-memory annotation must be a whole number of MiB, got {raw_memory!r}"
        if raw_fraction is not None:
            return nothing, "gpu-memory and gpu-fraction annotations are exclusive; request one of them"
        memory = int(raw_memory)
    if (fraction or memory) and whole:
        name, value = (FRACTION_ANNOTATION, raw_fraction) if fraction else (MEMORY_ANNOTATION, raw_memory)
        return nothing, (f"{name} annotation ({value}) cannot be combined with an {GPU_RESOURCE} limit ({whole}); "
                         f"request either whole GPUs or a share of a GPU")
    if raw_devices is not None:
        if not raw_devices.isdigit() or int(raw_devices) < 1:
            return nothing, f"gpu-fraction-num-devices annotation must be a whole number >= 1, got {raw_devices!r}"
        if not (fraction or memory):
            return nothing, "gpu-fraction-num-devices annotation needs a gpu-fraction or gpu-memory annotation"
        devices = int(raw_devices)
    return (fraction, memory, devices), None
