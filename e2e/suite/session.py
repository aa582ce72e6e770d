"""One e2e session: the cluster target, the tracking server, the fake scheduler, and every run made on them.

Everything the session creates is removed by close(), also on failure or Ctrl-C, and close()
reports anything that is left.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fake_runai_scheduler import FakeRunaiScheduler, SchedulerConfig
from fake_runai_scheduler.config import Queue, Quota
from kube import KubeApi
from runai.names import NODE_TYPE_LABEL, SCHEDULER_NAME

from .data_claim import leftover_volumes
from .images import images_of, registry_tags
from .progress import progress
from .runner import Outcome, ProjectRun
from .targets import select_target
from .tracking import TrackingServer
from .variants import NODE_TYPE, Variant


class E2ESession:
    def __init__(self, report_dir: Path, work_dir: Path):
        self.id = uuid.uuid4().hex[:4]
        self.report_dir, self.work_dir = report_dir, work_dir
        self.target = select_target(os.environ.get("CLUSTER", "kind"), work_dir)
        self.api = KubeApi.from_kubeconfig(str(self.target.kubeconfig))
        self.tracking = TrackingServer(self.target.host_address, work_dir / "mlflow",
                                       report_dir / "tracking-server.log")
        self.own_servers: list[TrackingServer] = []  # a scenario's own, which it may stop without harm to others
        self.scheduler: FakeRunaiScheduler | None = None
        self.runs: list[ProjectRun] = []
        self.labelled_nodes: list[str] = []

    @property
    def outcomes(self) -> list[Outcome]:
        """What each run of the session did, for the summary table (runs that never started have no phases)."""
        return [run.outcome for run in self.runs if run.outcome.phases or run.outcome.error]

    def start(self) -> E2ESession:
        progress(f"session {self.id} on {self.target.name} cluster; report in {self.report_dir}")
        self.tracking.start()
        progress(f"tracking server {self.tracking.uri} ready")
        if self.target.runs_fake_scheduler:
            handler = logging.FileHandler(self.report_dir / "scheduler.log")
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
            logger = logging.getLogger("fake_runai_scheduler")
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            self.scheduler = FakeRunaiScheduler(self.api, SchedulerConfig({}, SCHEDULER_NAME)).start()
        for node in self.target.gpu_nodes if self.target.may_label_nodes else []:
            self.api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                             body={"metadata": {"labels": {NODE_TYPE_LABEL: NODE_TYPE}}})
            self.labelled_nodes.append(node)
        return self

    @property
    def tracking_servers(self) -> list[TrackingServer]:
        return [self.tracking, *self.own_servers]

    def own_tracking_server(self, name: str) -> TrackingServer:
        """A tracking server of its own, on the address pods reach (stopped by close()): for a scenario that stops
        its server while other runs go on with the session's."""
        server = TrackingServer(self.target.host_address, self.work_dir / f"mlflow-{name}",
                                self.report_dir / f"tracking-server-{name}.log")
        self.own_servers.append(server)
        return server.start()

    def project_run(self, variant: Variant, tracking: TrackingServer | None = None) -> ProjectRun:
        run = ProjectRun(variant, self.target, self.api, (tracking or self.tracking).uri, self.id,
                         self.work_dir / variant.id, self.report_dir, SCHEDULER_NAME, variant.deadline)
        if self.scheduler:
            self.scheduler.add_queue(Queue(run.outcome.project, Quota(variant.gpu_quota, variant.gpu_limit)))
        self.runs.append(run)
        return run

    def cannot_run(self, variant: Variant) -> str | None:
        """Why this target cannot run the variant, or None."""
        if variant.needs_fake_scheduler and not self.scheduler:
            return "needs the fake scheduler's queues (SCHEDULER=runai uses the cluster's own)"
        if variant.answers.get("data_pvc") and self.target.node_files is None:
            return (f"makes a local PersistentVolume with files on a node, which the {self.target.name} target "
                    "does not allow")
        if variant.answers.get("node_type") and not (self.target.may_label_nodes or self.target.node_type):
            return (f"the {self.target.name} target may not label nodes; give a node type its GPU nodes have with "
                    "E2E_NODE_TYPE to run this variant")
        return None

    def run_all(self, variants: list[Variant], jobs: int, busy: Callable[[], object] | None = None,
                follow_ups: Mapping[str, Callable[[ProjectRun], object]] | None = None) -> dict[str, Outcome]:
        """Run the variants, `jobs` at a time.

        busy: what holds one of the pool's slots from the start (a scenario already under way in the
        background); once it returns, that slot takes runs too.
        follow_ups: by variant id, what the run's slot does next with it (`make resume` of a failed run), so
        that it overlaps the rest of the matrix instead of following it; its result, or what it raised, is
        the outcome's `follow_up`.
        """
        # Longest first: a pytorch environment (several GB to build, push and pull on a cold machine) then
        # overlaps the short runs instead of starting last; then the failing runs, one of which trains until
        # its 45 s deadline.
        ordered = sorted(variants, key=lambda v: (v.answers.get("framework") != "pytorch", v.expect_success))
        runs = [self.project_run(v) for v in ordered if not self.cannot_run(v)]
        # A run that only waits out its deadline starts at once, beside the pool: last in the pool, it left the
        # cluster idle for most of its 45 s at the end of the matrix.
        waiting = [r for r in runs if r.variant.never_scheduled]
        working = [r for r in runs if not r.variant.never_scheduled]

        def run_and_follow_up(run: ProjectRun) -> Outcome:
            outcome = run.execute()
            follow_up = (follow_ups or {}).get(run.variant.id)
            if follow_up:
                try:
                    outcome.follow_up = follow_up(run)
                except Exception as err:  # noqa: BLE001 - raised again by the test that reads it
                    outcome.follow_up = err
            return outcome

        with ThreadPoolExecutor(max(1, len(waiting))) as beside, ThreadPoolExecutor(max(1, jobs)) as pool:
            waited = [beside.submit(r.execute) for r in waiting]
            if busy:
                pool.submit(busy)  # first in the queue: the first slot is its until it returns
            outcomes = list(pool.map(run_and_follow_up, working))
        return {o.variant.id: o for o in [*outcomes, *(w.result() for w in waited)]}

    def close(self) -> list[str]:
        """Remove everything; return what could not be removed."""
        for run in self.runs:
            try:
                run.cleanup()
            except Exception as err:  # noqa: BLE001 - clean up the rest, report below
                progress(f"cleanup of {run.outcome.namespace} failed: {err}")
        for node in self.labelled_nodes:
            self.api.request("PATCH", f"/api/v1/nodes/{node}", content_type="application/merge-patch+json",
                             body={"metadata": {"labels": {NODE_TYPE_LABEL: None}}})
        if self.scheduler:
            self.scheduler.stop()
        for server in self.tracking_servers:
            server.stop()
        leftovers = self.leftovers(wait=120)
        if self.target.teardown:
            self.target.teardown()
        return leftovers

    def _left_in_namespaces(self, namespaces: set[str]) -> list[str]:
        """Namespaces the suite made and still exist, with their pods; in a project's namespace, what the runs made.

        Reads namespace by namespace: a researcher may not list namespaces or pods cluster-wide.
        """
        if self.target.may_create_namespaces:
            live = [n["metadata"]["name"] for n in self.api.get("/api/v1/namespaces")["items"]
                    if n["metadata"]["name"] in namespaces]
            return [f"namespace {name}" for name in live] + [
                f"pod {name}/{p['metadata']['name']}" for name in live
                for p in self.api.get(f"/api/v1/namespaces/{name}/pods")["items"]]
        found = []
        for run in self.runs:
            o, mine = run.outcome, f"app.kubernetes.io/name={run.outcome.slug}"
            for kind, path in (("job", f"/apis/batch/v1/namespaces/{o.namespace}/jobs"),
                               ("pod", f"/api/v1/namespaces/{o.namespace}/pods"),
                               ("secret", f"/api/v1/namespaces/{o.namespace}/secrets")):
                found += [f"{kind} {o.namespace}/{item['metadata']['name']}"
                          for item in self.api.get(path, labelSelector=mine)["items"]]
        return found

    def leftovers(self, wait: float) -> list[str]:
        deadline = time.monotonic() + wait
        namespaces = {run.outcome.namespace for run in self.runs}
        while True:
            found = self._left_in_namespaces(namespaces)
            if not found or time.monotonic() > deadline:
                break
            time.sleep(1)
        for run in self.runs:
            for repository in (run.outcome.slug, f"{run.outcome.slug}-env"):
                found += [f"docker image {image}" for image in images_of(f"{self.target.registry}/{repository}")]
                if self.target.owns_registry:
                    found += [f"registry tag {repository}:{t}" for t in registry_tags(self.target.registry, repository)]
        if any(run.variant.answers.get("data_pvc") for run in self.runs):
            found += leftover_volumes(self.api, namespaces)
        for node in self.labelled_nodes:
            if self.api.get(f"/api/v1/nodes/{node}")["metadata"].get("labels", {}).get(NODE_TYPE_LABEL) == NODE_TYPE:
                found.append(f"label {NODE_TYPE_LABEL} on node {node}")
        found += [f"mlflow tracking server process ({server.log_file.name})" for server in self.tracking_servers
                  if server.process and server.process.poll() is None]
        return found
