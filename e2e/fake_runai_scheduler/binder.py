"""Everything the scheduler writes to the API: bindings, evictions, events and pod conditions.

Binding is one request: the API server copies a Binding's annotations onto the pod. Events and
status conditions are written by a background thread so they never slow down binding.
"""

from __future__ import annotations

import logging
import queue
import threading
import uuid
from datetime import UTC, datetime

from kube import ApiError, KubeApi, pod_path
from runai.names import (
    ALLOCATED_GPUS_ANNOTATION,
    GPU_GROUP_LABEL,
    GPU_INDEX_ANNOTATION,
    POD_GROUP_ANNOTATION,
    QUEUE_LABEL,
    RESOURCE_TYPE_ANNOTATION,
)

from .snapshot import Placement
from .workload import Workload

log = logging.getLogger(__name__)
DISRUPTION_TARGET = "DisruptionTarget"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def gpu_group(node: str, device: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"runai-mlflow://{node}/gpu/{device}"))


def binding_annotations(w: Workload, placement: Placement) -> dict[str, str]:
    """What the pod learns of its binding. GPU memory is reported as the share it is on this node."""
    annotations = {POD_GROUP_ANNOTATION: w.group, QUEUE_LABEL: w.queue,
                   RESOURCE_TYPE_ANNOTATION: "Fraction" if w.shared else "Regular",
                   ALLOCATED_GPUS_ANNOTATION: f"{round(w.gpus, 6):g}"}
    if w.shared:
        annotations[GPU_INDEX_ANNOTATION] = ",".join(str(d) for d in placement.devices)
        # The group of its first device: pods sharing that GPU select each other by this label.
        annotations[GPU_GROUP_LABEL] = gpu_group(placement.node, placement.devices[0])
    return annotations


class Writer:
    def __init__(self, api: KubeApi, scheduler_name: str, update_pod_eviction_condition: bool = False):
        self.api, self.scheduler_name = api, scheduler_name
        # KAI's --update-pod-eviction-condition (default off): mark a victim DisruptionTarget before deleting it.
        self.update_pod_eviction_condition = update_pod_eviction_condition
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._drain, name="event writer", daemon=True)
        self._thread.start()

    def bind(self, w: Workload, placement: Placement) -> bool:
        """True if bound; False if the pod is gone or already bound elsewhere (a conflict, not an error)."""
        annotations = binding_annotations(w, placement)
        try:
            if w.shared:  # the GPU group is a label (fake-gpu-operator and Run:ai select on it)
                self.api.request("PATCH", pod_path(w.namespace, w.name),
                                 body={"metadata": {"labels": {GPU_GROUP_LABEL: annotations[GPU_GROUP_LABEL]}}},
                                 content_type="application/merge-patch+json")
            self.api.request("POST", f"{pod_path(w.namespace, w.name)}/binding", body={
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": w.name, "namespace": w.namespace, "uid": w.uid, "annotations": annotations},
                "target": {"apiVersion": "v1", "kind": "Node", "name": placement.node},
            })
        except ApiError as err:
            if err.status in (404, 409):
                log.info("bind %s: %s", w.key, err)
                return False
            raise
        self.event(w, "Normal", "Scheduled",
                   f"Successfully assigned pod {w.key} to node {placement.node} at node-pool default")
        return True

    def evict(self, victim: Workload, preemptor: Workload, reclaim: bool) -> None:
        message = (f"Pod {victim.key} was preempted by workload {preemptor.namespace}/{preemptor.group}." if reclaim
                   else f"Pod {victim.key} was preempted by higher priority workload "
                        f"{preemptor.namespace}/{preemptor.group}")
        self.event(victim, "Normal", "Evict", message)
        try:
            if self.update_pod_eviction_condition:
                # Synchronous, before the DELETE: a Job's podFailurePolicy reads it from the terminated pod.
                self.api.request("PATCH", f"{pod_path(victim.namespace, victim.name)}/status", body={"status": {
                    "conditions": [{"type": DISRUPTION_TARGET, "status": "True", "reason": "PreemptionByScheduler",
                                    "message": message, "lastTransitionTime": now()}]}},
                    content_type="application/strategic-merge-patch+json")
            self.api.request("DELETE", pod_path(victim.namespace, victim.name),
                             body={"preconditions": {"uid": victim.uid}})
        except ApiError as err:
            if err.status not in (404, 409):
                raise

    def unschedulable(self, w: Workload, message: str) -> None:
        self.event(w, "Warning", "Unschedulable", message)
        self._queue.put(("condition", w, message))

    def event(self, w: Workload, kind: str, reason: str, message: str) -> None:
        self._queue.put(("event", w, (kind, reason, message)))

    def flush(self, timeout: float = 10) -> None:
        done = threading.Event()
        self._queue.put(("flush", None, done))
        done.wait(timeout)

    def _drain(self) -> None:
        while True:
            kind, w, payload = self._queue.get()
            try:
                if kind == "flush":
                    payload.set()
                elif kind == "event":
                    self._write_event(w, *payload)
                elif kind == "condition":
                    self.api.request("PATCH", f"{pod_path(w.namespace, w.name)}/status", body={"status": {
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": payload, "lastTransitionTime": now()}]}},
                        content_type="application/strategic-merge-patch+json")
            except ApiError as err:
                if err.status != 404:
                    log.warning("could not write %s for %s: %s", kind, w.key if w else "-", err)
            except Exception:  # noqa: BLE001 - never let a write error stop the writer
                log.exception("writer failed")

    def _write_event(self, w: Workload, kind: str, reason: str, message: str) -> None:
        stamp = now()
        self.api.request("POST", f"/api/v1/namespaces/{w.namespace}/events", body={
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{w.name}.{uuid.uuid4().hex[:16]}", "namespace": w.namespace},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": w.namespace, "name": w.name,
                               "uid": w.uid},
            "type": kind, "reason": reason, "message": message[:1024],
            "source": {"component": self.scheduler_name}, "reportingComponent": self.scheduler_name,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        })
