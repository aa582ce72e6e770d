"""Prove the researcher mode on the local cluster: the suite as a Run:ai project member runs it.

On a real Run:ai cluster `make e2e CLUSTER=existing SCHEDULER=runai E2E_RUNAI_PROJECT=<p>` runs with a
researcher's rights: the project's namespace exists, the researcher may work only inside it, and
Run:ai's scheduler is already running. This module builds exactly that on the local cluster, as an
admin would, and then runs the suite as the researcher:

1. the project namespace `runai-<p>`, a ServiceAccount, and a Role that covers only that namespace;
   a kubeconfig with the ServiceAccount's token (what a researcher has);
2. the fake Run:ai scheduler as its own process (`python -m fake_runai_scheduler`), as Run:ai would be;
3. a node type on the GPU node, given to the suite with E2E_NODE_TYPE (the suite may not label nodes);
4. the suite, with only the researcher's kubeconfig;
5. the proof: nothing outside the namespace changed, and nothing the suite made is left in it.

python -m suite.researcher [pytest arguments]   (make e2e-researcher)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml
from kube import ApiError, KubeApi, wait_until
from kube.paths import REPO_ROOT
from local_cluster import LocalCluster
from local_cluster.images import PYTHON_BASE_IMAGE
from runai.names import NAMESPACE_VERSION_LABEL, NODE_TYPE_LABEL, PRIORITY_CLASSES, QUEUE_LABEL

PROJECT = "researcher"
NAMESPACE = f"runai-{PROJECT}"
ACCOUNT = "researcher"
NODE_TYPE = "researcher-gpu"
# The project's GPU quota: the local node's 4 fake GPUs.
GPU_QUOTA = 4
# Variants at a time in the one queue. Each run's pod asks for 1 CPU of the node's 2, and at most 2 GPUs:
# two fit side by side. A third would wait for CPU, and in one queue a higher-priority variant (interactive)
# takes it by preempting a train one, as Run:ai does (measured: cpu-only preempted, restarts=1). On a real
# project, whose capacity the suite cannot know, the default stays one at a time (E2E_JOBS).
CONCURRENT_RUNS = 2
# What a Run:ai researcher may do in the project namespace (the e2e suite's needs, no more):
# MLflow creates, polls and deletes Jobs; the suite reads pods, logs and events and makes a secret;
# make run creates a Service.
ROLE_RULES = [
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "get", "list", "watch", "delete"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "get", "list", "delete"]},
    # make run creates a several-node project's headless Service (its pods' DNS names); the suite removes it.
    {"apiGroups": [""], "resources": ["services"], "verbs": ["create", "get", "list", "delete"]},
]


def namespace_gone(api: KubeApi) -> bool:
    try:
        api.get(f"/api/v1/namespaces/{NAMESPACE}")
    except ApiError as err:
        if err.status == 404:
            return True
        raise
    return False


def create_project(api: KubeApi) -> None:
    """What Run:ai creates for a project, and a member's rights in it."""
    if not namespace_gone(api):  # left by an interrupted proof
        api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}")
        wait_until(lambda: namespace_gone(api), 120, f"the old {NAMESPACE} to be deleted")
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": NAMESPACE, "labels": {
        QUEUE_LABEL: PROJECT, NAMESPACE_VERSION_LABEL: "v2", "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest"}}})
    base = f"/api/v1/namespaces/{NAMESPACE}"
    api.request("POST", f"{base}/serviceaccounts", body={"metadata": {"name": ACCOUNT}})
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NAMESPACE}"
    api.request("POST", f"{rbac}/roles", body={"metadata": {"name": ACCOUNT}, "rules": ROLE_RULES})
    api.request("POST", f"{rbac}/rolebindings", body={
        "metadata": {"name": ACCOUNT},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ACCOUNT},
        "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]})
    wait_until(lambda: api.get(f"{base}/serviceaccounts")["items"], 60, f"ServiceAccounts in {NAMESPACE}")


def service_account_kubeconfig(api: KubeApi, admin_kubeconfig: Path, namespace: str, account: str,
                               path: Path) -> Path:
    """The admin's cluster entry with a ServiceAccount's token: nothing of the admin's credentials."""
    token = api.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
                        body={"spec": {"expirationSeconds": 7200}})["status"]["token"]
    admin = yaml.safe_load(admin_kubeconfig.read_text())
    context = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])["context"]
    cluster = next(c for c in admin["clusters"] if c["name"] == context["cluster"])
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": account, "clusters": [cluster],
        "users": [{"name": account, "user": {"token": token}}],
        "contexts": [{"name": account, "context": {"cluster": cluster["name"], "user": account,
                                                  "namespace": namespace}}]}))
    path.chmod(0o600)
    return path


