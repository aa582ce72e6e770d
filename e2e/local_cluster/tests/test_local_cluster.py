"""The local cluster runs real containers: images from the loopback registry, fake GPUs, host reachability."""

import http.server
import threading
import uuid

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
    current = client.CoreV1Api(api).read_namespaced_pod(pod.metadata.name, namespace)
    assert current.status.phase == "Pending" and not current.spec.node_name
    [condition] = [c for c in current.status.conditions if c.type == "PodScheduled"]
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
