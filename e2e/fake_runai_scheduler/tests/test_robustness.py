"""State comes from the API: restarts, expired watches, stress and SIGKILL never over-commit a GPU or a queue.

Invariants are checked from what the API server holds (bound pods and their annotations), never
from the scheduler's memory.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from kube import ApiError

from fake_runai_scheduler.informer import Informer

from .harness import create_pod, events_for, pod_body, wait_bound, wait_unschedulable, wait_until

pytestmark = pytest.mark.cluster
E2E = Path(__file__).resolve().parents[2]


def bound_pods(api, namespace: str) -> list[dict]:
    return [p for p in api.get(f"/api/v1/namespaces/{namespace}/pods")["items"] if p["spec"].get("nodeName")]


def assert_no_overcommit(api, namespace: str, node_gpus: dict[str, int], limits: dict[str, float]) -> int:
    """GPUs per node, share per GPU and GPUs per queue, from the API; returns how many pods are bound."""
    pods = bound_pods(api, namespace)
    whole, devices, per_queue = defaultdict(int), defaultdict(float), defaultdict(float)
    for pod in pods:
        node, annotations = pod["spec"]["nodeName"], pod["metadata"].get("annotations", {})
        queue = pod["metadata"]["labels"]["runai/queue"]
        if "gpu-fraction" in annotations:
            share = float(annotations["gpu-fraction"])
            devices[(node, annotations["runai-gpu-index"])] += share
            per_queue[queue] += share
        else:
            gpus = int(pod["spec"]["containers"][0]["resources"].get("limits", {}).get("nvidia.com/gpu", 0))
            whole[node] += gpus
            per_queue[queue] += gpus
    for (node, device), share in devices.items():
        assert share <= 1 + 1e-9, f"GPU {device} of {node} holds {share}"
    for node, gpus in node_gpus.items():
        shared = len({d for (n, d) in devices if n == node})
        assert whole[node] + shared <= gpus, f"{node}: {whole[node]} whole + {shared} shared GPUs > {gpus}"
    for queue, used in per_queue.items():
        if limits.get(queue, -1) != -1:
            assert used <= limits[queue] + 1e-9, f"queue {queue} uses {used} > limit {limits[queue]}"
    return len(pods)


def wait_quiet(api, namespace: str, seconds: float = 3, timeout: float = 120) -> int:
    """Wait until the number of bound pods stops changing."""
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        count = len(bound_pods(api, namespace))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return count
        time.sleep(0.3)
    raise AssertionError("the scheduler kept binding for too long")


QUEUES = [{"name": "q1", "gpu": {"quota": 8, "limit": 16}}, {"name": "q2", "gpu": {"quota": 8, "limit": -1}},
          {"name": "q3", "gpu": {"quota": 4, "limit": 6}}]
LIMITS = {q["name"]: q["gpu"]["limit"] for q in QUEUES}


def random_pods(count: int, scheduler: str, pool: str, seed: int) -> list[dict]:
    rng = random.Random(seed)
    pods = []
    for i in range(count):
        kind = rng.random()
        gpus, fraction = (rng.choice([1, 1, 2]), None) if kind < 0.4 else (0, rng.choice([0.25, 0.5, 0.75]))
        pods.append(pod_body(f"pod-{i:03d}", scheduler, pool, gpus, fraction, rng.choice(["q1", "q2", "q3"]),
                             cpu="10m", memory="1Mi"))
    return pods


def create_all(api, namespace: str, pods: list[dict], workers: int = 4) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda body: create_pod(api, namespace, body), pods))


def test_restart_rebuilds_nodes_and_quotas_from_the_api(api, nodes, namespace, start_scheduler, pool):
    node = nodes.create(pool, gpus=4)
    queues = [{"name": "team-a", "gpu": {"quota": 4, "limit": 3}}, {"name": "team-b", "gpu": {"quota": 4, "limit": -1}}]
    first = start_scheduler(queues)
    for i in range(3):
        create_pod(api, namespace, pod_body(f"a{i}", first.name, pool, gpus=1, queue="team-a"))
        wait_bound(api, namespace, f"a{i}")
    first.stop()

    second = start_scheduler(queues, name=first.name)
    create_pod(api, namespace, pod_body("a3", second.name, pool, gpus=1, queue="team-a"))
    assert "currently 3 GPUs allocated" in wait_unschedulable(api, namespace, "a3")
    create_pod(api, namespace, pod_body("b0", second.name, pool, gpus=2, queue="team-b"))
    assert "didn't have enough free GPUs" in wait_unschedulable(api, namespace, "b0")
    create_pod(api, namespace, pod_body("b1", second.name, pool, gpus=1, queue="team-b"))
    assert wait_bound(api, namespace, "b1")["spec"]["nodeName"] == node


def test_expired_watch_is_answered_by_relisting(api, namespace):
    """The first watch fails with 410 Gone (as after etcd compaction); the informer re-lists and resumes."""
    changes = threading.Event()
    informer = Informer(api, f"/api/v1/namespaces/{namespace}/configmaps", changes.set, watch_seconds=5)
    real_watch, calls = api.watch, []

    def watch_that_expires_once(path, version, timeout):
        calls.append(version)
        if len(calls) == 1:
            raise ApiError(410, "too old resource version")
        return real_watch(path, version, timeout)

    informer.api = type("ExpiringApi", (), {"get": api.get, "watch": staticmethod(watch_that_expires_once)})()
    api.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body={"metadata": {"name": "before"}})
    informer.start()
    try:
        wait_until(lambda: informer.relists >= 2, 15, what="re-list after 410")
        assert informer.get(f"{namespace}/before")
        api.request("POST", f"/api/v1/namespaces/{namespace}/configmaps", body={"metadata": {"name": "after"}})
        wait_until(lambda: informer.get(f"{namespace}/after"), 15, what="watch resumed after re-list")
    finally:
        informer.stop()


@pytest.mark.slow
def test_500_pods_never_overcommit(api, nodes, namespace, start_scheduler, pool):
    node_gpus = {nodes.create(pool, gpus=8): 8 for _ in range(5)}
    scheduler = start_scheduler(QUEUES)
    create_all(api, namespace, random_pods(500, scheduler.name, pool, seed=500))
    bound = wait_quiet(api, namespace)
    assert bound > 40
    assert assert_no_overcommit(api, namespace, node_gpus, LIMITS) == bound

    victims = random.Random(1).sample(bound_pods(api, namespace), bound // 2)
    for pod in victims:
        api.request("DELETE", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}",
                    body={"gracePeriodSeconds": 0})
    wait_quiet(api, namespace)
    # Freed GPUs go to pending pods: more than the survivors end up bound, still within every limit.
    assert assert_no_overcommit(api, namespace, node_gpus, LIMITS) > bound - len(victims)


@pytest.mark.slow
def test_sigkill_mid_stream_binds_nothing_twice(api, nodes, namespace, cluster, pool, tmp_path):
    node_gpus = {nodes.create(pool, gpus=8): 8 for _ in range(3)}
    name = f"runai-scheduler-{pool}"
    config = tmp_path / "queues.yaml"
    config.write_text(yaml.safe_dump({"schedulerName": name, "queues": QUEUES}))
    command = [sys.executable, "-m", "fake_runai_scheduler", "--kubeconfig", str(cluster.kubeconfig),
               "--config", str(config), "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(E2E)}
    first = subprocess.Popen(command, env=env)
    # Flood only once the first scheduler binds: pods created while it still starts up would land in one
    # burst that fills every GPU before the kill, and the kill would no longer be mid-stream.
    create_pod(api, namespace, pod_body("ready-probe", name, pool, queue="q2"))
    wait_bound(api, namespace, "ready-probe", timeout=60)
    creator = threading.Thread(target=create_all, args=(api, namespace, random_pods(300, name, pool, seed=7), 2))
    creator.start()
    wait_until(lambda: len(bound_pods(api, namespace)) >= 10, 60, what="first bindings", interval=0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed_at = len(bound_pods(api, namespace))
    second = subprocess.Popen(command, env=env)
    try:
        creator.join()
        bound = wait_quiet(api, namespace)
    finally:
        second.terminate()
        second.wait(10)
    assert bound > killed_at
    assert assert_no_overcommit(api, namespace, node_gpus, LIMITS) == bound
    for pod in bound_pods(api, namespace):
        # Annotations arrive with the binding itself, so every bound pod was bound by the fake scheduler.
        assert pod["metadata"]["annotations"]["pod-group-name"].startswith("pg-"), pod["metadata"]["name"]
        # Events are written asynchronously (as kube-scheduler's are): a SIGKILL right after a bind may
        # lose that pod's event, but no pod is ever reported bound twice.
        assert len(events_for(api, namespace, pod["metadata"]["name"], "Scheduled")) <= 1, pod["metadata"]["name"]
