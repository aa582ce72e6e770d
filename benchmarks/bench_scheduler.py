"""Print the fake Run:ai scheduler's throughput and latency beside kube-scheduler's (figures, not a test).

Both schedule identical pods onto the same fake nodes on the local cluster's API server:
- throughput: 300 pods created at once, pods/s from the first create to the last binding;
- latency: 300 pods at a steady 10 pods/s, create -> bound as seen by a watch, p50 and p99.
Run with the local cluster up: make bench-scheduler (PYTHONPATH=e2e python benchmarks/bench_scheduler.py)
"""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from fake_runai_scheduler import FakeRunaiScheduler, parse_config
from kube import KubeApi, wait_for_default_service_account
from kube.nodes import FakeNodes, pod_body
from local_cluster import LocalCluster
from runai.names import NODE_POOL_LABEL

PODS = 300
RATE = 10.0


class BindWatch:
    """Records when each pod of a namespace is first seen bound."""

    def __init__(self, api: KubeApi, namespace: str):
        self.api, self.namespace, self.bound_at = api, namespace, {}
        self._stop = False
        version = api.get(f"/api/v1/namespaces/{namespace}/pods")["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, args=(version,), daemon=True)
        self._thread.start()

    def _run(self, version: str) -> None:
        while not self._stop:
            try:
                for _, pod in self.api.watch(f"/api/v1/namespaces/{self.namespace}/pods", version, 60):
                    version = pod["metadata"]["resourceVersion"]
                    if pod["spec"].get("nodeName"):
                        self.bound_at.setdefault(pod["metadata"]["name"], time.monotonic())
            except Exception:  # noqa: BLE001 - keep watching
                time.sleep(0.1)

    def wait(self, count: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while len(self.bound_at) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        self._stop = True


def run(api: KubeApi, scheduler_name: str, pool: str, steady: bool) -> dict:
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": namespace}})
    wait_for_default_service_account(api, namespace)
    watch = BindWatch(api, namespace)
    bodies = [pod_body(f"p{i:03d}", scheduler_name, pool, queue="bench", cpu="10m", memory="1Mi") for i in range(PODS)]
    for body in bodies:
        body["spec"]["nodeSelector"] = {NODE_POOL_LABEL: pool}
    created_at = {}

    def create(body):
        api.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=body)
        created_at[body["metadata"]["name"]] = time.monotonic()

    started = time.monotonic()
    if steady:
        for i, body in enumerate(bodies):
            time.sleep(max(0.0, started + i / RATE - time.monotonic()))
            create(body)
    else:
        with ThreadPoolExecutor(8) as pool_:
            list(pool_.map(create, bodies))
    watch.wait(PODS)
    latencies = sorted(watch.bound_at[n] - created_at[n] for n in created_at if n in watch.bound_at)
    result = {"bound": len(watch.bound_at), "seconds": max(watch.bound_at.values(), default=started) - started,
              "p50": statistics.median(latencies) * 1000 if latencies else float("nan"),
              "p99": latencies[int(len(latencies) * 0.99) - 1] * 1000 if latencies else float("nan")}
    api.request("DELETE", f"/api/v1/namespaces/{namespace}", body={"gracePeriodSeconds": 0})
    return result


def main() -> None:
    cluster = LocalCluster().up()
    api = KubeApi.from_kubeconfig(str(cluster.kubeconfig))
    pool = f"bench{uuid.uuid4().hex[:6]}"
    nodes = FakeNodes(api)
    for _ in range(5):
        nodes.create(pool, gpus=8, cpu="64", memory="512Gi")
    config = parse_config({"schedulerName": f"runai-bench-{pool}",
                           "queues": [{"name": "bench", "gpu": {"quota": -1, "limit": -1}}]})
    fake = FakeRunaiScheduler(api, config).start()
    try:
        rows = {}
        for label, scheduler_name in (("kube-scheduler", "default-scheduler"), ("fake Run:ai", config.scheduler_name)):
            burst = run(api, scheduler_name, pool, steady=False)
            steady = run(api, scheduler_name, pool, steady=True)
            rows[label] = (burst["bound"] / burst["seconds"], steady["p50"], steady["p99"], burst["bound"])
    finally:
        fake.stop()
        nodes.delete_all()
    print(f"scheduler benchmark: {PODS} pods, burst throughput and create->bound latency at {RATE:g} pods/s")
    print(f"  {'scheduler':16s} {'pods/s':>8s} {'p50 ms':>8s} {'p99 ms':>8s} {'bound':>6s}")
    for label, (throughput, p50, p99, bound) in rows.items():
        print(f"  {label:16s} {throughput:8.1f} {p50:8.1f} {p99:8.1f} {bound:6d}")
    ratio = rows["fake Run:ai"][0] / rows["kube-scheduler"][0]
    print(f"  throughput ratio fake/kube-scheduler: {ratio:.2f}x (target >= 1.0); "
          f"fake p99 at {RATE:g} pods/s: {rows['fake Run:ai'][2]:.0f} ms (target <= 250)")


if __name__ == "__main__":
    main()
