"""A preempted `train` project resumes from its checkpoint and finishes: Run:ai's core behaviour, end to end.

Each case runs a generated project with the real `make run`, preempts its training pod midway
(preempt within the project, or reclaim by another project), and asserts `mlflow run`'s exit code,
the run's status and metric history, and the Job's pod history.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
from fake_runai_scheduler.config import Queue, Quota
from kube.venvs import project_venv
from runai.names import QUEUE_LABEL

from .data_claim import DATA_FILES, LONG_EPOCH_FILE
from .preemption import Holder, Preemption, preempt_midway, record_figures
from .variants import DATA_CLAIM, Variant

pytestmark = pytest.mark.e2e
EPOCHS = 1000
# Long enough to be preempted midway (real parameters: more epochs, a checkpoint every 25).
LONG_TRAINING = {"epochs": str(EPOCHS), "checkpoint_every": "25"}
TRAIN_ONE_GPU = {"gpu": "1", "cpu_request": "250m", "cpu_limit": "1"}
PYTORCH_EPOCHS = 60  # of a CNN on the digits: long enough to be preempted after epoch 3
# A real team's shape: an epoch (38,400 steps of one row) longer than the pod's 10 s grace period.
LONG_EPOCH = {"data_file": LONG_EPOCH_FILE, "batch_size": "1", "epochs": "2", "checkpoint_every": "1",
              "log_every": "5000", "seed": "5"}


NEEDS_FAKE_SCHEDULER = "sets queue quotas and the eviction condition of the fake scheduler"


@pytest.fixture(autouse=True)
def fake_scheduler(e2e):
    if not e2e.scheduler:
        pytest.skip(NEEDS_FAKE_SCHEDULER)


@contextlib.contextmanager
def eviction_condition(e2e, enabled: bool):
    before = e2e.scheduler.update_pod_eviction_condition
    e2e.scheduler.update_pod_eviction_condition = enabled
    try:
        yield
    finally:
        e2e.scheduler.update_pod_eviction_condition = before


def preempt(e2e, variant: Variant, holder: Holder, **options) -> Preemption:
    return preempt_midway(e2e.project_run(variant), holder, **options)


@dataclass(frozen=True)
class Case:
    """A preemption within the run's own project (its GPU limit reached), which several runs can undergo at once."""

    variant: Variant
    eviction_condition: bool
    after_epoch: int = 20
    expect_replacement: bool = True


# Each case is a project of its own, preempted by a build pod of that project when it reaches its own GPU limit,
# so the cases of one eviction setting (the scheduler's, one at a time) run side by side on the node's 4 GPUs:
# each holds at most 2, a holder takes the GPUs its run gave up. The gang (4 GPUs) and the reclaim (a node shrunk
# to one GPU) need the whole node and run alone, in their tests.
ANSWERS_LONG_EPOCH = {**TRAIN_ONE_GPU, "termination_grace_period_seconds": "10", "data_pvc": DATA_CLAIM}
CASES = {case.variant.id: case for case in [
    Case(Variant("preempt-condition", TRAIN_ONE_GPU, params=LONG_TRAINING, gpu_quota=1, gpu_limit=1), True),
    # A checkpoint every 100 epochs, preempted after epoch 20: before its first periodic checkpoint.
    Case(Variant("preempt-every-100", TRAIN_ONE_GPU, params={**LONG_TRAINING, "checkpoint_every": "100"},
                 gpu_quota=1, gpu_limit=1), True),
    Case(Variant("preempt-pytorch", {"framework": "pytorch", "gpu": "2", "cpu_request": "500m", "cpu_limit": "2"},
                 params={"epochs": str(PYTORCH_EPOCHS), "checkpoint_every": "5"}, gpu_quota=2, gpu_limit=2),
         True, after_epoch=3),
    Case(Variant("preempt-delete", {**TRAIN_ONE_GPU, "max_preemptions": "1"}, params=LONG_TRAINING,
                 gpu_quota=1, gpu_limit=1), False),
    Case(Variant("preempt-too-often", {**TRAIN_ONE_GPU, "max_preemptions": "0"}, params=LONG_TRAINING,
                 gpu_quota=1, gpu_limit=1, expect_success=False), False, expect_replacement=False),
    Case(Variant("preempt-long-epoch", ANSWERS_LONG_EPOCH, params=LONG_EPOCH, gpu_quota=1, gpu_limit=1),
         False, after_epoch=0),
]}


