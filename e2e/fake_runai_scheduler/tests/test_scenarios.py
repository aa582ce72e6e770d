"""One row per Run:ai scheduling rule, run against a real kube-apiserver.

Each scenario declares nodes and queues, then steps: create a pod, and expect outcomes (bound
with annotations, Unschedulable with a Run:ai reason, or evicted by preemption or reclaim).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from .harness import (
    create_pod,
    events_for,
    get_pod,
    pod_body,
    queue,
    stays_unbound,
    wait_bound,
    wait_unschedulable,
    wait_until,
)

pytestmark = pytest.mark.cluster
HOLD_FINALIZER = "runai-mlflow.test/hold"
BUILD = {"priorityClassName": "build"}  # interactive: non-preemptible (priority 100)


@dataclass
class Node:
    gpus: int = 4
    labels: dict = field(default_factory=dict)
    taints: list = field(default_factory=list)
    ready: bool = True
    cpu: str = "32"
    pool: str | None = None  # default: the test's own pool
    gpu_memory_mib: int | None = 16384  # the nvidia.com/gpu.memory label; None: no label


@dataclass
class Pod:
    name: str
    gpus: int = 0
    fraction: float | None = None
    queue: str | None = "team-a"
    labels: dict = field(default_factory=dict)
    node_selector: dict = field(default_factory=dict)
    tolerations: list = field(default_factory=list)
    cpu: str = "100m"
    pool: str | None = None
    annotations: dict = field(default_factory=dict)  # gpu-memory, gpu-fraction-num-devices
    hold: bool = False  # a finalizer keeps the deleted pod readable, to see what the scheduler wrote on it


@dataclass
class Bound:
    pod: str
    node: int | None = None  # index into the scenario's nodes
    annotations: dict = field(default_factory=dict)
    same_gpu_as: str | None = None


@dataclass
class Unschedulable:
    pod: str
    says: str


@dataclass
class Evicted:
    pod: str
    says: str
    disruption_target: bool | None = None  # whether the pod must carry DisruptionTarget (needs Pod.hold)


@dataclass
class Scenario:
    nodes: list[Node]
    steps: list[tuple[Pod, list]]
    queues: list[dict] = field(default_factory=lambda: [queue("team-a")])
    update_pod_eviction_condition: bool = False


SCENARIOS = {
    "whole-gpus-fit-on-allocatable": Scenario(
        [Node(gpus=2)],
        [(Pod("a", gpus=2), [Bound("a", 0, {"received-resource-type": "Regular", "runai-allocated-gpus": "2"})]),
         (Pod("b", gpus=1), [Unschedulable("b", "didn't have enough free GPUs")])]),
    "whole-gpus-pick-the-node-with-room": Scenario(
        [Node(gpus=1), Node(gpus=4)],
        [(Pod("a", gpus=3), [Bound("a", 1)])]),
    "fractions-pack-onto-one-gpu": Scenario(
        [Node(gpus=1)],
        [(Pod("a", fraction=0.5), [Bound("a", 0, {"received-resource-type": "Fraction",
                                                  "runai-allocated-gpus": "0.5"})]),
         (Pod("b", fraction=0.5), [Bound("b", 0, same_gpu_as="a")]),
         (Pod("c", fraction=0.25), [Unschedulable("c", "GPU with enough free share")])]),
    "fractions-never-exceed-one-gpu": Scenario(
        [Node(gpus=2)],
        [(Pod("a", fraction=0.7), [Bound("a", 0)]),
         (Pod("b", fraction=0.7), [Bound("b", 0)]),
         (Pod("c", fraction=0.3), [Bound("c", 0, same_gpu_as="a")]),
         (Pod("d", gpus=1), [Unschedulable("d", "didn't have enough free GPUs")])]),
    "gpu-memory-packs-by-the-node-label": Scenario(
        [Node(gpus=1, gpu_memory_mib=16384)],
        [(Pod("a", annotations={"gpu-memory": "8192"}), [Bound("a", 0, {"received-resource-type": "Fraction",
                                                                        "runai-allocated-gpus": "0.5"})]),
         (Pod("b", annotations={"gpu-memory": "4096"}), [Bound("b", 0, {"runai-allocated-gpus": "0.25"},
                                                               same_gpu_as="a")]),
         (Pod("c", annotations={"gpu-memory": "8192"}), [Unschedulable("c", "GPU with enough free share")])]),
    # A bound pod first: a new node can carry the not-ready taint for a moment, which would be the reason.
    "gpu-memory-needs-the-memory-label": Scenario(
        [Node(gpus=4, gpu_memory_mib=None)],
        [(Pod("b", fraction=0.5), [Bound("b", 0)]),
         (Pod("a", annotations={"gpu-memory": "1024"}), [Unschedulable("a", "gpu memory count not synced")])]),
    "gpu-memory-larger-than-any-device": Scenario(
        [Node(gpus=2, gpu_memory_mib=16384)],
        [(Pod("b", annotations={"gpu-memory": "16384"}), [Bound("b", 0, {"runai-allocated-gpus": "1"})]),
         (Pod("a", annotations={"gpu-memory": "20000"}), [Unschedulable("a", "GPUs with enough memory")])]),
    "gpu-memory-and-fraction-are-exclusive": Scenario(
        [Node()],
        [(Pod("a", fraction=0.5, annotations={"gpu-memory": "1024"}), [Unschedulable("a", "are exclusive")])]),
    "fraction-on-several-devices": Scenario(
        [Node(gpus=2)],
        [(Pod("a", fraction=0.5, annotations={"gpu-fraction-num-devices": "2"}), [
            Bound("a", 0, {"received-resource-type": "Fraction", "runai-allocated-gpus": "1",
                           "runai-gpu-index": "0,1"})]),
         (Pod("b", fraction=0.5), [Bound("b", 0)]),
         (Pod("c", fraction=0.25, annotations={"gpu-fraction-num-devices": "2"}), [
             Unschedulable("c", "didn't have 2 GPUs with enough free share")]),
         (Pod("d", gpus=1), [Unschedulable("d", "didn't have enough free GPUs")])]),
    "gpu-memory-on-several-devices": Scenario(
        [Node(gpus=4, gpu_memory_mib=8192)],
        [(Pod("a", annotations={"gpu-memory": "2048", "gpu-fraction-num-devices": "3"}), [
            Bound("a", 0, {"runai-allocated-gpus": "0.75", "runai-gpu-index": "0,1,2"})]),
         (Pod("b", gpus=1), [Bound("b", 0)]),
         (Pod("c", gpus=1), [Unschedulable("c", "didn't have enough free GPUs")])]),
    "num-devices-needs-a-shared-request": Scenario(
        [Node()],
        [(Pod("a", gpus=1, annotations={"gpu-fraction-num-devices": "2"}), [
            Unschedulable("a", "needs a gpu-fraction or gpu-memory annotation")])]),
    "fraction-with-gpu-limit-is-rejected": Scenario(
        [Node()],
        [(Pod("a", gpus=1, fraction=0.5), [Unschedulable("a", "cannot be combined with an nvidia.com/gpu limit")])]),
    "over-limit": Scenario(
        [Node(gpus=8)],
        [(Pod("a", gpus=2), [Bound("a")]),
         (Pod("b", gpus=1), [Unschedulable("b", "team-a quota has reached the allowable limit of GPUs. Limit is 2 "
                                                "GPUs, currently 2 GPUs allocated and workload requested 1 GPUs")])],
        queues=[queue("team-a", quota=2, limit=2)]),
    "non-preemptible-over-quota": Scenario(
        [Node(gpus=8)],
        [(Pod("a", gpus=1, labels=BUILD), [Bound("a")]),
         (Pod("b", gpus=1, labels=BUILD), [Unschedulable("b", "Non-preemptible workload is over quota. Workload "
                                                              "requested 1 GPUs, but team-a quota is 1 GPUs")])],
        queues=[queue("team-a", quota=1)]),
    "preemptible-train-may-go-over-quota": Scenario(
        [Node(gpus=8)],
        [(Pod("a", gpus=1), [Bound("a")]), (Pod("b", gpus=2), [Bound("b")])],
        queues=[queue("team-a", quota=1)]),
    "preempt-lower-priority-in-queue": Scenario(
        [Node(gpus=1)],
        [(Pod("train", gpus=1), [Bound("train")]),
         (Pod("build", gpus=1, labels=BUILD), [
             Evicted("train", "was preempted by higher priority workload"), Bound("build")])],
        queues=[queue("team-a", quota=1)]),
    "preempt-deletes-only-by-default": Scenario(
        [Node(gpus=1)],
        [(Pod("train", gpus=1, hold=True), [Bound("train")]),
         (Pod("build", gpus=1, labels=BUILD), [
             Evicted("train", "was preempted by higher priority workload", disruption_target=False),
             Bound("build")])],
        queues=[queue("team-a", quota=1)]),
    "preempt-marks-disruption-target": Scenario(
        [Node(gpus=1)],
        [(Pod("train", gpus=1, hold=True), [Bound("train")]),
         (Pod("build", gpus=1, labels=BUILD), [
             Evicted("train", "was preempted by higher priority workload", disruption_target=True),
             Bound("build")])],
        queues=[queue("team-a", quota=1)], update_pod_eviction_condition=True),
    "reclaim-marks-disruption-target": Scenario(
        [Node(gpus=2)],
        [(Pod("a1", gpus=1, queue="team-a"), [Bound("a1")]),
         (Pod("a2", gpus=1, queue="team-a", hold=True), [Bound("a2")]),
         (Pod("b1", gpus=1, queue="team-b"), [
             Evicted("a2", "was preempted by workload", disruption_target=True), Bound("b1")])],
        queues=[queue("team-a", quota=1), queue("team-b", quota=1)], update_pod_eviction_condition=True),
    "reclaim-across-queues": Scenario(
        [Node(gpus=2)],
        [(Pod("a1", gpus=1, queue="team-a"), [Bound("a1")]),
         (Pod("a2", gpus=1, queue="team-a"), [Bound("a2")]),
         (Pod("b1", gpus=1, queue="team-b"), [Evicted("a2", "was preempted by workload"), Bound("b1")])],
        queues=[queue("team-a", quota=1), queue("team-b", quota=1)]),
    "no-reclaim-from-a-queue-within-quota": Scenario(
        [Node(gpus=1)],
        [(Pod("a1", gpus=1, queue="team-a"), [Bound("a1")]),
         (Pod("b1", gpus=1, queue="team-b"), [Unschedulable("b1", "didn't have enough free GPUs")])],
        queues=[queue("team-a", quota=1), queue("team-b", quota=1)]),
    "node-type-selector": Scenario(
        [Node(labels={"run.ai/type": "t4"}), Node(labels={"run.ai/type": "a100"})],
        [(Pod("a", gpus=1, node_selector={"run.ai/type": "a100"}), [Bound("a", 1)]),
         (Pod("b", gpus=1, node_selector={"run.ai/type": "v100"}), [Unschedulable("b", "node selector")])]),
    "node-pool": Scenario(
        [Node(pool="pool-x"), Node(pool="pool-y")],
        [(Pod("a", gpus=1, pool="pool-y"), [Bound("a", 1)]),
         (Pod("b", gpus=1, pool="pool-z"), [Unschedulable("b", "in another node pool")])]),
    "taints-and-tolerations": Scenario(
        [Node(taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}])],
        [(Pod("a", gpus=1), [Unschedulable("a", "untolerated taint")]),
         (Pod("b", gpus=1, tolerations=[{"key": "dedicated", "operator": "Equal", "value": "ml",
                                         "effect": "NoSchedule"}]), [Bound("b", 0)])]),
    "node-readiness": Scenario(
        [Node(ready=False)],
        [(Pod("a", gpus=1), [Unschedulable("a", "not ready")])]),
    "cpu-fit": Scenario(
        [Node(cpu="2")],
        [(Pod("a", cpu="1500m"), [Bound("a", 0)]), (Pod("b", cpu="1"), [Unschedulable("b", "Insufficient cpu")])]),
    "unknown-queue": Scenario(
        [Node()],
        [(Pod("a", gpus=1, queue="nope"), [Unschedulable("a", "Queue 'nope' does not exist")])]),
    "queue-from-project-label": Scenario(
        [Node(gpus=8)],
        [(Pod("b", gpus=1, queue=None, labels={"project": "team-a"}),
          [Unschedulable("b", "Queue 'team-a-")])],  # KAI: project label + node pool -> queue <project>-<pool>
        queues=[queue("team-a", limit=2)]),
}


def release(api, namespace: str, name: str) -> None:
    """Drop the test's finalizer so the deleted pod goes away (the namespace could not be removed otherwise)."""
    api.request("PATCH", f"/api/v1/namespaces/{namespace}/pods/{name}", body={"metadata": {"finalizers": None}},
                content_type="application/merge-patch+json")


