"""Session fixtures for the e2e suite: cluster (CLUSTER=kind|local|existing), tracking server, fake scheduler.

Everything the suite creates is removed at the end, also on failure or Ctrl-C, and the suite then
asserts that nothing is left.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fake_runai_scheduler import FakeRunaiScheduler, KubeApi, SchedulerConfig
from fake_runai_scheduler.config import Queue, Quota

from .runner import Outcome, ProjectRun, images_of, progress, registry_tags
from .targets import select_target
from .tracking import TrackingServer
from .variants import MATRIX, NODE_TYPE, Variant

ROOT = Path(__file__).resolve().parents[2]
SCHEDULER_NAME = "runai-scheduler"
OUTCOMES: list[Outcome] = []
PHASES = ["bake", "env image", "mlflow build+push", "schedule", "pod run", "mlflow run", "assert"]


class E2ESession:
    def __init__(self, report_dir: Path, work_dir: Path):
        self.id = uuid.uuid4().hex[:4]
        self.report_dir, self.work_dir = report_dir, work_dir
        self.target = select_target(os.environ.get("CLUSTER", "kind"), work_dir)
        self.api = KubeApi.from_kubeconfig(str(self.target.kubeconfig))
        self.tracking = TrackingServer(self.target.host_address, work_dir / "mlflow",
                                       report_dir / "tracking-server.log")
        self.scheduler: FakeRunaiScheduler | None = None
        self.runs: list[ProjectRun] = []
        self.labelled_nodes: list[str] = []

    def start(self) -> E2ESession:
        progress(f"session {self.id} on {self.target.name} cluster; report in {self.report_dir}")
        self.tracking.start()
        progress(f"tracking server {self.tracking.uri} ready")
        if self.target.fake_scheduler:
            handler = logging.FileHandler(self.report_dir / "scheduler.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger = logging.getLogger("fake_runai_scheduler")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            self.scheduler = FakeRunaiScheduler(self.api, SchedulerConfig({}, SCHEDULER_NAME)).start()
        for node in self.target.gpu_nodes:
            self.api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                             body={"metadata": {"labels": {"run.ai/type": NODE_TYPE}}})
            self.labelled_nodes.append(node)
        return self

    def project_run(self, variant: Variant, deadline: int = 600) -> ProjectRun:
        run = ProjectRun(variant, self.target, self.api, self.tracking.uri, self.id, self.work_dir / variant.id,
                         self.report_dir, SCHEDULER_NAME, deadline)
        if self.scheduler:
            self.scheduler.add_queue(Queue(run.outcome.project, Quota(variant.gpu_quota, variant.gpu_limit)))
        self.runs.append(run)
        return run

    def run_all(self, variants: list[Variant], jobs: int) -> dict[str, Outcome]:
        runs = [self.project_run(v) for v in variants]
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            outcomes = list(pool.map(lambda r: r.execute(), runs))
        return {o.variant.id: o for o in outcomes}

    def close(self) -> list[str]:
        """Remove everything; return what could not be removed."""
        for run in self.runs:
            try:
                run.cleanup()
            except Exception as err:  # noqa: BLE001 - clean up the rest, report below
                progress(f"cleanup of {run.outcome.namespace} failed: {err}")
        for node in self.labelled_nodes:
            self.api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                             body={"metadata": {"labels": {"run.ai/type": None}}})
        if self.scheduler:
            self.scheduler.stop()
        self.tracking.stop()
        leftovers = self.leftovers(wait=120)
        if self.target.teardown:
            self.target.teardown()
        return leftovers

    def leftovers(self, wait: float) -> list[str]:
        deadline = time.monotonic() + wait
        while True:
            namespaces = {run.outcome.namespace for run in self.runs}
            live = [n["metadata"]["name"] for n in self.api.get("/api/v1/namespaces")["items"]
                    if n["metadata"]["name"] in namespaces]
            if not live or time.monotonic() > deadline:
                break
            time.sleep(1)
        found = [f"namespace {name}" for name in live]
        found += [f"pod {p['metadata']['namespace']}/{p['metadata']['name']}"
                  for p in self.api.get("/api/v1/pods")["items"] if p["metadata"]["namespace"] in namespaces]
        for run in self.runs:
            for repository in (run.outcome.slug, f"{run.outcome.slug}-env"):
                found += [f"docker image {image}" for image in images_of(f"{self.target.registry}/{repository}")]
                if self.target.name != "existing":
                    found += [f"registry tag {repository}:{t}" for t in registry_tags(self.target.registry, repository)]
        for node in self.labelled_nodes:
            if self.api.get(f"/api/v1/nodes/{node}")["metadata"].get("labels", {}).get("run.ai/type") == NODE_TYPE:
                found.append(f"label run.ai/type on node {node}")
        if self.tracking.process and self.tracking.process.poll() is None:
            found.append("mlflow tracking server process")
        return found


def pytest_configure(config):
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3")


@pytest.fixture(scope="session")
def e2e(tmp_path_factory):
    report_dir = Path(os.environ.get("E2E_REPORT_DIR", ROOT / "e2e-report")).resolve()
    shutil.rmtree(report_dir, ignore_errors=True)
    report_dir.mkdir(parents=True)
    session = E2ESession(report_dir, tmp_path_factory.mktemp("e2e"))
    try:
        yield session.start()
    finally:
        leftovers = session.close()
        if leftovers:
            pytest.fail("the e2e suite left things behind: " + "; ".join(leftovers), pytrace=False)
        progress("cleanup verified: no namespaces, pods, images, registry tags, labels or servers left")


@pytest.fixture(scope="session")
def matrix(e2e) -> dict[str, Outcome]:
    """The whole option matrix, run concurrently (E2E_JOBS at a time) on one cluster."""
    started = time.monotonic()
    outcomes = e2e.run_all(MATRIX, int(os.environ.get("E2E_JOBS", "3")))
    OUTCOMES.extend(outcomes.values())
    progress(f"matrix of {len(MATRIX)} variants ran in {time.monotonic() - started:.0f}s")
    (e2e.report_dir / "matrix-seconds.txt").write_text(f"{time.monotonic() - started:.1f}\n")
    return outcomes


@pytest.fixture
def timed_assertions(request):
    """Adds the assertion phase to an outcome's timings."""
    started = time.monotonic()
    holder: dict = {}
    yield holder
    if "outcome" in holder:
        holder["outcome"].phases["assert"] = time.monotonic() - started


