"""The tracking server restarts while a pod trains: the training rides it out in the same pod and finishes.

A server upgrade or a rescheduled server pod takes the tracking server away for seconds. train.py
retries every tracking call and checkpoint upload (retry.py) instead of failing the run; this drives
that through the real path: `make run` on the cluster, the suite's own server stopped and started
again on the same address while the pod trains.
"""

from __future__ import annotations

import threading

import mlflow
import pytest
from kube import ApiError, wait_until

from .progress import progress
from .variants import Variant

pytestmark = pytest.mark.e2e
EPOCHS = 400


def test_a_tracking_server_restart_is_ridden_out_by_the_training_pod(e2e):
    variant = Variant("tracking-outage", {"gpu": "0"}, params={"epochs": str(EPOCHS), "checkpoint_every": "5"})
    run = e2e.project_run(variant)
    o = run.outcome
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(outcome=run.execute()), name=f"{o.slug} make run")
    worker.start()
    client = mlflow.MlflowClient(e2e.tracking.uri)

    def ended() -> str | None:
        return None if worker.is_alive() else f"`make run` ended early:\n{run.outcome.output[-3000:]}"

    def trained_epochs() -> int:
        experiment = client.get_experiment_by_name(o.experiment)
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        return max((m.step for m in client.get_metric_history(runs[0].info.run_id, "val_rmse")), default=-1) \
            if runs else -1

    def pod_log() -> str:
        try:
            pods = e2e.api.get(f"/api/v1/namespaces/{o.namespace}/pods",
                               labelSelector=f"app.kubernetes.io/name={o.slug}")["items"]
            return "".join(e2e.api.raw(f"/api/v1/namespaces/{o.namespace}/pods/{p['metadata']['name']}/log")
                           .decode(errors="replace") for p in pods)
        except ApiError:
            return ""

    try:
        wait_until(lambda: trained_epochs() >= 20, run.deadline + 300, f"{o.slug}: training past epoch 20",
                   interval=0.5, give_up=ended)
        progress(f"{variant.id}: the tracking server stops while the pod trains")
        e2e.tracking.stop()
        wait_until(lambda: "trying again in" in pod_log(), 120, "the pod to retry a tracking call", interval=0.5,
                   give_up=ended)
    finally:
        e2e.tracking.start()
    progress(f"{variant.id}: the tracking server is back")
    worker.join(run.deadline + 300)
    outcome = box.get("outcome", o)
    assert not outcome.error and outcome.exit_code == 0, outcome.describe()
    finished = outcome.run
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["restarts"] == "0", "ridden out in the same pod, not by a replacement"
    for key in ("train_loss", "val_rmse"):
        steps = sorted(m.step for m in client.get_metric_history(finished.info.run_id, key))
        assert steps == list(range(EPOCHS)), f"{key}: every epoch exactly once"
    [pod] = outcome.pods
    assert "trying again in" in outcome.pod_logs[pod["metadata"]["name"]]
