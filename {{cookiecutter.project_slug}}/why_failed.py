"""After a failed `make run`: say why the project's latest Job failed, and what to change.

`mlflow run` only reports that the Job failed. The Job's Failed condition says whether the pod was
preempted too often, crashed (not retried), was killed (137, often out of memory) or ran out of time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
NAME = {{ cookiecutter.project_slug | py_str }}
HINTS = {
    "BackoffLimitExceeded": (
        "its pod was stopped with SIGTERM (preempted without a DisruptionTarget condition) more often than "
        "backoffLimit allows ({limit}; the max_preemptions answer). The run's checkpoints are kept. Raise "
        "backoffLimit in kubernetes_job_template.yaml (or regenerate with a larger max_preemptions) and run "
        "again; see README.md, 'When your job is preempted'."),
    "PodFailurePolicy": (
        "the training exited with an error, so the Job did not retry it (exit 137 means killed: usually out of "
        "memory, raise the memory limit). See the pod log: kubectl -n {namespace} logs -l job-name={job}"),
    "DeadlineExceeded": (
        "it ran or waited longer than activeDeadlineSeconds ({deadline} s). If it never started, "
        "`kubectl -n {namespace} describe pods -l job-name={job}` shows Run:ai's reason."),
}


def latest_job(batch, namespace: str) -> dict | None:
    jobs = batch.list_namespaced_job(namespace, label_selector=f"app.kubernetes.io/name={NAME}",
                                     _preload_content=False)
    items = json.loads(jobs.data)["items"]
    return max(items, key=lambda job: job["metadata"]["creationTimestamp"], default=None)


def explain(job: dict) -> str:
    name, namespace, spec = job["metadata"]["name"], job["metadata"]["namespace"], job["spec"]
    failed = [c for c in job.get("status", {}).get("conditions", []) if c["type"] == "Failed"]
    if not failed:
        return f"Job {name} has not failed (conditions: {job.get('status', {}).get('conditions')})."
    reason, message = failed[0].get("reason", ""), failed[0].get("message", "")
    hint = HINTS.get(reason, "see `kubectl -n {namespace} describe job {job}`.").format(
        limit=spec.get("backoffLimit"), namespace=namespace, job=name, deadline=spec.get("activeDeadlineSeconds"))
    return f"Job {name} failed: {reason}: {message}\n  why: {hint}"


def main() -> int:
    try:
        from kubernetes import client
        from kubernetes import config as kube_config
    except ModuleNotFoundError:
        print("why_failed: the kubernetes package is missing; pip install -r requirements-dev.txt", file=sys.stderr)
        return 2
    config = json.loads((HERE / "kubernetes_config.json").read_text())
    template = yaml.safe_load((HERE / config["kube-job-template-path"]).read_text())
    namespace = template["metadata"]["namespace"]
    try:
        kube_config.load_kube_config(context=config.get("kube-context"))
        job = latest_job(client.BatchV1Api(), namespace)
    except Exception as err:  # noqa: BLE001 - an explanation is a courtesy; never hide mlflow's own error
        print(f"why_failed: could not read the Job from the cluster: {err}", file=sys.stderr)
        return 2
    if job is None:
        print(f"why_failed: no Job of {NAME} in {namespace}: the submission failed before the Job was created "
              "(see mlflow's message above).", file=sys.stderr)
        return 1
    print(explain(job), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
