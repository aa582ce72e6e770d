"""Preempt a generated project mid-training, the way Run:ai does, and record what the cluster and MLflow did.

The project runs through the user's path (`make run`, in a thread). Once its training is past a
given epoch, a GPU holder pod arrives: a non-preemptible (`build`) pod of the same project, which
the scheduler satisfies by preempting the training pod, or a pod of another project under its quota,
which reclaims it. The holder keeps the GPU until the Job's replacement pod has waited in the queue
with Run:ai's reason, then leaves; the replacement runs and `make run` ends. A several-node run is
one gang: all its pods are preempted, and all their replacements wait, together.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from kube import ApiError, wait_until
from runai.names import GPU_RESOURCE, PROJECT_LABEL, QUEUE_LABEL

from .progress import progress
from .runner import Outcome, ProjectRun

HOLDER_NAME = "gpu-holder"


@dataclass
class Holder:
    """The workload that takes the GPU: in the run's own project (preempt) or in another one (reclaim)."""

    priority_class: str | None = "build"
    project: str | None = None  # None: the run's own project and namespace


COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"


def by_index(pods: list[dict]) -> list[dict]:
    """A Job's pods in node-rank order (an Indexed Job's annotation; one pod otherwise)."""
    return sorted(pods, key=lambda p: int(p["metadata"].get("annotations", {}).get(COMPLETION_INDEX, "0")))


@dataclass
class Preemption:
    outcome: Outcome
    holder_namespace: str = ""
    evicted_pod: str = ""  # of index 0 (rank 0's), the only one on one node
    evicted_pods: list[str] = field(default_factory=list)
    epoch_at_preemption: int = -1
    replacement_pod: str = ""
    replacement_pods: list[str] = field(default_factory=list)
    replacement_waited: str = ""  # the replacement's PodScheduled message while the holder had the GPU
    capacity_freed_at: float = 0.0
    resumed_at: float = 0.0  # when the replacement pod was seen Running
    log: list[str] = field(default_factory=list)

    @property
    def resume_seconds(self) -> float:
        return self.resumed_at - self.capacity_freed_at

    def figures(self, epochs_redone: float) -> dict:
        """What this preemption cost the run, as the preemption benchmark prints it."""
        o = self.outcome
        ended = o.phases["_run_started"] + o.phases["mlflow run"]
        return {"checkpoint_every": int(o.variant.params["checkpoint_every"]), "stopped_at": self.epoch_at_preemption,
                "epochs_redone": epochs_redone, "freed_to_running": self.resume_seconds,
                "running_to_done": ended - self.resumed_at, "mlflow_run": o.phases["mlflow run"]}


FIGURES_FILE = "preemption-figures.json"


def record_figures(report_dir: Path, setting: str, figures: dict) -> None:
    """Keep a preemption's figures in the e2e report: the benchmark prints them instead of preempting again."""
    record = report_dir / FIGURES_FILE
    rows = json.loads(record.read_text()) if record.exists() else {}
    rows[setting] = figures
    record.write_text(json.dumps(rows, indent=2))


def recorded_figures(report_dir: Path) -> dict:
    record = report_dir / FIGURES_FILE
    return json.loads(record.read_text()) if record.exists() else {}


def holder_pod(project: str, image: str, scheduler_name: str, priority_class: str | None) -> dict:
    """A pod that only holds one GPU: admitted by Pod Security "restricted", gone at once when deleted."""
    labels = {PROJECT_LABEL: project, QUEUE_LABEL: project, "app.kubernetes.io/part-of": "runai-mlflow-e2e"}
    if priority_class:
        labels["priorityClassName"] = priority_class
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": HOLDER_NAME, "labels": labels},
        "spec": {
            "schedulerName": scheduler_name, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "hold", "image": image, "command": ["python", "-c", "import time; time.sleep(3600)"],
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {GPU_RESOURCE: "1", "memory": "256Mi"}}}]},
    }


