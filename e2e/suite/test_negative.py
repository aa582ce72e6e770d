"""What users hit when things go wrong: the suite shows Run:ai's reason, the run ends FAILED, nothing hangs."""

from __future__ import annotations

import json
import re
import subprocess
import threading
from pathlib import Path

import pytest
from kube import wait_until
from kube.venvs import project_venv

from .progress import progress
from .researcher import service_account_kubeconfig
from .runner import k8s_time
from .variants import BAD_PARAMETER, OUT_OF_MEMORY, OVER_QUOTA, Variant

pytestmark = pytest.mark.e2e


@pytest.mark.runs(OVER_QUOTA)
def test_non_preemptible_job_over_quota_fails_at_its_deadline(failing_outcome):
    outcome = failing_outcome(OVER_QUOTA)
    assert outcome.phases["mlflow run"] < 300, "mlflow run must end at the Job's deadline, not hang"
    assert outcome.exit_code not in (0, None), outcome.output[-2000:]
    assert outcome.run.info.status == "FAILED"
    [message] = {e["message"] for e in outcome.pod_events("Unschedulable")}
    assert message.startswith("Non-preemptible workload is over quota. Workload requested 1 GPUs, but "
                              f"{outcome.project} quota is 0 GPUs"), message
    # make run said so while it waited, once: not only why_failed.py at the end.
    waiting = re.findall(r"^pod \S+ is Pending: (.*)$", outcome.output, re.M)
    assert waiting == [message], outcome.output[-3000:]
    [job] = outcome.jobs
    assert any(c["type"] == "Failed" and c.get("reason") == "DeadlineExceeded" for c in job["status"]["conditions"])
    assert not outcome.pod_events("Scheduled")


