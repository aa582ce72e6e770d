"""Fake GPUs on real nodes, fake nodes without kubelets, and plain pods for a scheduler to place.

There is no device plugin: a node's GPUs are a status patch (capacity and allocatable) plus the
labels Run:ai's scheduler reads (`nvidia.com/gpu.count`, `nvidia.com/gpu.memory`).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

from runai.names import (
    FRACTION_ANNOTATION,
    GPU_COUNT_LABEL,
    GPU_MEMORY_LABEL,
    GPU_PRESENT_LABEL,
    GPU_RESOURCE,
    NODE_POOL_LABEL,
    QUEUE_LABEL,
)

from .api import ApiError, KubeApi

GPU_MEMORY_MIB = 16384
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
MERGE_PATCH = "application/merge-patch+json"


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gpu_labels(gpus: int, memory_mib: int | None = GPU_MEMORY_MIB) -> dict[str, str]:
    """None for memory_mib: a node whose GPU memory is unknown (no gpu-memory pod can go there)."""
    labels = {GPU_COUNT_LABEL: str(gpus), GPU_PRESENT_LABEL: "true"}
    return labels if memory_mib is None else {**labels, GPU_MEMORY_LABEL: str(memory_mib)}


def advertise_fake_gpus(api: KubeApi, node: str, gpus: int, memory_mib: int = GPU_MEMORY_MIB) -> None:
    """Give a node `gpus` GPUs (or take them away): its labels, capacity and allocatable."""
    api.request("PATCH", f"/api/v1/nodes/{node}", content_type=MERGE_PATCH,
                body={"metadata": {"labels": gpu_labels(gpus, memory_mib)}})
    api.request("PATCH", f"/api/v1/nodes/{node}/status", content_type=MERGE_PATCH,
                body={"status": {"capacity": {GPU_RESOURCE: str(gpus)}, "allocatable": {GPU_RESOURCE: str(gpus)}}})


def advertised_gpus(api: KubeApi, node: str) -> int:
    return int(api.get(f"/api/v1/nodes/{node}")["status"].get("allocatable", {}).get(GPU_RESOURCE, "0"))


class FakeNodes:
    """Node objects with GPUs and no kubelet, kept Ready by Lease heartbeats: binding needs no kubelet."""

    def __init__(self, api: KubeApi):
        self.api = api
        self.names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def create(self, pool: str, gpus: int = 4, cpu: str = "32", memory: str = "256Gi", labels: dict | None = None,
               taints: list | None = None, ready: bool = True, name: str | None = None,
               gpu_memory_mib: int | None = GPU_MEMORY_MIB) -> str:
        name = name or f"fake-{pool}-{uuid.uuid4().hex[:5]}"
        node_labels = {NODE_POOL_LABEL: pool, "kubernetes.io/hostname": name, **gpu_labels(gpus, gpu_memory_mib),
                       **(labels or {})}
        if pool == "":
            del node_labels[NODE_POOL_LABEL]
        self.api.request("POST", "/api/v1/nodes", body={
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels},
            "spec": {"taints": taints or []}})
        capacity = {"cpu": cpu, "memory": memory, "pods": "500", GPU_RESOURCE: str(gpus)}
        stamp = micro_now()[:19] + "Z"
        self.api.request("PATCH", f"/api/v1/nodes/{name}/status", content_type=MERGE_PATCH,
                         body={"status": {"capacity": capacity, "allocatable": capacity, "conditions": [
                             {"type": "Ready", "status": "True" if ready else "False", "reason": "FakeNode",
                              "lastHeartbeatTime": stamp, "lastTransitionTime": stamp}]}})
        self.api.request("POST", LEASES, body={
            "metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                                 "renewTime": micro_now()}})
        self.names.append(name)
        return name

    def _heartbeat(self) -> None:
        while not self._stop.wait(5):
            for name in list(self.names):
                try:
                    self.api.request("PATCH", f"{LEASES}/{name}", body={"spec": {"renewTime": micro_now()}},
                                     content_type=MERGE_PATCH)
                except ApiError:
                    pass

    def delete_all(self) -> None:
        self._stop.set()
        for name in self.names:
            for path in (f"/api/v1/nodes/{name}", f"{LEASES}/{name}"):
                try:
                    self.api.request("DELETE", path)
                except ApiError:
                    pass


def pod_body(name: str, scheduler: str, pool: str, gpus: int = 0, fraction: float | None = None,
             queue: str | None = None, labels: dict | None = None, node_selector: dict | None = None,
             tolerations: list | None = None, cpu: str = "100m", memory: str = "64Mi",
             annotations: dict | None = None) -> dict:
    """A pause pod for `scheduler` in node pool `pool` ("" for none), with whole GPUs or a fraction
    (or, through annotations, GPU memory and a device count)."""
    pod_labels = {NODE_POOL_LABEL: pool, **({QUEUE_LABEL: queue} if queue else {}), **(labels or {})}
    if pool == "":
        del pod_labels[NODE_POOL_LABEL]
    resources = {"requests": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["limits"] = {GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": pod_labels,
                     "annotations": {**({FRACTION_ANNOTATION: str(fraction)} if fraction is not None else {}),
                                     **(annotations or {})}},
        "spec": {"schedulerName": scheduler, "restartPolicy": "Never", "nodeSelector": node_selector or {},
                 "tolerations": tolerations or [], "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "127.0.0.1:5000/pause:3.10", "resources": resources}]},
    }
