"""`make run` shows the pod's log as it is written, and a Ctrl-C leaves nothing holding a GPU.

The project trains for far longer than the test waits. Once a line train.py prints inside the pod
shows up in `make run`'s output (so it came while the pod still runs), the test sends SIGINT to
`make run`'s process group, as a terminal's Ctrl-C does, and waits on the cluster and MLflow.
"""

from __future__ import annotations

import os
import re
import signal
import time

import mlflow
import pytest
from kube import wait_until

from .variants import Variant

pytestmark = pytest.mark.e2e
TRAINS_FOR_HOURS = {"epochs": "1000000", "checkpoint_every": "1000"}
EPOCH_LINE = re.compile(r"^\[(\S+)\] epoch \d+/1000000: train_loss", re.M)


def test_ctrl_c_deletes_the_job_and_its_pods_and_marks_the_run_killed(e2e):
    variant = Variant("ctrl-c", {"gpu": "1", "cpu_request": "250m", "cpu_limit": "1"}, params=TRAINS_FOR_HOURS,
                      gpu_quota=1, expect_success=False)
    run = e2e.project_run(variant)
    o = run.outcome
    project = run.prepare()
    make, log = run.start_make_run(project)
    try:
        live = wait_until(lambda: EPOCH_LINE.search(log.read_text()), run.deadline, "a line the pod printed, in "
                          "make run's output", interval=0.5,
                          give_up=lambda: make.poll() is not None and f"make run ended {make.returncode}")
        pod_name = live[1]
        pod = e2e.api.get(f"/api/v1/namespaces/{o.namespace}/pods/{pod_name}")
        assert pod["status"]["phase"] == "Running", "the line came while the pod trains"
        assert re.search(rf"^run: {re.escape(run.tracking_uri)}/#/experiments/\d+/runs/\w+$", log.read_text(),
                         re.M), "make run says where the run is, at the start"

        os.killpg(make.pid, signal.SIGINT)
        interrupted = time.monotonic()

        def live_pods() -> list[str]:
            pods = e2e.api.get(f"/api/v1/namespaces/{o.namespace}/pods",
                               labelSelector=f"app.kubernetes.io/name={o.slug}")["items"]
            return [p["metadata"]["name"] for p in pods if p["status"].get("phase") in ("Running", "Pending")]

        wait_until(lambda: not live_pods(), 60, "no pod of the run Running or Pending", interval=0.5)
        assert time.monotonic() - interrupted < 60
        make.wait(120)
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
    output = log.read_text()
    assert make.returncode != 0, output[-2000:]
    run.gather()
    assert not o.jobs and not o.pods, "the Job and every pod of it are gone"
    assert o.run.info.status == "KILLED", output[-2000:]
    run_id = o.run.info.run_id
    assert f"MLflow run {run_id} is KILLED" in output and f"make resume RUN_ID={run_id}" in output, output[-2000:]
    assert "submission failed" not in output and "why:" not in output, "a cancel is not explained as a failure"
    assert re.search(rf"^pod {pod_name} ended: exit 143: stopped by SIGTERM [^;]*checkpoint$", output, re.M), \
        "the pod saved a checkpoint, and no replacement is announced"

    # The pod's log is in the run: what it printed up to its SIGTERM, and the checkpoint it saved then.
    client = mlflow.MlflowClient(e2e.tracking.uri)
    [artifact] = client.list_artifacts(run_id, "pod-logs")
    assert artifact.path == f"pod-logs/01-{pod_name}.log"
    kept = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact.path,
                                               tracking_uri=e2e.tracking.uri)
    text = open(kept).read()
    stopped = re.search(r"^stopped at epoch (\d+) step (\d+) of 1000000 epochs", text, re.M)
    assert "received SIGTERM" in text and stopped, text[-2000:]

    # A cancelled run is not lost: `make resume` finishes it from the checkpoint its pod saved at the Ctrl-C.
    epochs = int(stopped[1]) + 5
    code, resumed = run.make_resume(project, run_id, f"-P epochs={epochs}")
    assert code == 0, resumed[-3000:]
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED" and finished.data.tags["restarts"] == "1"
    at = (finished.data.tags["resumed_from_epoch"], finished.data.tags["resumed_from_step"])
    assert at == (stopped[1], stopped[2]), "from the step the Ctrl-C stopped it at, not from the start"
    kept = [a.path for a in client.list_artifacts(run_id, "pod-logs")]
    assert kept[0] == artifact.path and len(kept) == 2 and kept[1].startswith("pod-logs/02-"), \
        "the resumed Job's pod log comes after the first one's"