@pytest.fixture(scope="module")
def preempted(e2e, request) -> dict[str, Preemption | Exception]:
    """The cases the selected tests look at (their `case` marker), preempted side by side, one wave per
    eviction setting; a case's own failure is its test's, not the others'."""
    if not e2e.scheduler:  # set up before the autouse check above (a wider scope comes first)
        pytest.skip(NEEDS_FAKE_SCHEDULER)
    wanted = {m.args[0] for item in request.session.items for m in item.iter_markers("case")}
    results: dict[str, Preemption | Exception] = {}
    for condition in (True, False):
        wave = [c for name, c in CASES.items() if name in wanted and c.eviction_condition == condition
                and not e2e.cannot_run(c.variant)]
        if not wave:
            continue

        def undergo(case: Case) -> Preemption | Exception:
            try:
                return preempt(e2e, case.variant, Holder("build"), after_epoch=case.after_epoch,
                               expect_replacement=case.expect_replacement)
            except Exception as err:  # noqa: BLE001 - raised again in the case's own test
                return err
        with eviction_condition(e2e, condition), ThreadPoolExecutor(len(wave)) as pool:
            results.update(zip([c.variant.id for c in wave], pool.map(undergo, wave), strict=True))
    return results


@dataclass
class Uninterrupted:
    """The long-epoch case's training, uninterrupted, on this machine: the project's venv holds the image's pins."""

    process: subprocess.Popen
    tracking_uri: str
    folder: Path

    def finished(self, timeout: float = 600) -> tuple[int, str]:
        code = self.process.wait(timeout)
        return code, (self.folder / "train.log").read_text()