def failed_at_once(outcome) -> dict:
    """The Job failed through its podFailurePolicy on its first pod: no retry. Returns that pod's termination."""
    assert outcome.exit_code not in (0, None), outcome.output[-2000:]
    assert outcome.run.info.status == "FAILED"
    [job] = outcome.jobs
    [failed] = [c for c in job["status"]["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "PodFailurePolicy", failed
    assert job["status"].get("failed") == 1 and not job["status"].get("active")
    created = [e for e in outcome.events.get(job["metadata"]["name"], []) if e["reason"] == "SuccessfulCreate"]
    assert len(created) == 1, "a failed training is not retried"
    [pod] = outcome.pods
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


@pytest.mark.runs(BAD_PARAMETER)
def test_training_failure_fails_the_run_at_once_and_keeps_the_pod_log(e2e, failing_outcome):
    outcome = failing_outcome(BAD_PARAMETER)
    terminated = failed_at_once(outcome)
    assert terminated["exitCode"] == 2  # argparse's usage error
    [pod] = outcome.pods
    log = (e2e.report_dir / BAD_PARAMETER.id / f"{pod['metadata']['name']}.log").read_text()
    assert "--l1-ratio must be between 0 and 1, got 2.0" in log


@pytest.mark.runs(OUT_OF_MEMORY)
def test_out_of_memory_fails_the_run_at_once(failing_outcome):
    """An OOM kill (137) is a bug to fix, not a preemption to ride out."""
    outcome = failing_outcome(OUT_OF_MEMORY)
    terminated = failed_at_once(outcome)
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled"), terminated
    # make run says so, not "killed, maybe memory": the pod is still there to tell.
    assert "used more memory than its limit and the kernel killed it (OOMKilled)" in outcome.output, \
        outcome.output[-2000:]
    assert f"make resume RUN_ID={outcome.run.info.run_id}" in outcome.output


def test_two_half_gpu_jobs_share_a_gpu_and_a_third_waits(e2e, one_gpu_node):
    if not e2e.scheduler:
        pytest.skip("asserts the fake scheduler's GPU sharing")
    # A low CPU limit keeps the first two training pods on the GPU long enough for the third to queue. The third
    # asks for little CPU too, so that the GPU is what it waits for: on kind the control plane's own pods hold
    # 850m of a 2-core node's CPU, and a third run of 1 CPU waited for CPU there instead.
    slow = {"gpu": "0.5", "cpu_request": "100m", "cpu_limit": "300m", "memory_limit": ""}
    runs = [e2e.project_run(Variant(f"share-{name}", answers, gpu_quota=4))
            for name, answers in (("a", slow), ("b", slow), ("c", {"gpu": "0.5", "cpu_request": "100m"}))]
    outcomes: dict[str, object] = {}
    first_two = [threading.Thread(target=lambda r=r: outcomes.__setitem__(r.variant.id, r.execute())) for r in runs[:2]]
    for thread in first_two:
        thread.start()

    def bound_pods(run) -> list:
        pods = e2e.api.get(f"/api/v1/namespaces/{run.outcome.namespace}/pods")["items"] \
            if run.outcome.namespace in {n["metadata"]["name"] for n in e2e.api.get("/api/v1/namespaces")["items"]} \
            else []
        return [p for p in pods if p["spec"].get("nodeName") and p["status"].get("phase") in ("Pending", "Running")]

    wait_until(lambda: all(bound_pods(r) for r in runs[:2]), 600, "the first two half-GPU jobs both bound",
               interval=0.5, give_up=lambda: not all(t.is_alive() for t in first_two) and "one of them ended")
    progress("share-a and share-b share the GPU; submitting share-c")
    outcomes["share-c"] = runs[2].execute()
    for thread in first_two:
        thread.join()

    a, b, c = (outcomes[r.variant.id] for r in runs)
    for outcome in (a, b, c):
        assert outcome.exit_code == 0 and outcome.run.info.status == "FINISHED", outcome.output[-2000:]
    group = {o.variant.id: o.pods[0]["metadata"]["labels"]["runai-gpu-group"] for o in (a, b, c)}
    assert group["share-a"] == group["share-b"], "two halves share one GPU"
    waited = c.pod_events("Unschedulable")
    assert waited and "GPU with enough free share" in waited[0]["message"], c.events
    first_finished = min(k8s_time(o.pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["finishedAt"])
                         for o in (a, b))
    [scheduled] = c.pod_events("Scheduled")
    assert k8s_time(scheduled["lastTimestamp"]) >= first_finished - 1, "share-c ran only after a half was free"


def test_preflight_refuses_a_user_who_may_not_work_with_jobs(e2e, tmp_path):
    """preflight asks the API server what this user may do in the namespace (SelfSubjectAccessReview),
    which works for a researcher who cannot read the Namespace object; a several-node project also needs
    to create its headless Service."""
    if not e2e.target.may_create_namespaces:
        pytest.skip("creates a namespace and a ServiceAccount, which a researcher may not")
    run = e2e.project_run(Variant("preflight-rights", {"framework": "pytorch", "gpu": "1", "nodes": "2"}))
    project = run.bake()
    run.prepare_namespace()
    namespace = run.outcome.namespace
    e2e.api.request("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts", body={"metadata": {"name": "nobody"}})
    nobody = service_account_kubeconfig(e2e.api, e2e.target.kubeconfig, namespace, "nobody", tmp_path / "nobody")
    python = project_venv(project, progress) / "bin" / "python"

    def preflight_kubernetes(kubeconfig: Path) -> list[str]:
        check = f"import json, preflight; print(json.dumps(preflight.check_kubernetes({{}}, {namespace!r})))"
        result = subprocess.run([str(python), "-c", check], cwd=project, capture_output=True, text=True,
                                env={**e2e.target.env(), "KUBECONFIG": str(kubeconfig)}, timeout=120)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.splitlines()[-1])

    [refusal] = preflight_kubernetes(nobody)
    assert (f"You may not create jobs, get jobs/status, delete jobs, list pods, get pods/log, delete pods, "
            f"create services in namespace {namespace!r}") in refusal
    assert preflight_kubernetes(e2e.target.kubeconfig) == [], "the suite's own user may"
