"""Test harness: pods and what the scheduler wrote about them, read back from the API.

Binding needs no kubelet, so scheduling is tested on fake nodes (kube.nodes.FakeNodes) whose
capacity we set. Each test puts its nodes and pods in a node pool of its own, so nothing else in
the cluster interferes.
"""

from __future__ import annotations

import time

from kube import ApiError, KubeApi, wait_until
from kube.nodes import FakeNodes, pod_body

__all__ = ["FakeNodes", "create_pod", "events_for", "get_pod", "pod_body", "queue", "stays_unbound", "wait_bound",
           "wait_unschedulable", "wait_until"]


def queue(name: str, quota: float = -1, limit: float = -1) -> dict:
    """A queue of the scheduler's config, with its GPU quota and limit (-1: unlimited)."""
    return {"name": name, "gpu": {"quota": quota, "limit": limit}}

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
