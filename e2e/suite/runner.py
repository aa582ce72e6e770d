"""Drive one generated project through the user's path: bake, `make image`, `make run`, then gather facts.

Nothing in the generated project is edited: answers go in through cookiecutter, settings through
the environment and make variables, exactly as a user would pass them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cookiecutter.main import cookiecutter
from kube import KubeApi, wait_for_default_service_account
from kube.paths import REPO_ROOT
from kube.venvs import project_venv
from runai.names import NAMESPACE_VERSION_LABEL, QUEUE_LABEL

from . import images
from .data_claim import create_data_claim, delete_data_volume
from .progress import progress
from .targets import ClusterTarget
from .variants import NODE_TYPE, Variant

_image_locks: dict[str, threading.Lock] = {}  # per environment: one builds it, then its layer cache serves the rest
_image_locks_guard = threading.Lock()
_pushed_environments: set[str] = set()  # environments (by cache tag) whose layers this session pushed already
_bake_lock = threading.Lock()  # cookiecutter changes the process's working directory while it generates


def k8s_time(stamp: str | None) -> float | None:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timestamp() if stamp else None


# A line of a Python traceback, after follow.py's [pod] prefix: 'File ...', code, or its ^^^^ marks.
TRACEBACK_FRAME = re.compile(r"^\[[^\]]*\] (  |Traceback)")


@dataclass
class Outcome:
    variant: Variant
    project: str
    slug: str
    namespace: str
    experiment: str
    exit_code: int | None = None
    output: str = ""
    run: object = None
    models: list = field(default_factory=list)
    jobs: list = field(default_factory=list)
    pods: list = field(default_factory=list)
    events: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    pod_logs: dict = field(default_factory=dict)
    error: str = ""
    follow_up: object = None  # what the pool did next with the run, see E2ESession.run_all

    @property
    def credentials_secret(self) -> str:
        """Named after the run: in a shared project namespace, never a name someone else uses."""
        return f"{self.slug}-credentials"

    def pod_events(self, reason: str) -> list[dict]:
        return [e for events in self.events.values() for e in events if e["reason"] == reason]

    def describe(self, tail: int = 2500) -> str:
        """What a failed assertion prints: on CI the report directory is gone, so the pods' own words go here.

        A traceback at the end (torchrun's after a SIGTERM is 40 lines) would hide how the run went: its
        story comes first, `make run`'s own lines and the pods' last lines that are not traceback frames."""
        lines = self.output.splitlines()
        own = [line for line in lines if not line.startswith("[")]
        story = [line for line in lines if line.startswith("[") and not TRACEBACK_FRAME.search(line)]
        pods = "".join(f"\n--- pod {name} (log tail) ---\n{log[-1500:]}" for name, log in self.pod_logs.items())
        return (f"{self.error}\n--- make run (its own lines) ---\n" + "\n".join(own[-30:])
                + "\n--- make run (the pods' last lines, no traceback frames) ---\n" + "\n".join(story[-25:])
                + f"\n--- make run (tail) ---\n{self.output[-tail:]}{pods}\n(report: e2e-report/{self.variant.id})")


class ProjectRun:
    def __init__(self, variant: Variant, target: ClusterTarget, api: KubeApi, tracking_uri: str, session: str,
                 work_dir: Path, report_dir: Path, scheduler_name: str, deadline: int = 600):
        self.variant, self.target, self.api, self.tracking_uri = variant, target, api, tracking_uri
        self.work_dir, self.report_dir = work_dir, report_dir / variant.id
        self.scheduler_name, self.deadline = scheduler_name, deadline
        slug = f"{variant.id}-{session}"[:30].rstrip("-")
        project = target.runai_project or slug  # a project (namespace and queue) per run, where the suite may
        self.outcome = Outcome(variant, project=project, slug=slug, namespace=f"runai-{project}",
                               experiment=f"e2e-{session}-{variant.id}")

    # Phases ------------------------------------------------------------------------------------
    def bake(self) -> Path:
        started = time.monotonic()
        answers = {"project_slug": self.outcome.slug, "runai_project": self.outcome.project,
                   "base_image": self.target.base_image,
                   "image_repository": f"{self.target.registry}/{self.outcome.slug}",
                   "scheduler_name": self.scheduler_name, "active_deadline_seconds": str(self.deadline),
                   "ttl_seconds_after_finished": "600", **self.variant.answers}
        if answers.get("credentials_secret"):
            answers["credentials_secret"] = self.outcome.credentials_secret
        if answers.get("node_type") == NODE_TYPE and self.target.node_type:
            answers["node_type"] = self.target.node_type
        with _bake_lock:
            project = Path(cookiecutter(str(REPO_ROOT), no_input=True, extra_context=answers,
                                        output_dir=str(self.work_dir), default_config=True))
        self.outcome.phases["bake"] = time.monotonic() - started
        return project

    def prepare_namespace(self) -> None:
        o = self.outcome
        if self.target.may_create_namespaces:
            self.api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": o.namespace, "labels": {
                QUEUE_LABEL: o.project, NAMESPACE_VERSION_LABEL: "v2",
                "app.kubernetes.io/part-of": "runai-mlflow-e2e", "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest"}}})
        if self.variant.answers.get("credentials_secret"):
            self.api.request("POST", f"/api/v1/namespaces/{o.namespace}/secrets", body={
                "metadata": {"name": o.credentials_secret, "labels": {"app.kubernetes.io/name": o.slug}},
                "type": "Opaque",
                "stringData": {"MLFLOW_TRACKING_TOKEN": "e2e-unused-token", "E2E_SECRET_MARKER": "from-secret"}})
        if not self.target.may_create_namespaces:
            return  # the project's namespace exists, with its ServiceAccounts
        if self.variant.answers.get("data_pvc"):
            create_data_claim(self.api, self.target, o.namespace, self.variant.answers["data_pvc"],
                              str(self.work_dir / "claim"))
        wait_for_default_service_account(self.api, o.namespace)

    def _make(self, project: Path, target: str, log_name: str, env: dict, timeout: float, *variables: str):
        log = self.report_dir / log_name
        log.parent.mkdir(parents=True, exist_ok=True)
        python = f"{env['VIRTUAL_ENV']}/bin/python" if "VIRTUAL_ENV" in env else sys.executable
        command = ["make", "--no-print-directory", target, f"PYTHON={python}", *variables]
        with open(log, "w") as out:
            try:
                result = subprocess.run(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        timeout=timeout)
                code = result.returncode
            except subprocess.TimeoutExpired:
                out.write(f"\n[e2e] {target} timed out after {timeout}s\n")
                code = None
        return code, log.read_text()

    def build_env_image(self, project: Path) -> None:
        started = time.monotonic()
        with _image_locks_guard:
            lock = _image_locks.setdefault(images.cache_tag(project), threading.Lock())
        with lock:  # different environments (sklearn, pytorch) build side by side
            code, output = self._make(project, "image", "make-image.log", self.target.env(), 1200,
                                      f"DOCKER_BUILD_ARGS={self.target.docker_build_args}")
            seconds = time.monotonic() - started
            if code == 0:
                self._push_environment_once(project)
        self.outcome.phases["env image"] = seconds
        if code != 0:
            raise RuntimeError(f"make image failed:\n{output[-3000:]}")
        if images.installed_requirements(output):  # no layer cache: what a user's first `make image` costs
            images.record_first_build(self.variant.answers.get("framework", "sklearn"), seconds,
                                      images.environment_image(project))
        images.keep_build_cache(project)

    def _push_environment_once(self, project: Path) -> None:
        """`make push` for the first project of each environment, under that environment's lock.

        Docker compresses a layer once per repository it pushes to, in one stream: the pytorch variants'
        `mlflow run`s, started together, each compressed the same 6 GB (three streams on two cores). Once one
        repository of the registry holds the layers, Docker mounts them into the next ones instead, as it does
        for a team that shares its environment image with `make push`.
        """
        tag = images.cache_tag(project)
        if tag in _pushed_environments or not self.target.owns_registry:
            return
        started = time.monotonic()
        code, output = self._make(project, "push", "make-push.log", self.target.env(), 1200,
                                  f"DOCKER_BUILD_ARGS={self.target.docker_build_args}")
        if code != 0:
            raise RuntimeError(f"make push failed:\n{output[-3000:]}")
        self.outcome.phases["env push"] = time.monotonic() - started
        _pushed_environments.add(tag)

    def submit_env(self, project: Path) -> dict:
        """What a user's shell has for `make run`: the project's venv first, both tracking URIs."""
        venv = project_venv(project, progress)
        return {**self.target.env(), "MLFLOW_TRACKING_URI": self.tracking_uri,
                "KUBE_MLFLOW_TRACKING_URI": self.tracking_uri, "VIRTUAL_ENV": str(venv),
                "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def make_resume(self, project: Path, run_id: str, params: str = "") -> tuple[int | None, str]:
        """`make resume RUN_ID=... PARAMS=...`, as a user continues a stopped run."""
        return self._make(project, "resume", "make-resume.log", self.submit_env(project), self.deadline + 180,
                          f"RUN_ID={run_id}", f"PARAMS={params}")

    def _run_variables(self) -> tuple[str, str]:
        """`make run`'s variables for this variant: its experiment and its -P parameters."""
        params = " ".join(f"-P {k}={v}" for k, v in self.variant.params.items())
        return f"EXPERIMENT={self.outcome.experiment}", f"PARAMS={params}"

    def start_make_run(self, project: Path) -> tuple[subprocess.Popen, Path]:
        """`make run` as a terminal starts it: a process group of its own (a test sends it a Ctrl-C), its output
        written to the report as it comes (a test reads it while the run goes on)."""
        log = self.report_dir / "make-run.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        env = self.submit_env(project)
        with open(log, "w") as out:
            make = subprocess.Popen(["make", "--no-print-directory", "run", f"PYTHON={env['VIRTUAL_ENV']}/bin/python",
                                     *self._run_variables()], cwd=project, env=env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        return make, log

    def mlflow_run(self, project: Path) -> None:
        o = self.outcome
        env = self.submit_env(project)
        started = time.time()
        o.exit_code, o.output = self._make(project, "run", "make-run.log", env, self.deadline + 180,
                                           *self._run_variables())
        o.phases["mlflow run"] = time.time() - started
        o.phases["_run_started"] = started

    # Facts -------------------------------------------------------------------------------------
    def gather(self) -> None:
        import mlflow

        o = self.outcome
        started = time.monotonic()
        client = mlflow.MlflowClient(self.tracking_uri)
        experiment = client.get_experiment_by_name(o.experiment)
        if experiment:
            runs = client.search_runs([experiment.experiment_id])
            o.run = runs[0] if runs else None
            o.models = list(client.search_logged_models(experiment_ids=[experiment.experiment_id]))
        # This run's objects only: a Run:ai project namespace may hold other runs, and other people's work.
        mine = f"app.kubernetes.io/name={o.slug}"
        o.jobs = self.api.get(f"/apis/batch/v1/namespaces/{o.namespace}/jobs", labelSelector=mine)["items"]
        o.pods = self.api.get(f"/api/v1/namespaces/{o.namespace}/pods", labelSelector=mine)["items"]
        o.pod_logs = {pod["metadata"]["name"]: self._pod_log(pod["metadata"]["name"]) for pod in o.pods}
        events = [e for e in self.api.get(f"/api/v1/namespaces/{o.namespace}/events")["items"]
                  if e["involvedObject"]["name"].startswith(o.slug)]
        o.events = {}  # gather may run twice (again for diagnostics): never count an event twice
        for event in sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or ""):
            o.events.setdefault(event["involvedObject"]["name"], []).append(event)
        self._kubernetes_phases()
        o.phases["gather"] = time.monotonic() - started

    def _kubernetes_phases(self) -> None:
        """Split `mlflow run` using the cluster's own timestamps (one-second resolution)."""
        o = self.outcome
        if not o.jobs or not o.pods:
            return
        job_created = k8s_time(o.jobs[0]["metadata"]["creationTimestamp"])
        o.phases["mlflow build+push"] = max(0.0, job_created - o.phases["_run_started"])
        pod = o.pods[0]
        scheduled = [e for e in o.events.get(pod["metadata"]["name"], []) if e["reason"] == "Scheduled"]
        if scheduled:
            o.phases["schedule"] = k8s_time(scheduled[-1]["lastTimestamp"]) - k8s_time(
                pod["metadata"]["creationTimestamp"])
        state = (pod.get("status", {}).get("containerStatuses") or [{}])[0].get("state", {})
        terminated = state.get("terminated")
        if terminated:
            o.phases["pod run"] = k8s_time(terminated["finishedAt"]) - k8s_time(terminated["startedAt"])

    def save_diagnostics(self) -> None:
        """Events, pod descriptions and logs of this variant, for the report."""
        o = self.outcome
        self.report_dir.mkdir(parents=True, exist_ok=True)
        (self.report_dir / "pods.json").write_text(json.dumps(o.pods, indent=2))
        (self.report_dir / "jobs.json").write_text(json.dumps(o.jobs, indent=2))
        lines = [f"{e.get('lastTimestamp')} {e['type']} {e['reason']} {name}: {e['message']}"
                 for name, events in o.events.items() for e in events]
        (self.report_dir / "events.txt").write_text("\n".join(lines) + "\n")
        for pod in o.pods:
            name = pod["metadata"]["name"]
            if name not in o.pod_logs:  # gather() read it already, unless it failed before that
                o.pod_logs[name] = self._pod_log(name)
            (self.report_dir / f"{name}.log").write_text(o.pod_logs[name])

    def _pod_log(self, name: str) -> str:
        try:
            return self.api.raw(f"/api/v1/namespaces/{self.outcome.namespace}/pods/{name}/log").decode(
                errors="replace")
        except Exception as err:  # noqa: BLE001 - a pod that never started has no log
            return f"(no log: {err})\n"

    # Cleanup -----------------------------------------------------------------------------------
    def cleanup(self) -> None:
        o = self.outcome
        if self.target.may_create_namespaces:
            self._delete(f"/api/v1/namespaces/{o.namespace}")
        else:  # someone else's namespace: only what this run made
            for kind in ("apis/batch/v1/namespaces/{}/jobs", "api/v1/namespaces/{}/pods",
                         "api/v1/namespaces/{}/services"):  # a several-node project's headless Service
                for item in self.api.get("/" + kind.format(o.namespace), labelSelector=f"app.kubernetes.io/name="
                                                                                       f"{o.slug}")["items"]:
                    self._delete(f"/{kind.format(o.namespace)}/{item['metadata']['name']}")
            if self.variant.answers.get("credentials_secret"):
                self._delete(f"/api/v1/namespaces/{o.namespace}/secrets/{o.credentials_secret}")
        if self.variant.answers.get("data_pvc"):
            delete_data_volume(self.api, o.namespace)
        for repository in (o.slug, f"{o.slug}-env"):
            for image in images.images_of(f"{self.target.registry}/{repository}"):
                subprocess.run(["docker", "image", "rm", "-f", image], capture_output=True)
            if self.target.owns_registry:
                images.delete_registry_repository(self.target.registry, repository)

    def _delete(self, path: str) -> None:
        self.api.delete(path, body={"propagationPolicy": "Background"})

    def prepare(self) -> Path:
        """Everything before `make run`: the generated project, its namespace and its environment image."""
        progress(f"{self.variant.id}: bake {self.outcome.slug} (namespace {self.outcome.namespace})")
        project = self.bake()
        self.prepare_namespace()
        progress(f"{self.variant.id}: make image")
        self.build_env_image(project)
        return project

    def execute(self) -> Outcome:
        o = self.outcome
        try:
            project = self.prepare()
            progress(f"{self.variant.id}: make run")
            self.mlflow_run(project)
            self.gather()
            progress(f"{self.variant.id}: mlflow run exited {o.exit_code} after {o.phases['mlflow run']:.0f}s")
        except Exception as err:  # noqa: BLE001 - recorded; the test reports it with the diagnostics
            o.error = f"{type(err).__name__}: {err}"
            progress(f"{self.variant.id}: ERROR {o.error[:300]}")
            self.report_dir.mkdir(parents=True, exist_ok=True)
            (self.report_dir / "error.txt").write_text(o.error + "\n" + traceback.format_exc())
        finally:
            try:
                if o.error or o.exit_code != 0 or not self.variant.expect_success:
                    if not o.pods:
                        self.gather()
                    self.save_diagnostics()
            except Exception as err:  # noqa: BLE001
                progress(f"{self.variant.id}: could not save diagnostics: {err}")
        return o