def _check(api, namespace, names, node_names, expectation) -> None:
    if isinstance(expectation, Bound):
        pod = wait_bound(api, namespace, names[expectation.pod])
        if expectation.node is not None:
            assert pod["spec"]["nodeName"] == node_names[expectation.node]
        annotations = pod["metadata"].get("annotations", {})
        for key, value in expectation.annotations.items():
            assert annotations.get(key) == value, (key, annotations)
        assert annotations["pod-group-name"].startswith(f"pg-{names[expectation.pod]}-")
        # the Scheduled event is written asynchronously, just after the binding
        wait_until(lambda: events_for(api, namespace, names[expectation.pod], "Scheduled"), 5,
                   what=f"Scheduled event of {names[expectation.pod]}")
        if annotations.get("received-resource-type") == "Fraction":
            assert pod["metadata"]["labels"]["runai-gpu-group"] == annotations["runai-gpu-group"]
        if expectation.same_gpu_as:
            other = get_pod(api, namespace, names[expectation.same_gpu_as])
            assert other["metadata"]["labels"]["runai-gpu-group"] == pod["metadata"]["labels"]["runai-gpu-group"]
    elif isinstance(expectation, Unschedulable):
        message = wait_unschedulable(api, namespace, names[expectation.pod])
        assert expectation.says in message, message
        assert stays_unbound(api, namespace, names[expectation.pod], 0.5)
    elif isinstance(expectation, Evicted):
        name = names[expectation.pod]
        if expectation.disruption_target is not None:
            pod = wait_until(lambda: (p := get_pod(api, namespace, name)) and p["metadata"].get("deletionTimestamp")
                             and p, 20, what=f"{name} deleted")
            conditions = {c["type"]: c for c in pod["status"].get("conditions", [])}
            if expectation.disruption_target:
                marked = conditions["DisruptionTarget"]
                assert (marked["status"], marked["reason"]) == ("True", "PreemptionByScheduler"), marked
                assert expectation.says in marked["message"], marked
            else:
                assert "DisruptionTarget" not in conditions, conditions
            release(api, namespace, name)
        wait_until(lambda: get_pod(api, namespace, name) is None, 20, what=f"{name} evicted")
        [event] = events_for(api, namespace, name, "Evict")
        assert expectation.says in event["message"], event["message"]


@pytest.mark.parametrize("scenario", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_scheduling_rule(api, nodes, namespace, start_scheduler, pool, scenario):
    node_names = [nodes.create(pool if n.pool is None else f"{pool}-{n.pool}", gpus=n.gpus, labels=n.labels,
                               taints=n.taints, ready=n.ready, cpu=n.cpu, gpu_memory_mib=n.gpu_memory_mib)
                  for n in scenario.nodes]
    scheduler = start_scheduler(scenario.queues, update_pod_eviction_condition=scenario.update_pod_eviction_condition)
    names = {}
    for spec, expectations in scenario.steps:
        names[spec.name] = spec.name
        spec_pool = pool if spec.pool is None else f"{pool}-{spec.pool}"
        body = pod_body(spec.name, scheduler.name, spec_pool, spec.gpus, spec.fraction, spec.queue, spec.labels,
                        spec.node_selector, spec.tolerations, spec.cpu, annotations=spec.annotations)
        if spec.hold:
            body["metadata"]["finalizers"] = [HOLD_FINALIZER]
        create_pod(api, namespace, body)
        for expectation in expectations:
            _check(api, namespace, names, node_names, expectation)
