"""The local cluster runs real containers: images from the loopback registry, fake GPUs, host reachability."""

import http.server
import re
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from kube import wait_until
from kubernetes import client, utils

from local_cluster.images import PYTHON_BASE_IMAGE

from .helpers import api_client, build_and_push, delete_namespace, fresh_namespace, job_manifest, job_pods

pytestmark = pytest.mark.cluster


@pytest.fixture
def api(cluster):
    return api_client(cluster.kubeconfig)


@pytest.fixture
def namespace(api):
    name = fresh_namespace(api, "smoke")
    yield name
    delete_namespace(api, name)


@pytest.fixture
def host_server(cluster):
    """An HTTP server on the host, bound to the address the cluster advertises to pods."""
    token = uuid.uuid4().hex

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            self.send_response(200)
            self.end_headers()
            self.wfile.write(token.encode())

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer((cluster.host_address, 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{cluster.host_address}:{server.server_address[1]}/", token
    server.shutdown()


def test_gpu_job_runs_from_local_registry_and_reaches_host(cluster, api, namespace, host_server):
    url, token = host_server
    image = f"{cluster.registry}/smoke:{uuid.uuid4().hex[:8]}"
    build_and_push(f"FROM {PYTHON_BASE_IMAGE}\n", image)
    fetch = ("import os, urllib.request; "
             "print('got', urllib.request.urlopen(os.environ['URL'], timeout=10).read().decode())")
    job = job_manifest("smoke", image.replace(cluster.registry, cluster.image_prefix), ["python3", "-c", fetch],
                       gpus=1, env={"URL": url})
    utils.create_from_dict(api, job, namespace=namespace)

    def finished():
        status = client.BatchV1Api(api).read_namespaced_job_status("smoke", namespace).status
        return status.succeeded or status.failed
    wait_until(finished, 180, what="smoke job finished")
    [pod] = job_pods(api, namespace, "smoke")
    log = client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, namespace)
    assert client.BatchV1Api(api).read_namespaced_job_status("smoke", namespace).status.succeeded == 1, log
    assert f"got {token}" in log
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "1"


def bridge_address(bridge: str) -> str:
    return Path(f"/sys/class/net/{bridge}/address").read_text().strip()


def test_the_gateway_address_pods_resolved_stays_while_pods_come_and_go(cluster):
    """Pods resolve the host (the bridge) once and keep its hardware address. A veth joins the bridge with
    each pod, as this one does, with an address below every other: an unset bridge address would follow it
    and change back when it leaves, and each change stalled pods' traffic to the host (the tracking server)."""
    bridge = cluster.settings.bridge
    assert bridge_address(bridge) == cluster.settings.bridge_mac
    host_end, pod_end = f"rmtest{uuid.uuid4().hex[:6]}", f"rmpeer{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "link", "add", host_end, "address", "02:00:00:00:00:01", "type", "veth",
                    "peer", "name", pod_end], check=True)
    try:
        subprocess.run(["ip", "link", "set", host_end, "master", bridge, "up"], check=True)
        assert bridge_address(bridge) == cluster.settings.bridge_mac
    finally:
        subprocess.run(["ip", "link", "del", host_end], check=True)
    assert bridge_address(bridge) == cluster.settings.bridge_mac


# Index 0 answers one request with its hostname; index 1 finds it by name, as torchrun's rendezvous at
# index 0 does, then asks for a name outside the cluster.
PEERS = """
import http.server, os, socket, time, urllib.request
if os.environ["JOB_COMPLETION_INDEX"] == "0":
    class Hostname(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(socket.gethostname().encode())
    http.server.HTTPServer(("", 8080), Hostname).handle_request()
else:
    for attempt in range(120):  # until index 0 runs and its name is published
        try:
            print("peer says", urllib.request.urlopen(os.environ["PEER"], timeout=5).read().decode(), flush=True)
            break
        except OSError as err:
            error = err
            time.sleep(1)
    else:
        raise SystemExit(f"index 0 never answered: {error}")
    started = time.monotonic()
    try:
        socket.getaddrinfo("example.com", 443)
        print("an outside name resolved")
    except socket.gaierror:
        print(f"outside name refused in {time.monotonic() - started:.1f}s")
"""