@pytest.fixture(scope="module", autouse=True)
def uninterrupted_long_epoch(e2e, preempted, tmp_path_factory) -> Iterator[Uninterrupted | Exception | None]:
    """Started as soon as the waves are over: its half-minute of one core then overlaps the gang and reclaim
    cases, which mostly wait, instead of following them (it ran after every other case)."""
    if not isinstance(preempted.get("preempt-long-epoch"), Preemption):
        yield None
        return
    p = preempted["preempt-long-epoch"]
    try:
        project = e2e.work_dir / p.outcome.variant.id / p.outcome.slug
        folder = tmp_path_factory.mktemp("uninterrupted")
        (folder / "claim").mkdir()
        (folder / "claim" / LONG_EPOCH_FILE).write_text(DATA_FILES[LONG_EPOCH_FILE])
        args = [arg for key, value in LONG_EPOCH.items() for arg in (f"--{key.replace('_', '-')}", value)]
        tracking_uri = f"sqlite:///{folder / 'mlflow.db'}"
        env = {**os.environ, "MLFLOW_TRACKING_URI": tracking_uri, "DATA_DIR": str(folder / "claim")}
        env.pop("MLFLOW_RUN_ID", None)
        python = project_venv(project) / "bin" / "python"
        with open(folder / "train.log", "w") as log:
            process = subprocess.Popen([str(python), str(project / "train.py"), *args],
                                       cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    except Exception as err:  # noqa: BLE001 - the long-epoch test's failure, not every test's of this module
        yield err
        return
    try:
        yield Uninterrupted(process, tracking_uri, folder)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def case_outcome(e2e, preempted, name: str) -> Preemption:
    if e2e.cannot_run(CASES[name].variant):
        pytest.skip(e2e.cannot_run(CASES[name].variant))
    result = preempted[name]
    if isinstance(result, Exception):
        raise result
    return result


def job_of(p: Preemption) -> tuple[dict, list[str]]:
    """The Job and the pods it created, from its SuccessfulCreate events (a deleted pod leaves no object)."""
    [job] = p.outcome.jobs
    created = [e["message"] for e in p.outcome.events.get(job["metadata"]["name"], [])
               if e["reason"] == "SuccessfulCreate"]
    return job, created


def assert_evicted(p: Preemption, says: str) -> None:
    events = p.outcome.events.get(p.evicted_pod, [])
    evictions = [e for e in events if e["reason"] == "Evict"]
    assert evictions and says in evictions[0]["message"], (p.evicted_pod, events[-1:])


def assert_resumed_and_finished(e2e, p: Preemption, counted: int, benchmark_setting: str = "") -> None:
    """mlflow run exited 0, the run FINISHED with every epoch once, and the Job replaced the pod (each pod of a
    gang) once.

    benchmark_setting: the preemption benchmark's name for this case, which then prints its figures."""
    o = p.outcome
    assert not o.error and o.exit_code == 0, p.outcome.describe()
    run = o.run
    assert run.info.status == "FINISHED"
    client = mlflow.MlflowClient(e2e.tracking.uri)
    epochs = int(o.variant.params["epochs"])
    for key in o.variant.framework.metrics:
        steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
        assert steps == list(range(epochs)), f"{key}: every epoch exactly once"
    assert run.data.tags["restarts"] == "1"
    assert run.data.tags["resumed_from_epoch"] == str(p.epoch_at_preemption + 1), "resumed where it stopped"
    assert run.data.metrics["epochs_redone"] == 0, "SIGTERM saved the last finished epoch"
    assert 0 <= p.epoch_at_preemption < epochs - 1, "preempted midway, after its first logged epoch"
    [model] = o.models
    assert model.source_run_id == run.info.run_id

    # One pod, or a gang of one per node: each preempted once, each replaced once.
    job, created = job_of(p)
    gang = len(p.evicted_pods)
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"]["conditions"])
    assert len(created) == 2 * gang == 2 * len(p.replacement_pods), created
    assert all(any(pod in line for line in created[:gang]) for pod in p.evicted_pods), created
    assert all(any(pod in line for line in created[gang:]) for pod in p.replacement_pods), created
    assert job["status"].get("failed", 0) == counted * gang, "preemptions counted against backoffLimit, per pod"
    assert sorted(pod["metadata"]["name"] for pod in o.pods) == sorted(p.replacement_pods)
    for pod in o.pods:
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0

    # make run showed each hand-over, and the run keeps each pod's log, in the order the pods ran.
    for evicted, replacement in zip(p.evicted_pods, p.replacement_pods, strict=True):
        ended, takes_over = f"pod {evicted} ended: ", f"pod {replacement} takes over"
        assert ended in o.output and takes_over in o.output, o.output[-3000:]
        assert o.output.index(ended) < o.output.index(takes_over)
    kept = [a.path for a in client.list_artifacts(run.info.run_id, "pod-logs")]
    names = [path.split("-", 2)[-1].removesuffix(".log") for path in kept]
    assert [path.split("/")[1][:3] for path in kept] == [f"{n:02d}-" for n in range(1, 2 * gang + 1)], kept
    assert sorted(names[:gang]) == sorted(p.evicted_pods) and sorted(names[gang:]) == sorted(p.replacement_pods), kept
    first = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path=kept[names.index(p.evicted_pod)],
                                                tracking_uri=e2e.tracking.uri)
    assert "received SIGTERM" in open(first).read(), "the preempted pod's log, up to its stop"
    if benchmark_setting:
        record_figures(e2e.report_dir, benchmark_setting, p.figures(run.data.metrics["epochs_redone"]))


@pytest.mark.case("preempt-condition")
def test_preempted_with_disruption_condition_resumes_and_finishes(e2e, preempted):
    """Preempted by an interactive job of the same project; the scheduler marks DisruptionTarget: not counted."""
    p = case_outcome(e2e, preempted, "preempt-condition")
    assert_evicted(p, "was preempted by higher priority workload")
    assert "quota has reached the allowable limit of GPUs" in p.replacement_waited, p.replacement_waited
    assert_resumed_and_finished(e2e, p, counted=0, benchmark_setting="condition")


@pytest.mark.case("preempt-every-100")
def test_a_preemption_before_the_first_periodic_checkpoint_loses_no_epoch(e2e, preempted):
    """checkpoint_every=100 and preempted near epoch 20: the only checkpoint is the one SIGTERM wrote, so the
    replacement resumes at the next epoch, not at 0; the interval bounds lost work only where SIGTERM cannot
    be handled."""
    p = case_outcome(e2e, preempted, "preempt-every-100")
    assert p.epoch_at_preemption < 100 - 1, "preempted before the first periodic checkpoint"
    assert_evicted(p, "was preempted by higher priority workload")
    assert_resumed_and_finished(e2e, p, counted=0, benchmark_setting="condition-every-100")


