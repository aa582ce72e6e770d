"""Small helpers over the Kubernetes Python client for the local cluster's tests."""

from __future__ import annotations

import subprocess
import uuid

from kube import wait_until
from kubernetes import client, config


def api_client(kubeconfig) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def fresh_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # The ServiceAccount admission plugin needs the default ServiceAccount first.
    wait_until(lambda: client.CoreV1Api(api).list_namespaced_service_account(name).items, 60,
               f"the default ServiceAccount in {name}")
    return name


def delete_namespace(api: client.ApiClient, name: str) -> None:
    client.CoreV1Api(api).delete_namespace(name, propagation_policy="Background")


def job_manifest(name: str, image: str, command: list[str], gpus: int = 0, env: dict | None = None) -> dict:
    resources = {"limits": {"nvidia.com/gpu": str(gpus)}} if gpus else {}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": image, "command": command, "resources": resources,
                            "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}],
        }}},
    }


def job_pods(api: client.ApiClient, namespace: str, job: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def build_and_push(dockerfile: str, reference: str) -> None:
    subprocess.run(["docker", "build", "-q", "-t", reference, "-"], input=dockerfile.encode(), check=True,
                   capture_output=True)
    subprocess.run(["docker", "push", "-q", reference], check=True, capture_output=True)