class RunWatch:
    """A run whose `make run` goes on in `worker`: waits that give up once it ended, its pods, its last epoch."""

    def __init__(self, run: ProjectRun, worker: threading.Thread, box: dict):
        self.run, self.worker, self.box = run, worker, box
        self.client = mlflow.MlflowClient(run.tracking_uri)

    def until(self, predicate: Callable[[], object], what: str, timeout: float = 300, need_worker: bool = True):
        def ended() -> str | None:
            if not need_worker or self.worker.is_alive():
                return None
            o = self.box.get("outcome") or self.run.outcome
            return f"`make run` ended (exit {o.exit_code}): {o.error}\n{o.output[-3000:]}"
        return wait_until(predicate, timeout, what, interval=0.5, give_up=ended)

    def training_pods(self, terminating: bool = False) -> list[dict]:
        o = self.run.outcome
        try:
            pods = self.run.api.get(f"/api/v1/namespaces/{o.namespace}/pods",
                                    labelSelector=f"app.kubernetes.io/name={o.slug}")["items"]
        except ApiError:
            return []
        return [p for p in pods if terminating or not p["metadata"].get("deletionTimestamp")]

    def last_epoch(self) -> int:
        experiment = self.client.get_experiment_by_name(self.run.outcome.experiment)
        runs = self.client.search_runs([experiment.experiment_id]) if experiment else []
        if not runs:
            return -1
        metric = self.run.variant.framework.metrics[0]
        return max((m.step for m in self.client.get_metric_history(runs[0].info.run_id, metric)), default=-1)


def preempt_midway(run: ProjectRun, holder: Holder, after_epoch: int = 20,
                   expect_replacement: bool = True) -> Preemption:
    """Run the project and preempt its training pod once it logged `after_epoch`; see the module docstring."""
    o = run.outcome
    record = Preemption(o)
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(outcome=run.execute()), name=f"{o.slug} make run")
    worker.start()
    watch = RunWatch(run, worker, box)
    holder_project = holder.project or o.project
    record.holder_namespace = f"runai-{holder_project}"
    holder_path = f"/api/v1/namespaces/{record.holder_namespace}/pods"
    gang = run.variant.nodes

    def running() -> list[dict] | None:
        pods = [p for p in watch.training_pods() if p["status"].get("phase") == "Running"]
        return by_index(pods) if len(pods) == gang and watch.last_epoch() >= after_epoch else None

    try:
        # The first wait includes `make image`, MLflow's build and push (minutes for a cold pytorch image).
        pods = watch.until(running, f"{o.slug}: training past epoch {after_epoch}", timeout=run.deadline + 300)
        record.evicted_pods = [p["metadata"]["name"] for p in pods]
        record.evicted_pod, first_uids = record.evicted_pods[0], {p["metadata"]["uid"] for p in pods}
        image = pods[0]["spec"]["containers"][0]["image"]
        progress(f"{run.variant.id}: training past epoch {after_epoch}; a {holder.priority_class or 'train'} pod "
                 f"of {holder_project} takes the GPU")
        run.api.request("POST", holder_path, body=holder_pod(holder_project, image, run.scheduler_name,
                                                             holder.priority_class))
        # Gone, not just terminating: until then it may still log the epoch it was in when SIGTERM came.
        watch.until(lambda: all(p["metadata"]["uid"] not in first_uids for p in watch.training_pods(terminating=True)),
                    f"{', '.join(record.evicted_pods)} to be preempted and gone", need_worker=expect_replacement)
        record.epoch_at_preemption = watch.last_epoch()
        if expect_replacement:
            def waiting_replacements():
                """Every replacement waiting with the scheduler's reason: a gang waits as a whole."""
                waiting = []
                for p in by_index(watch.training_pods()):
                    scheduled = [c for c in p["status"].get("conditions", []) if c["type"] == "PodScheduled"]
                    if scheduled and scheduled[0]["status"] == "False" and scheduled[0].get("message"):
                        waiting.append((p, scheduled[0]["message"]))
                return waiting if len(waiting) == gang else None
            waiting = watch.until(waiting_replacements, "the replacement pods to wait in the queue")
            record.replacement_pods = [p["metadata"]["name"] for p, _ in waiting]
            record.replacement_pod, record.replacement_waited = record.replacement_pods[0], waiting[0][1]
        run.api.request("DELETE", f"{holder_path}/{HOLDER_NAME}")
        record.capacity_freed_at = time.time()
        if expect_replacement:
            progress(f"{run.variant.id}: the holder left; {', '.join(record.replacement_pods)} may run")
            watch.until(lambda: {p["metadata"]["name"] for p in watch.training_pods()
                                 if p["status"].get("phase") in ("Running", "Succeeded")}
                        >= set(record.replacement_pods), f"{', '.join(record.replacement_pods)} to run")
            record.resumed_at = time.time()
    finally:
        run.api.delete(f"{holder_path}/{HOLDER_NAME}")
        worker.join(run.deadline + 300)
    record.outcome = box.get("outcome", o)
    return record
