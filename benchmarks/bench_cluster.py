"""Print the local cluster's figures (not a test): cold build time, warm cluster-up, pod start latency.

Run with root on a machine where `make cluster-up` has run once:
    make bench-cluster   (PYTHONPATH=e2e python benchmarks/bench_cluster.py)
It takes the cluster down and up again to time a warm start, and leaves it up.
"""

from __future__ import annotations

import json
import statistics
import time
import uuid

from kube import KubeApi, wait_for_default_service_account, wait_until
from local_cluster import LocalCluster

PODS = 5


def pod_start_seconds(api: KubeApi, namespace: str, image: str) -> float:
    name = f"start-{uuid.uuid4().hex[:6]}"
    created = time.monotonic()
    api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body={
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": 0, "containers": [
            {"name": "main", "image": image, "imagePullPolicy": "IfNotPresent"}]}})
    wait_until(lambda: api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")["status"].get("phase") == "Running",
               120, what=f"pod {name} Running", interval=0.05)
    return time.monotonic() - created


def main() -> None:
    cluster = LocalCluster()
    record = cluster.settings.bin_dir / "build-times.json"
    builds = json.loads(record.read_text()) if record.exists() else {}
    cluster.up()
    cluster.down()
    started = time.monotonic()
    cluster.up()
    warm_up = time.monotonic() - started

    api = KubeApi.from_kubeconfig(str(cluster.kubeconfig))
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    wait_for_default_service_account(api, namespace)
    image = cluster.settings.pause_image
    pod_start_seconds(api, namespace, image)  # the node's store may not hold it yet: not "cached"
    starts = [pod_start_seconds(api, namespace, image) for _ in range(PODS)]
    api.request("DELETE", f"/api/v1/namespaces/{namespace}", body={"gracePeriodSeconds": 0})

    print("local cluster benchmark")
    for name, figure in builds.items():
        cache = figure.get("go_cache", "cold")
        print(f"  build {name}: {figure['seconds']:.0f} s on {figure['cpus']} cores with a {cache} Go build cache "
              f"(measured when built, {figure['date']})")
    print(f"  warm cluster-up (binaries and images cached, fresh state): {warm_up:.1f} s "
          f"(target <= 30 s; kind takes about 40-60 s)")
    print(f"  pod start, cached image, created -> Running: median {statistics.median(starts) * 1000:.0f} ms, "
          f"max {max(starts) * 1000:.0f} ms over {PODS} pods")


if __name__ == "__main__":
    main()
