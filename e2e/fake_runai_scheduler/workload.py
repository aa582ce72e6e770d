"""What a pod asks of the scheduler: queue, priority, preemptibility, GPUs, CPU, memory, placement.

Queue resolution follows KAI's CalcPodGroupQueue (owner label, pod label, project label), then
Run:ai's namespace convention (the namespace's runai/queue label), then 'default-queue'.
Priority comes from the PriorityClass a `priorityClassName` label names; a missing class means
train (50), and a job is preemptible below 100 unless kai.scheduler/preemptibility says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .quantities import bytes_, count, millicores

QUEUE_LABEL = "runai/queue"
PROJECT_LABEL = "project"
NODE_POOL_LABEL = "runai/node-pool"
PRIORITY_LABEL = "priorityClassName"
PREEMPTIBILITY_LABEL = "kai.scheduler/preemptibility"
FRACTION_ANNOTATION = "gpu-fraction"
GPU = "nvidia.com/gpu"
DEFAULT_QUEUE = "default-queue"
TRAIN_PRIORITY = 50
NON_PREEMPTIBLE_PRIORITY = 100
# Run:ai / KAI priority classes (KAI deployments/kai-scheduler/templates/priorityclasses).
RUNAI_PRIORITY_CLASSES = {"train": 50, "build-preemptible": 75, "interactive-preemptible": 75, "build": 100,
                          "inference": 125}


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

    @property
    def gpus(self) -> float:
        return self.whole_gpus + self.fraction

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def container_requests(pod: dict) -> tuple[int, float, float]:
    """(whole GPUs, CPU millicores, memory bytes) summed over the pod's containers."""
    gpus, cpu, memory = 0, 0.0, 0.0
    for container in pod["spec"].get("containers", []):
        resources = container.get("resources") or {}
        requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
        gpus += count(limits.get(GPU, requests.get(GPU)))
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
    fraction, invalid = 0.0, None
    raw_fraction = (meta.get("annotations") or {}).get(FRACTION_ANNOTATION)
    if raw_fraction is not None:
        try:
            fraction = float(raw_fraction)
        except ValueError:
            invalid = f"gpu-fraction annotation {raw_fraction!r} is not a number"
        else:
            if not 0 < fraction < 1:
                invalid = f"gpu-fraction annotation must be between 0 and 1 (exclusive), got {raw_fraction}"
            elif whole:
                invalid = (f"gpu-fraction annotation ({raw_fraction}) cannot be combined with an {GPU} limit "
                           f"({whole}); request either whole GPUs or a fraction")
    owner_uid = (owner or {}).get("metadata", {}).get("uid") or meta["uid"]
    return Workload(
        namespace=meta["namespace"], name=meta["name"], uid=meta["uid"],
        queue=resolve_queue(pod_labels, owner_labels, namespace_labels),
        priority=priority, preemptible=preemptible, whole_gpus=whole, fraction=fraction if not invalid else 0.0,
        cpu_m=cpu, memory=memory, node_selector=pod["spec"].get("nodeSelector") or {},
        tolerations=pod["spec"].get("tolerations") or [], node_pool=pod_labels.get(NODE_POOL_LABEL),
        created=meta.get("creationTimestamp", ""), group=f"pg-{meta['name']}-{owner_uid}", invalid=invalid,
    )