def pytest_terminal_summary(terminalreporter):
    if not OUTCOMES:
        return
    header = f"{'variant':22s}" + "".join(f"{p:>18s}" for p in PHASES) + f"{'outcome':>12s}"
    lines = [header]
    for o in OUTCOMES:
        cells = "".join(f"{o.phases[p]:17.1f}s" if p in o.phases else f"{'-':>18s}" for p in PHASES)
        status = o.run.info.status if o.run else ("ERROR" if o.error else "no run")
        lines.append(f"{o.variant.id:22s}{cells}{status:>12s}")
    terminalreporter.write_sep("=", "e2e summary (seconds per phase)")
    for line in lines:
        terminalreporter.write_line(line)
    report = Path(os.environ.get("E2E_REPORT_DIR", ROOT / "e2e-report"))
    if report.exists():
        (report / "summary.txt").write_text("\n".join(lines) + "\n")


@pytest.fixture
def one_gpu_node(e2e):
    """Shrink the GPU node to one GPU for this test, then restore it."""
    if e2e.target.name == "existing" or not e2e.target.gpu_nodes:
        pytest.skip("changes node capacity; runs on kind and local clusters only")
    node = e2e.target.gpu_nodes[0]
    before = e2e.api.get(f"/api/v1/nodes/{node}")

    def set_gpus(count: str) -> None:
        e2e.api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                        body={"metadata": {"labels": {"nvidia.com/gpu.count": count}}})
        e2e.api.request("PATCH", f"/api/v1/nodes/{node}/status", content_type="application/merge-patch+json",
                        body={"status": {"capacity": {"nvidia.com/gpu": count},
                                         "allocatable": {"nvidia.com/gpu": count}}})

    set_gpus("1")
    yield node
    set_gpus(before["status"]["capacity"]["nvidia.com/gpu"])
