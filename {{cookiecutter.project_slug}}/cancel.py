"""Stop a run on the cluster and leave nothing holding GPUs: `make cancel JOB=<job>`, `make clean-orphans`.

MLflow cancels (Ctrl-C) by deleting the Job without a propagation policy, which for batch/v1 leaves
its pods running, owned by nothing, so neither the Job's deadline nor its TTL ever removes them.
This deletes the Job with its pods, waits until every pod has stopped (each saves a checkpoint on
SIGTERM first), and marks the MLflow run KILLED, so that `make resume` can continue it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable

from cluster import JOB_NAME_LABEL, NAME, Cluster, connect, pods_of_job, read_job, run_id_of

# The pods get the template's grace period to save a checkpoint; then this much more to be gone.
MARGIN_SECONDS = 30


def _ignore_missing(call: Callable[[], object]) -> None:
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as err:
        if err.status != 404:
            raise


def delete_job_and_pods(cluster: Cluster, job: str, say: Callable[[str], None]) -> list[str]:
    """Delete the Job and its pods, and wait for them to be gone. Returns the pods still there at the end."""
    from kubernetes import client

    pods = pods_of_job(cluster, job)
    grace = max((pod["spec"].get("terminationGracePeriodSeconds", 30) for pod in pods), default=0)
    _ignore_missing(lambda: cluster.batch.delete_namespaced_job(
        job, cluster.namespace, body=client.V1DeleteOptions(propagation_policy="Background")))
    # The Job may be gone already (MLflow's own cancel orphans its pods): delete them by their label,
    # one by one (a Run:ai researcher may delete pods, not collections of them).
    for name in [pod["metadata"]["name"] for pod in pods_of_job(cluster, job)]:
        _ignore_missing(lambda name=name: cluster.core.delete_namespaced_pod(name, cluster.namespace))
    deadline, said = time.monotonic() + grace + MARGIN_SECONDS, 0.0
    while (left := [pod["metadata"]["name"] for pod in pods_of_job(cluster, job)]) and time.monotonic() < deadline:
        if time.monotonic() - said >= 10:
            say(f"waiting for {len(left)} pod(s) of {job} to stop (each saves a checkpoint first, within "
                f"{grace} s): {', '.join(left)}")
            said = time.monotonic()
        time.sleep(1)
    return left


def mark_killed(run_id: str) -> str:
    """KILLED unless it FINISHED meanwhile; returns the run's status."""
    from mlflow import MlflowClient

    client = MlflowClient()
    status = client.get_run(run_id).info.status
    if status != "FINISHED":
        client.set_terminated(run_id, "KILLED")
        status = "KILLED"
    return status


def cancel(cluster: Cluster, job: str, say: Callable[[str], None], run_id: str | None = None) -> int:
    """The whole cancellation, as `make cancel` and an interrupted `make run` do it."""
    if run_id is None:
        found = read_job(cluster, job)
        pods = pods_of_job(cluster, job)
        spec = found["spec"]["template"]["spec"] if found else (pods[0]["spec"] if pods else {})
        run_id = run_id_of(spec)
    say(f"deleting Job {job} and its pods in {cluster.namespace}")
    left = delete_job_and_pods(cluster, job, say)
    if left:
        say(f"still there after the grace period: {', '.join(left)}; "
            f"see `kubectl -n {cluster.namespace} describe pod {left[0]}`")
        return 1
    if run_id is None:
        say(f"Job {job} and its pods are gone (no MLflow run found to mark)")
        return 0
    status = mark_killed(run_id)
    say(f"Job {job} and its pods are gone; MLflow run {run_id} is {status}")
    if status == "KILLED":
        say(f"continue it from its last checkpoint with: make resume RUN_ID={run_id}")
    return 0


def orphans(cluster: Cluster) -> list[dict]:
    """Pods of this project whose Job no longer exists: nothing else will ever remove them."""
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"app.kubernetes.io/name={NAME}",
                                            _preload_content=False)
    jobs = {pod["metadata"]["labels"].get(JOB_NAME_LABEL) for pod in json.loads(pods.data)["items"]}
    gone = {job for job in jobs if job and read_job(cluster, job) is None}
    return [pod for pod in json.loads(pods.data)["items"] if pod["metadata"]["labels"].get(JOB_NAME_LABEL) in gone]


def main(argv: list[str]) -> int:
    def say(line: str) -> None:
        print(f"cancel: {line}", flush=True)

    if len(argv) != 1:
        print("usage: python cancel.py <job name> | --orphans", file=sys.stderr)
        return 2
    cluster = connect()
    if argv[0] != "--orphans":
        return cancel(cluster, argv[0], say)
    jobs = sorted({pod["metadata"]["labels"][JOB_NAME_LABEL] for pod in orphans(cluster)})
    if not jobs:
        say(f"no pods of {NAME} without their Job in {cluster.namespace}")
    return max((cancel(cluster, job, say) for job in jobs), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