def outside_state(api: KubeApi) -> dict:
    """What the researcher must not change: every other namespace's objects, nodes, and cluster objects."""
    state: dict = {"namespaces": {}, "nodes": {}, "cluster": {}}
    for namespace in api.get("/api/v1/namespaces")["items"]:
        name = namespace["metadata"]["name"]
        state["namespaces"][name] = namespace["metadata"].get("labels", {})
        if name == NAMESPACE:
            continue
        for kind, path in (("pods", "api/v1"), ("secrets", "api/v1"), ("configmaps", "api/v1"),
                           ("serviceaccounts", "api/v1"), ("jobs", "apis/batch/v1"),
                           ("persistentvolumeclaims", "api/v1")):
            items = api.get(f"/{path}/namespaces/{name}/{kind}")["items"]
            state["namespaces"][f"{name}/{kind}"] = sorted(i["metadata"]["name"] for i in items)
    for node in api.get("/api/v1/nodes")["items"]:
        state["nodes"][node["metadata"]["name"]] = {"labels": node["metadata"].get("labels", {}),
                                                    "spec": node.get("spec", {})}
    for kind, path in (("persistentvolumes", "/api/v1/persistentvolumes"),
                       ("priorityclasses", "/apis/scheduling.k8s.io/v1/priorityclasses"),
                       ("clusterroles", "/apis/rbac.authorization.k8s.io/v1/clusterroles"),
                       ("clusterrolebindings", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings")):
        state["cluster"][kind] = sorted(i["metadata"]["name"] for i in api.get(path)["items"])
    return state


def inside_state(api: KubeApi) -> dict:
    """What the project namespace holds, by kind."""
    kinds = (("jobs", "apis/batch/v1"), ("pods", "api/v1"), ("secrets", "api/v1"), ("configmaps", "api/v1"),
             ("persistentvolumeclaims", "api/v1"))
    return {kind: sorted(i["metadata"]["name"] for i in api.get(f"/{path}/namespaces/{NAMESPACE}/{kind}")["items"])
            for kind, path in kinds}


def differences(before: dict, after: dict, where: str = "") -> list[str]:
    found = []
    for key in sorted(set(before) | set(after)):
        if isinstance(before.get(key), dict) and isinstance(after.get(key), dict):
            found += differences(before[key], after[key], f"{where}{key}/")
        elif before.get(key) != after.get(key):
            found.append(f"{where}{key}: {json.dumps(before.get(key))} -> {json.dumps(after.get(key))}")
    return found


def start_scheduler(api: KubeApi, kubeconfig: Path, work: Path, report: Path) -> subprocess.Popen:
    """Run:ai's scheduler, already running when a researcher arrives: a process of its own, the admin's rights."""
    config = work / "queues.yaml"
    config.write_text(yaml.safe_dump({"queues": [{"name": PROJECT, "gpu": {"quota": GPU_QUOTA, "limit": -1}}]}))
    with open(report / "scheduler.log", "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "fake_runai_scheduler", "--kubeconfig", str(kubeconfig),
                                    "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "e2e")})
    # Started: it has made Run:ai's PriorityClasses (so the snapshot below does not race it).
    classes = "/apis/scheduling.k8s.io/v1/priorityclasses"
    wait_until(lambda: set(PRIORITY_CLASSES) <= {c["metadata"]["name"] for c in api.get(classes)["items"]},
               60, "the fake Run:ai scheduler's PriorityClasses",
               give_up=lambda: f"it exited {process.returncode}" if process.poll() is not None else None)
    return process


def label_node(api: KubeApi, node: str, value: str | None) -> None:
    api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                body={"metadata": {"labels": {NODE_TYPE_LABEL: value}}})


def run_suite(cluster: LocalCluster, kubeconfig: Path, report: Path, pytest_args: list[str]) -> int:
    env = {**os.environ, "CLUSTER": "existing", "SCHEDULER": "runai", "E2E_RUNAI_PROJECT": PROJECT,
           "KUBECONFIG": str(kubeconfig), "E2E_REGISTRY": cluster.registry, "E2E_HOST_ADDRESS": cluster.host_address,
           "E2E_BASE_IMAGE": PYTHON_BASE_IMAGE, "E2E_NODE_TYPE": NODE_TYPE, "E2E_REPORT_DIR": str(report),
           "E2E_JOBS": os.environ.get("E2E_JOBS", str(CONCURRENT_RUNS))}
    command = [sys.executable, "-m", "pytest", "-p", "suite.live_progress", str(REPO_ROOT / "e2e" / "suite"),
               f"--junitxml={report}-junit.xml", *pytest_args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env).returncode


def main(pytest_args: list[str]) -> int:
    cluster = LocalCluster().up()
    api = KubeApi.from_kubeconfig(str(cluster.kubeconfig))
    node = cluster.settings.node_name
    report = Path(os.environ.get("E2E_REPORT_DIR", REPO_ROOT / "e2e-report")) / "researcher"
    report.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="runai-researcher-") as tmp:
        work = Path(tmp)
        scheduler = None
        try:
            create_project(api)
            label_node(api, node, NODE_TYPE)
            scheduler = start_scheduler(api, cluster.kubeconfig, work, report)
            kubeconfig = service_account_kubeconfig(api, cluster.kubeconfig, NAMESPACE, ACCOUNT,
                                                    work / "researcher.kubeconfig")
            before, inside_before = outside_state(api), inside_state(api)
            code = run_suite(cluster, kubeconfig, report, pytest_args)
            changed = differences(before, outside_state(api))
            left = differences(inside_before, inside_state(api), f"{NAMESPACE}/")
        finally:
            if scheduler:
                scheduler.terminate()
                scheduler.wait(30)
            label_node(api, node, None)
            api.delete(f"/api/v1/namespaces/{NAMESPACE}")
    print(f"researcher mode: the suite exited {code}")
    for line in changed:
        print(f"researcher mode: changed outside {NAMESPACE}: {line}")
    for line in left:
        print(f"researcher mode: left in {NAMESPACE}: {line}")
    if not changed and not left:
        print(f"researcher mode: nothing outside {NAMESPACE} changed, and nothing the suite made is left in it")
    return code or (1 if changed or left else 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