def test_an_indexed_jobs_pods_find_each_other_by_hostname_through_cluster_dns(cluster, api, namespace):
    """What several-node training needs: the pods of an Indexed Job with a headless Service as subdomain
    reach index 0 by its DNS name; a name outside the cluster is refused at once, never forwarded."""
    client.CoreV1Api(api).create_namespaced_service(namespace, {
        "metadata": {"name": "team"},
        "spec": {"clusterIP": "None", "selector": {"job-name": "peers"}, "publishNotReadyAddresses": True}})
    image = f"{cluster.registry}/peers:{uuid.uuid4().hex[:8]}"
    build_and_push(f"FROM {PYTHON_BASE_IMAGE}\n", image)
    job = job_manifest("peers", image.replace(cluster.registry, cluster.image_prefix), ["python3", "-c", PEERS],
                       env={"PEER": "http://peers-0.team:8080/"})  # by the search path, as on any cluster
    job["spec"].update({"completionMode": "Indexed", "completions": 2, "parallelism": 2})
    job["spec"]["template"]["spec"]["subdomain"] = "team"
    utils.create_from_dict(api, job, namespace=namespace)

    def finished():
        status = client.BatchV1Api(api).read_namespaced_job_status("peers", namespace).status
        return (status.succeeded or 0) == 2 or status.failed
    wait_until(finished, 240, what="both pods of the Indexed Job finished")
    logs = {pod.metadata.labels["batch.kubernetes.io/job-completion-index"]:
            client.CoreV1Api(api).read_namespaced_pod_log(pod.metadata.name, namespace)
            for pod in job_pods(api, namespace, "peers")}
    assert client.BatchV1Api(api).read_namespaced_job_status("peers", namespace).status.succeeded == 2, logs
    assert "peer says peers-0" in logs["1"], logs
    refused = re.search(r"outside name refused in ([\d.]+)s", logs["1"])
    assert refused and float(refused[1]) < 3, logs["1"]


def test_more_gpus_than_the_node_has_stays_pending(cluster, api, namespace):
    job = job_manifest("greedy", cluster.settings.pause_image, ["/pause"], gpus=cluster.settings.gpus + 1)
    utils.create_from_dict(api, job, namespace=namespace)
    [pod] = wait_until(lambda: job_pods(api, namespace, "greedy"), 60, what="pod created")

    def scheduling_failure():
        events = client.CoreV1Api(api).list_namespaced_event(
            namespace, field_selector=f"involvedObject.name={pod.metadata.name}").items
        return [e for e in events if e.reason == "FailedScheduling"]
    [event] = wait_until(scheduling_failure, 60, what="FailedScheduling event")[:1]
    assert "Insufficient nvidia.com/gpu" in event.message

    # kube-scheduler records the event and writes the pod's condition separately: the event may come first.
    def scheduled_condition():
        current = client.CoreV1Api(api).read_namespaced_pod(pod.metadata.name, namespace)
        return [(current, c) for c in current.status.conditions or [] if c.type == "PodScheduled"]
    [(current, condition)] = wait_until(scheduled_condition, 60, what="the pod's PodScheduled condition")
    assert current.status.phase == "Pending" and not current.spec.node_name
    assert (condition.status, condition.reason) == ("False", "Unschedulable")


def test_kubelet_restart_is_repaired_and_gpus_readvertised(cluster, api):
    from local_cluster.components import daemon

    old_pid = daemon(cluster.settings, "kubelet").pid()
    daemon(cluster.settings, "kubelet").stop()
    cluster.up()
    assert daemon(cluster.settings, "kubelet").pid() not in (None, old_pid)
    node = client.CoreV1Api(api).read_node(cluster.settings.node_name)
    assert node.status.allocatable["nvidia.com/gpu"] == str(cluster.settings.gpus)
    assert node.metadata.labels["nvidia.com/gpu.count"] == str(cluster.settings.gpus)
    assert cluster.healthy()


def capability_sets(status: str) -> dict[str, int]:
    return {key: int(value, 16) for key, value in re.findall(r"^(Cap\w+):\s+([0-9a-f]+)$", status, re.M)}


def test_a_privileged_container_starts_with_the_capabilities_root_has(cluster):
    """kind runs each node as a privileged container. Where root lacks a capability (this machine withholds
    CAP_SYS_RESOURCE), runc refused every one ("unable to apply caps"): the project's Docker runs runc through
    runc_clamp, which leaves out what root cannot have and keeps the rest."""
    result = subprocess.run(["docker", "run", "--rm", "--privileged", "--pull", "never", PYTHON_BASE_IMAGE,
                             "cat", "/proc/self/status"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    inside = capability_sets(result.stdout)
    host = capability_sets(Path("/proc/self/status").read_text())
    sys_admin = 1 << 21  # what makes a container privileged enough to run systemd and containerd
    assert inside["CapBnd"] & sys_admin and inside["CapEff"] & sys_admin, inside
    assert inside["CapBnd"] & ~host["CapBnd"] == 0, "no capability beyond what root has here"