@pytest.mark.case("preempt-pytorch")
def test_preempted_pytorch_training_on_two_gpus_resumes_from_its_checkpoint(e2e, preempted):
    """The pytorch project on two GPUs (torchrun, two ranks, DataLoader workers, large /dev/shm) shares the
    checkpoint mechanism: SIGTERM reaches the pod's first process, both ranks stop at one step, rank 0 saves,
    the pod exits 143, and the replacement's two ranks resume from that checkpoint."""
    p = case_outcome(e2e, preempted, "preempt-pytorch")
    assert_evicted(p, "was preempted by higher priority workload")
    assert_resumed_and_finished(e2e, p, counted=0)
    client = mlflow.MlflowClient(e2e.tracking.uri)
    first_log = client.download_artifacts(p.outcome.run.info.run_id, f"pod-logs/01-{p.evicted_pod}.log")
    stopped = re.findall(r"rank (\d): stopped at (epoch \d+ step \d+)", open(first_log).read())
    assert sorted(stopped) == [("0", stopped[0][1]), ("1", stopped[0][1])], "both ranks stop after the same step"
    assert p.outcome.run.data.tags["world_size"] == "2"


def test_a_preempted_gang_of_two_nodes_stops_together_waits_as_a_whole_and_resumes(e2e):
    """nodes=2 x gpu=2 (an Indexed Job of two pods, four ranks, one gang). A build pod of the project takes one
    GPU: the scheduler preempts the whole gang, and every rank on both pods stops after the same step, rank 0
    saves. The replacement gang waits as a whole while only 3 of its 4 GPUs are free, no pod of it bound;
    once the holder leaves, both pods start together, meet again at index 0 and resume from the checkpoint."""
    answers = {"framework": "pytorch", "gpu": "2", "nodes": "2", "cpu_request": "500m", "cpu_limit": "2"}
    variant = Variant("preempt-gang", answers, params={"epochs": str(PYTORCH_EPOCHS), "checkpoint_every": "5"},
                      gpu_quota=4, gpu_limit=4, deadline=1200)
    with eviction_condition(e2e, True):
        p = preempt(e2e, variant, Holder("build"), after_epoch=3)
    assert len(p.evicted_pods) == len(p.replacement_pods) == 2, (p.evicted_pods, p.replacement_pods)
    for pod in p.evicted_pods:
        evictions = [e for e in p.outcome.events.get(pod, []) if e["reason"] == "Evict"]
        assert evictions and "was preempted by higher priority workload" in evictions[0]["message"], pod
    assert "required for gang scheduling" in p.replacement_waited, p.replacement_waited
    assert_resumed_and_finished(e2e, p, counted=0)
    client = mlflow.MlflowClient(e2e.tracking.uri)
    kept = [a.path for a in client.list_artifacts(p.outcome.run.info.run_id, "pod-logs")]
    first_logs = "".join(open(client.download_artifacts(p.outcome.run.info.run_id, path)).read()
                         for path in kept if any(path.endswith(f"-{pod}.log") for pod in p.evicted_pods))
    stopped = dict(re.findall(r"rank (\d): stopped at (epoch \d+ step \d+)", first_logs))
    assert sorted(stopped) == ["0", "1", "2", "3"] and len(set(stopped.values())) == 1, \
        f"all four ranks, on both pods, stop after the same step: {stopped}"
    assert (p.outcome.run.data.tags["world_size"], p.outcome.run.data.tags["nodes"]) == ("4", "2")


@pytest.mark.case("preempt-delete")
def test_preempted_by_delete_only_resumes_and_counts_against_the_backoff_limit(e2e, preempted):
    """As Run:ai's scheduler by default: the pod is deleted without a condition, so its 143 exit is counted."""
    p = case_outcome(e2e, preempted, "preempt-delete")
    assert_evicted(p, "was preempted by higher priority workload")
    assert_resumed_and_finished(e2e, p, counted=1, benchmark_setting="delete-only")


