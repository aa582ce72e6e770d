"""Test harness: fake GPU nodes (Node objects kept alive with Lease heartbeats), pods, and waits.

Binding needs no kubelet, so scheduling is tested on Node objects whose capacity we set. Each test
puts its nodes and pods in a node pool of its own, so nothing else in the cluster interferes.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

from fake_runai_scheduler.kubeapi import ApiError, KubeApi

POOL_LABEL = "runai/node-pool"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class FakeNodes:
    def __init__(self, api: KubeApi):
        self.api = api
        self.names: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, daemon=True)
        self._thread.start()

    def create(self, pool: str, gpus: int = 4, cpu: str = "32", memory: str = "256Gi", labels: dict | None = None,
               taints: list | None = None, ready: bool = True, name: str | None = None) -> str:
        name = name or f"fake-{pool}-{uuid.uuid4().hex[:5]}"
        node_labels = {POOL_LABEL: pool, "kubernetes.io/hostname": name, "nvidia.com/gpu.count": str(gpus),
                       "nvidia.com/gpu.memory": "16384", **(labels or {})}
        if pool == "":
            del node_labels[POOL_LABEL]
        self.api.request("POST", "/api/v1/nodes", body={
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": node_labels},
            "spec": {"taints": taints or []}})
        capacity = {"cpu": cpu, "memory": memory, "pods": "500", "nvidia.com/gpu": str(gpus)}
        self.api.request("PATCH", f"/api/v1/nodes/{name}/status", content_type="application/merge-patch+json",
                         body={"status": {"capacity": capacity, "allocatable": capacity, "conditions": [
                             {"type": "Ready", "status": "True" if ready else "False", "reason": "FakeNode",
                              "lastHeartbeatTime": micro_now()[:19] + "Z",
                              "lastTransitionTime": micro_now()[:19] + "Z"}]}})
        self.api.request("POST", LEASES, body={
            "metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
                                                 "renewTime": micro_now()}})
        self.names.append(name)
        return name

    def _heartbeat(self) -> None:
        while not self._stop.wait(5):
            for name in list(self.names):
                try:
                    self.api.request("PATCH", f"{LEASES}/{name}",
                                     body={"spec": {"renewTime": micro_now()}},
                                     content_type="application/merge-patch+json")
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
             tolerations: list | None = None, cpu: str = "100m", memory: str = "64Mi") -> dict:
    pod_labels = {POOL_LABEL: pool, **({"runai/queue": queue} if queue else {}), **(labels or {})}
    if pool == "":
        del pod_labels[POOL_LABEL]
    resources = {"requests": {"cpu": cpu, "memory": memory}}
    if gpus:
        resources["limits"] = {"nvidia.com/gpu": str(gpus)}
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": pod_labels,
                     "annotations": {"gpu-fraction": str(fraction)} if fraction is not None else {}},
        "spec": {"schedulerName": scheduler, "restartPolicy": "Never", "nodeSelector": node_selector or {},
                 "tolerations": tolerations or [], "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "main", "image": "127.0.0.1:5000/pause:3.10", "resources": resources}]},
    }


def create_pod(api: KubeApi, namespace: str, body: dict) -> dict:
    return api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)


def get_pod(api: KubeApi, namespace: str, name: str) -> dict | None:
    try:
        return api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")
    except ApiError as err:
        if err.status == 404:
            return None
        raise


def events_for(api: KubeApi, namespace: str, name: str, reason: str | None = None) -> list[dict]:
    items = api.get(f"/api/v1/namespaces/{namespace}/events",
                    fieldSelector=f"involvedObject.name={name}")["items"]
    return [e for e in items if reason is None or e["reason"] == reason]


def wait_until(predicate, timeout: float = 20, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def wait_bound(api: KubeApi, namespace: str, name: str, timeout: float = 20) -> dict:
    return wait_until(lambda: (p := get_pod(api, namespace, name)) and p["spec"].get("nodeName") and p,
                      timeout, what=f"{name} bound")


def wait_unschedulable(api: KubeApi, namespace: str, name: str, timeout: float = 20) -> str:
    """The message of the Unschedulable event, once the PodScheduled condition says so too."""
    def reported():
        events = events_for(api, namespace, name, "Unschedulable")
        pod = get_pod(api, namespace, name)
        conditions = [c for c in (pod or {}).get("status", {}).get("conditions", []) if c["type"] == "PodScheduled"]
        if events and conditions and conditions[0]["reason"] == "Unschedulable":
            return sorted(events, key=lambda e: e["lastTimestamp"])[-1]["message"]
        return None
    return wait_until(reported, timeout, what=f"{name} reported Unschedulable")


def stays_unbound(api: KubeApi, namespace: str, name: str, seconds: float = 1.5) -> bool:
    time.sleep(seconds)
    pod = get_pod(api, namespace, name)
    return pod is not None and not pod["spec"].get("nodeName")
