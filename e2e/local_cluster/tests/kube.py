"""Small helpers over the Kubernetes Python client, shared by the cluster tests and benchmarks."""

from __future__ import annotations

import subprocess
import time
import uuid

from kubernetes import client, config


def api_client(kubeconfig) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


def fresh_namespace(api: client.ApiClient, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the ServiceAccount admission plugin needs the default SA first
        if client.CoreV1Api(api).list_namespaced_service_account(name).items:
            return name
        time.sleep(0.2)
    raise TimeoutError(f"no default ServiceAccount in {name}")


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


def wait_for(predicate, timeout: float, interval: float = 0.5, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached in {timeout}s")


def job_pods(api: client.ApiClient, namespace: str, job: str) -> list:
    return client.CoreV1Api(api).list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def build_and_push(dockerfile: str, reference: str) -> None:
    subprocess.run(["docker", "build", "-q", "-t", reference, "-"], input=dockerfile.encode(), check=True,
                   capture_output=True)
    subprocess.run(["docker", "push", "-q", reference], check=True, capture_output=True)
