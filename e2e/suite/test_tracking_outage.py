"""The tracking server restarts while a pod trains: the training rides it out in the same pod and finishes.

A server upgrade or a rescheduled server pod takes the tracking server away for seconds. train.py
retries every tracking call and checkpoint upload (retry.py) instead of failing the run; this drives
that through the real path: `make run` on the cluster, the run's tracking server stopped and started
again on the same address while the pod trains. The scenario itself runs in the background from the
session's first test on (outage.py); this test waits for it and asserts what it saw.
"""

from __future__ import annotations

import mlflow
import pytest

from .variants import TRACKING_OUTAGE

pytestmark = pytest.mark.e2e
EPOCHS = int(TRACKING_OUTAGE.params["epochs"])


def test_a_tracking_server_restart_is_ridden_out_by_the_training_pod(tracking_outage):
    outcome = tracking_outage.settle(timeout=tracking_outage.variant.deadline + 600)
    assert not outcome.error and outcome.exit_code == 0, outcome.describe()
    finished = outcome.run
    assert finished.info.status == "FINISHED"
    assert finished.data.tags["restarts"] == "0", "ridden out in the same pod, not by a replacement"
    client = mlflow.MlflowClient(tracking_outage.server.uri)
    for key in ("train_loss", "val_rmse"):
        steps = sorted(m.step for m in client.get_metric_history(finished.info.run_id, key))
        assert steps == list(range(EPOCHS)), f"{key}: every epoch exactly once"
    [pod] = outcome.pods
    assert "trying again in" in outcome.pod_logs[pod["metadata"]["name"]]