def test_reclaimed_by_another_project_resumes_when_capacity_returns(e2e, one_gpu_node):
    """Over its quota on the only GPU, the run is reclaimed by a project under its quota, then resumes."""
    variant = Variant("reclaimed", TRAIN_ONE_GPU, params=LONG_TRAINING, gpu_quota=0)
    other = f"reclaimer-{e2e.id}"
    e2e.api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": f"runai-{other}", "labels": {
        QUEUE_LABEL: other, "app.kubernetes.io/part-of": "runai-mlflow-e2e"}}})
    e2e.scheduler.add_queue(Queue(other, Quota(1, -1)))
    try:
        with eviction_condition(e2e, False):
            p = preempt(e2e, variant, Holder(priority_class=None, project=other))
    finally:
        e2e.api.request("DELETE", f"/api/v1/namespaces/runai-{other}")
    assert_evicted(p, f"was preempted by workload runai-{other}/")
    assert_resumed_and_finished(e2e, p, counted=1)


@pytest.mark.case("preempt-too-often")
def test_preempted_more_often_than_allowed_fails_and_says_why(e2e, preempted):
    """max_preemptions=0: the first preemption without a condition fails the Job; the run ends FAILED."""
    p = case_outcome(e2e, preempted, "preempt-too-often")
    o = p.outcome
    assert o.exit_code not in (0, None), p.outcome.describe()
    assert o.run.info.status == "FAILED"
    assert_evicted(p, "was preempted by higher priority workload")
    job, created = job_of(p)
    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "BackoffLimitExceeded", failed
    assert "backoff limit" in failed["message"]
    assert len(created) == 1 and job["status"]["failed"] == 1
    assert "BackoffLimitExceeded" in o.output, "make run says why the run failed"
    assert "max_preemptions" in o.output, "and what to change"


@pytest.mark.case("preempt-long-epoch")
def test_a_long_epoch_preempted_midway_stops_at_a_step_and_ends_as_if_uninterrupted(e2e, preempted,
                                                                                     uninterrupted_long_epoch):
    """Run:ai's default (delete only, no condition) with a 10 s grace period and epochs longer than that:
    the pod stops at the next step (143, not SIGKILL's 137), the replacement resumes inside the epoch, and
    the run ends with the metrics an uninterrupted run of the same seed logs."""
    p = case_outcome(e2e, preempted, "preempt-long-epoch")
    assert_evicted(p, "was preempted by higher priority workload")
    assert_resumed_and_finished(e2e, p, counted=1)  # counted: the 143 exit, where a 137 would have failed the Job

    log = p.outcome.pod_logs[p.replacement_pod]
    resumed = re.search(r"resuming from the checkpoint at epoch 1 step (\d+);", log)
    assert resumed and int(resumed[1]) > 0, f"resumed inside epoch 1, at the step SIGTERM stopped:\n{log[-2000:]}"
    rate = re.search(r"^epoch 2/2: .*; ([\d,]+) samples/s$", log, re.M)
    train_rows = len(DATA_FILES[LONG_EPOCH_FILE].splitlines()[1:]) * 0.6  # one row per step
    assert rate and train_rows / int(rate[1].replace(",", "")) > 10, "an epoch longer than the 10 s grace period"

    # The same parameters, uninterrupted, on this machine (started after the waves, see the fixture).
    if isinstance(uninterrupted_long_epoch, Exception):
        raise uninterrupted_long_epoch
    code, output = uninterrupted_long_epoch.finished()
    assert code == 0, output[-2000:]
    here = mlflow.MlflowClient(uninterrupted_long_epoch.tracking_uri)
    [uninterrupted] = here.search_runs([e.experiment_id for e in here.search_experiments()])
    there = mlflow.MlflowClient(e2e.tracking.uri)
    for key in (*p.outcome.variant.framework.metrics, *p.outcome.variant.framework.final_metrics):
        ours = [(m.step, m.value) for m in sorted(there.get_metric_history(p.outcome.run.info.run_id, key),
                                                  key=lambda m: m.step)]
        theirs = [(m.step, m.value) for m in sorted(here.get_metric_history(uninterrupted.info.run_id, key),
                                                    key=lambda m: m.step)]
        assert [s for s, _ in ours] == [s for s, _ in theirs], key
        # The project's own tests prove bit-identity in one process; across the pod and this host the
        # BLAS threads may differ, so equal to 1e-9 relative.
        assert all(math.isclose(a, b, rel_tol=1e-9) for (_, a), (_, b) in zip(ours, theirs, strict=True)), \
            f"{key}: {ours} != {theirs} (uninterrupted)"
