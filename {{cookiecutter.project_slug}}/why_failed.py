"""After a failed `make run`: say why the project's latest Job failed, and what to change.

`mlflow run` only reports that the Job failed. The Job's Failed condition says whether the pod was
preempted too often, crashed (not retried), was killed or ran out of time; for a kill (137) the pod,
if it is still there, tells an out-of-memory kill from a grace period overrun.
"""

from __future__ import annotations

import json
import re
import sys

from cluster import NAME, connect, read_job, run_id_of

HINTS = {
    "BackoffLimitExceeded": (
        "its pods were stopped by SIGTERM (preempted without a DisruptionTarget condition, exit 143) or could not "
        "reach the tracking server (exit 75) more often than backoffLimit allows ({limit}; the max_preemptions "
        "answer). The run's checkpoints are kept. Many preemptions: raise backoffLimit in "
        "kubernetes_job_template.yaml (or regenerate with a larger max_preemptions). 'the tracking server did not "
        "answer' in the pod log: make the server reachable from the pods first. See the pod log: {logs}"),
    "PodFailurePolicy": "the training exited with an error, so the Job did not retry it. See the pod log: {logs}",
    "DeadlineExceeded": (
        "it ran or waited longer than activeDeadlineSeconds ({deadline} s). If it never started, "
        "`kubectl -n {namespace} describe pods -l job-name={job}` shows Run:ai's reason."),
}
EXIT_HINTS = {
    "OOMKilled": ("the pod used more memory than its limit and the kernel killed it (OOMKilled). Raise the memory "
                  "limit (memory_limit) or lower batch_size / workers."),
    "overrun": ("the pod was stopped (preempted or deleted) and was still saving when terminationGracePeriodSeconds "
                "ran out, so it was SIGKILLed. Its log's 'stopped at ... s after SIGTERM' line, or the last "
                "checkpoint upload, says how long a save takes: make termination_grace_period_seconds larger than "
                "one step plus that."),
    "killed": ("the pod was killed (SIGKILL, exit 137) without being out of memory or deleted: killed by hand, "
               "or by the node (`kubectl describe node`)."),
}
def latest_job(batch, namespace: str) -> dict | None:
    jobs = batch.list_namespaced_job(namespace, label_selector=f"app.kubernetes.io/name={NAME}",
                                     _preload_content=False)
    items = json.loads(jobs.data)["items"]
    return max(items, key=lambda job: job["metadata"]["creationTimestamp"], default=None)


def pod_of(core, namespace: str, message: str) -> dict | None:
    """The pod a podFailurePolicy message names, if it still exists."""
    named = re.search(r"for pod [^/\s]+/(\S+) failed", message)
    if not named or core is None:
        return None
    pods = core.list_namespaced_pod(namespace, field_selector=f"metadata.name={named[1]}", _preload_content=False)
    return next(iter(json.loads(pods.data)["items"]), None)


def kill_reason(pod: dict | None) -> str:
    """OOMKilled, a grace period overrun, or another kill. A pod that is gone was deleted (an OOM-killed pod
    stays for the Job to count): preempted or removed, and SIGKILLed when its grace period ran out."""
    if pod is None:
        return "overrun"
    for status in pod.get("status", {}).get("containerStatuses", []):
        if (status.get("state", {}).get("terminated") or {}).get("reason") == "OOMKilled":
            return "OOMKilled"
    conditions = {c["type"]: c for c in pod.get("status", {}).get("conditions", [])}
    if pod["metadata"].get("deletionTimestamp") or conditions.get("DisruptionTarget", {}).get("status") == "True":
        return "overrun"
    return "killed"


def explain(job: dict, core=None) -> str:
    name, namespace, spec = job["metadata"]["name"], job["metadata"]["namespace"], job["spec"]
    failed = [c for c in job.get("status", {}).get("conditions", []) if c["type"] == "Failed"]
    if not failed:
        return f"Job {name} has not failed (conditions: {job.get('status', {}).get('conditions')})."
    reason, message = failed[0].get("reason", ""), failed[0].get("message", "")
    logs = f"kubectl -n {namespace} logs -l job-name={name}"
    hint = HINTS.get(reason, "see `kubectl -n {namespace} describe job {job}`.").format(
        limit=spec.get("backoffLimit"), namespace=namespace, job=name, deadline=spec.get("activeDeadlineSeconds"),
        logs=logs)
    code = re.search(r"failed with exit code (\d+)", message)
    if reason == "PodFailurePolicy" and code and code[1] == "137":
        hint = EXIT_HINTS[kill_reason(pod_of(core, namespace, message))] + f" Pod log: {logs}"
    run_id = run_id_of(spec["template"]["spec"])
    if run_id:
        hint += (f"\n  continue: the run keeps its checkpoints; after fixing the cause, `make resume RUN_ID={run_id}` "
                 "goes on from the last one.")
    return f"Job {name} failed: {reason}: {message}\n  why: {hint}"


def main(job_name: str | None = None) -> int:
    """job_name: the Job `make run` created, if it knows it; else this project's latest Job."""
    try:
        cluster = connect()
        namespace, core = cluster.namespace, cluster.core
        job = read_job(cluster, job_name) if job_name else latest_job(cluster.batch, namespace)
    except Exception as err:  # noqa: BLE001 - an explanation is a courtesy; never hide mlflow's own error
        print(f"why_failed: could not read the Job from the cluster: {err}", file=sys.stderr)
        return 2
    if job is None:
        print(f"why_failed: {'Job ' + job_name + ' is gone' if job_name else f'no Job of {NAME} in {namespace}'}"
              ": see mlflow's message above.", file=sys.stderr)
        return 1
    try:
        print(explain(job, core), file=sys.stderr)
    except Exception as err:  # noqa: BLE001 - reading the pod is a courtesy too
        print(f"{explain(job)}\n(why_failed: could not read the pod: {err})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
