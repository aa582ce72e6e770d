"""Check the submitting environment before `mlflow run` creates an MLflow run.

MLflow creates the run first and checks Docker, the environment image and Kubernetes
afterwards, so any of these mistakes would leave a run stuck in RUNNING. Exit code 2 means
"fix and retry". Standard library only at the top: a missing package is reported, not raised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

HERE = Path(__file__).resolve().parent
SUBMITTING_TOOLS = ("mlflow", "kubernetes", "yaml")  # from requirements-dev.txt
# Local environments, tracking stores and caches that do not belong in the image.
UNWANTED_IN_IMAGE = (".venv", "venv", "mlruns", "mlartifacts", "*.db", ".pytest_cache", ".ruff_cache")
FOLDER_LIMIT = 50 * 2**20
ACCEPT_FOLDER_VARIABLE = "PREFLIGHT_ACCEPT_FOLDER"


def _is_http(uri: str) -> bool:
    parsed = urlparse(uri)
    return parsed.scheme in ("http", "https") and bool(parsed.netloc)


def check_submitting_tools() -> list[str]:
    missing = [name for name in SUBMITTING_TOOLS if importlib.util.find_spec(name) is None]
    if missing:
        return [f"Python packages missing here: {', '.join(missing)}. Install the submitting tools into a "
                "virtual environment outside this folder (MLflow copies the folder into the image): "
                "python3 -m venv ~/.venvs/{{ cookiecutter.project_slug }} && "
                "~/.venvs/{{ cookiecutter.project_slug }}/bin/pip install -r requirements-dev.txt"]
    return []


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(child.lstat().st_size for child in path.rglob("*") if not child.is_symlink() and child.is_file())


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def check_project_folder(folder: Path, env: dict) -> list[str]:
    """`mlflow run --build-image` copies this whole folder into the image and pushes it."""
    if env.get(ACCEPT_FOLDER_VARIABLE) == "1":
        return []
    how = (f"Move them out of {folder.name}/, or ship them knowingly: {ACCEPT_FOLDER_VARIABLE}=1 make run")
    unwanted = sorted(path for pattern in UNWANTED_IN_IMAGE for path in folder.glob(pattern))
    if unwanted:
        listing = ", ".join(f"{path.relative_to(folder)} ({_mib(_size(path))})" for path in unwanted)
        return [f"MLflow would copy these into the image and push them: {listing}. {how}."]
    total = _size(folder)
    if total > FOLDER_LIMIT:
        biggest = sorted(folder.iterdir(), key=_size, reverse=True)[:3]
        listing = ", ".join(f"{path.name} ({_mib(_size(path))})" for path in biggest)
        return [f"This folder holds {_mib(total)} (limit {_mib(FOLDER_LIMIT)}), which MLflow would copy into the "
                f"image and push; the largest: {listing}. Keep data out of the project (mount or download "
                f"it in the pod). {how}."]
    return []


def check_tracking_uris(env: dict) -> list[str]:
    problems = []
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if not _is_http(uri):
        problems.append(
            f"MLFLOW_TRACKING_URI is {uri!r}; set it to your tracking server's http(s) URL as seen from "
            "this machine, e.g. export MLFLOW_TRACKING_URI=https://mlflow.example.com "
            "(a local file or sqlite store means nothing inside the pod)."
        )
    pod_uri = env.get("KUBE_MLFLOW_TRACKING_URI", "")
    if not _is_http(pod_uri):
        problems.append(
            f"KUBE_MLFLOW_TRACKING_URI is {pod_uri!r}; set it to the tracking server's http(s) URL as seen "
            "from pods, e.g. export KUBE_MLFLOW_TRACKING_URI=http://mlflow.mlflow.svc:5000 "
            "(use $MLFLOW_TRACKING_URI if it is the same)."
        )
    return problems


def check_docker() -> list[str]:
    try:
        result = subprocess.run(["docker", "info"],
                                capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired) as err:
        return [f"Docker is not usable ({err}); install Docker and start the daemon: MLflow builds the image locally."]
    if result.returncode != 0:
        reason = result.stderr.strip() or result.stdout.strip()
        return [f"Docker is not running ({reason}); start the daemon and retry."]
    return []


def environment_image(mlproject: Path) -> str:
    """docker_env.image of MLproject, read without YAML (preflight must run before any dependency check)."""
    for line in mlproject.read_text().splitlines():
        if line.strip().startswith("image:"):
            return line.split(":", 1)[1].strip()
    raise ValueError(f"{mlproject} has no docker_env image")


def check_environment_image(image: str) -> list[str]:
    result = subprocess.run(["docker", "image", "inspect", image], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return [f"The environment image {image} is not on this machine; build it with `make image` first "
                "(MLflow builds the project image FROM it, after it has already created the run)."]
    return []


# What `make run` does in the namespace: mlflow creates the Job and polls its status; submit.py follows
# its pods' logs, and on Ctrl-C deletes the Job and its pods (cancel.py).
JOB_ACCESS = (("batch", "create", "jobs", ""), ("batch", "get", "jobs", "status"), ("batch", "delete", "jobs", ""),
              ("", "list", "pods", ""), ("", "get", "pods", "log"), ("", "delete", "pods", ""))


# A several-node project also needs its headless Service, which make run creates when it is missing.
PEERS_SERVICE_ACCESS = (("", "create", "services", ""),)


def denied_job_access(client, namespace: str) -> list[str]:
    """Ask the API server what this user may do with Jobs in the namespace (SelfSubjectAccessReview).

    Works for a Run:ai researcher, whose rights end at the project namespace: no cluster-wide read needed.
    """
    from cluster import PEERS_SERVICE_FILE

    api, denied = client.AuthorizationV1Api(), []
    access = JOB_ACCESS + (PEERS_SERVICE_ACCESS if PEERS_SERVICE_FILE.is_file() else ())
    for group, verb, resource, subresource in access:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group,
                                                            resource=resource, subresource=subresource or None)))
        if not api.create_self_subject_access_review(review, _request_timeout=15).status.allowed:
            denied.append(f"{verb} {resource}{'/' + subresource if subresource else ''}")
    return denied


def check_kubernetes(config: dict, namespace: str) -> list[str]:
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.client.rest import ApiException
    from kubernetes.config.config_exception import ConfigException

    context = config.get("kube-context")
    try:
        kube_config.load_kube_config(context=context)
    except (ConfigException, FileNotFoundError) as err:
        where = f"context {context!r}" if context else "the current context"
        return [f"Cannot load {where} from your kubeconfig ({err}); check 'kubectl config get-contexts' "
                "and the kube-context in kubernetes_config.json."]
    try:
        denied = denied_job_access(client, namespace)
        if denied:
            return [f"You may not {', '.join(denied)} in namespace {namespace!r}, which `mlflow run` needs. Is "
                    "this the right kube context, and are you a member of the Run:ai project? (checked with "
                    "a SelfSubjectAccessReview)"]
        client.CoreV1Api().read_namespace(namespace, _request_timeout=15)
    except ApiException as err:
        if err.status == 404:
            return [f"Namespace {namespace!r} does not exist; is the Run:ai project created, "
                    "and is this the right cluster?"]
        if err.status == 403:
            return []  # a researcher may not read the Namespace object; the access review above passed
        return [f"The Kubernetes API refused a preflight check in namespace {namespace!r}: {err.status} {err.reason}"]
    except Exception as err:  # noqa: BLE001 - connection errors come in many types
        return [f"Cannot reach the Kubernetes API: {err}"]
    return []


def job_namespace(template: Path) -> str:
    import yaml

    return yaml.safe_load(template.read_text())["metadata"]["namespace"]


def main() -> int:
    config = json.loads((HERE / "kubernetes_config.json").read_text())
    problems = (check_submitting_tools() + check_tracking_uris(dict(os.environ))
                + check_project_folder(HERE, dict(os.environ)) + check_docker())
    if not problems:
        problems = check_environment_image(environment_image(HERE / "MLproject"))
    if not problems:
        problems = check_kubernetes(config, job_namespace(HERE / config["kube-job-template-path"]))
    for problem in problems:
        print(f"preflight: {problem}", file=sys.stderr)
    if problems:
        print("preflight: nothing was submitted and no MLflow run was created.", file=sys.stderr)
        return 2
    print("preflight: tracking URIs, Docker, the environment image and Kubernetes look good.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
