"""The cluster and namespace this project submits to, as its own files name them.

kubernetes_config.json names the kube context and the Job template; the template names the
namespace. Every tool that reads or deletes this project's Jobs (submit, cancel, why_failed)
connects through here, so they all look where `mlflow run` submitted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
NAME = {{ cookiecutter.project_slug | py_str }}
# Kubernetes puts this label on every pod of a Job (and keeps it on pods whose Job was deleted without them).
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
# The Job template puts this on every pod of this project, whatever its Job: watched before the Job exists.
PROJECT_PODS = f"app.kubernetes.io/name={NAME}"


@dataclass
class Cluster:
    core: object
    batch: object
    namespace: str


def connect() -> Cluster:
    from kubernetes import client
    from kubernetes import config as kube_config

    config = json.loads((HERE / "kubernetes_config.json").read_text())
    template = yaml.safe_load((HERE / config["kube-job-template-path"]).read_text())
    kube_config.load_kube_config(context=config.get("kube-context"))
    return Cluster(client.CoreV1Api(), client.BatchV1Api(), template["metadata"]["namespace"])


# A several-node project's headless Service (the nodes answer): its pods' DNS names, where they meet.
PEERS_SERVICE_FILE = HERE / "kubernetes_peers_service.yaml"


def ensure_peers_service(cluster: Cluster) -> str | None:
    """Create the project's headless Service if it is missing; say what was done, None when nothing was."""
    from kubernetes.client.exceptions import ApiException

    if not PEERS_SERVICE_FILE.is_file():
        return None
    service = yaml.safe_load(PEERS_SERVICE_FILE.read_text())
    name = service["metadata"]["name"]
    try:
        cluster.core.create_namespaced_service(cluster.namespace, service)
    except ApiException as err:
        if err.status == 409:
            return None  # there already, from an earlier run
        raise
    return f"created the headless Service {name}: the pods of a run find each other as <job>-<index>.{name}"


def pods_of_job(cluster: Cluster, job: str) -> list[dict]:
    """The Job's pods, oldest first: the first attempt, then each replacement."""
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=f"{JOB_NAME_LABEL}={job}",
                                            _preload_content=False)
    return sorted(json.loads(pods.data)["items"], key=lambda pod: pod["metadata"]["creationTimestamp"])


def read_job(cluster: Cluster, job: str) -> dict | None:
    from kubernetes.client.exceptions import ApiException

    try:
        return json.loads(cluster.batch.read_namespaced_job(job, cluster.namespace, _preload_content=False).data)
    except ApiException as err:
        if err.status == 404:
            return None
        raise


def run_id_of(pod_spec: dict) -> str | None:
    """The run a pod (or a Job's pod template) trains in: the one `make resume` named (--continue-run), else
    the one MLflow created for the submission (its MLFLOW_RUN_ID in the environment)."""
    for container in pod_spec.get("containers", []):
        command = container.get("command") or []
        if "--continue-run" in command[:-1] and command[command.index("--continue-run") + 1] != "none":
            return command[command.index("--continue-run") + 1]
        for variable in container.get("env", []):
            if variable["name"] == "MLFLOW_RUN_ID":
                return variable.get("value")
    return None
