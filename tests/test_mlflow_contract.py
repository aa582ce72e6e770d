"""The generated project, loaded and rendered by MLflow's own Kubernetes backend code, is a valid Run:ai Job.

Rendering goes through mlflow.projects' functions (not a copy of their logic), then the Job is
validated against the Kubernetes 1.34 OpenAPI schema with unknown fields rejected.
"""

import copy

import kubernetes_validate
import pytest
import yaml
from mlflow.projects import kubernetes as mlflow_k8s
from mlflow.projects.utils import get_entry_point_command, get_run_env_vars, load_project

from .matrix import VARIANTS, variant_id

DIGEST = "sha256:" + "ab" * 32
POD_TRACKING_URI = "http://10.88.0.1:5000"


def render_job(project_dir, monkeypatch, parameters=None):
    """What `mlflow run . --backend kubernetes --build-image` would submit for this project."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("KUBE_MLFLOW_TRACKING_URI", POD_TRACKING_URI)
    project = load_project(str(project_dir))
    template = yaml.safe_load((project_dir / "kubernetes_job_template.yaml").read_text())
    entry_point = get_entry_point_command(project, "main", parameters or {}, storage_dir=None)
    return mlflow_k8s._get_kubernetes_job_definition(
        project_name=project.name,
        image_tag=f"registry.example.com/team-a/{project.name}:abc1234",
        image_digest=DIGEST,
        command=mlflow_k8s._get_run_command(entry_point),
        env_vars=get_run_env_vars(run_id="0123456789abcdef", experiment_id="7"),
        job_template=copy.deepcopy(template),
    )


# Preempted or evicted pods (DisruptionTarget) are replaced and never counted; an exit other than
# SIGTERM's 143 fails the Job at once; a bare SIGTERM exit falls through to Count (backoffLimit).
PREEMPTION_POLICY = {"rules": [
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [143]}},
]}


def pod_spec(job):
    return job["spec"]["template"]["spec"]


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_rendered_job_is_valid_kubernetes(bake, monkeypatch, variant):
    project = bake(**variant).project_path
    job = render_job(project, monkeypatch, {"alpha": "0.1"})
    kubernetes_validate.validate(job, "1.34.0", strict=True)
    assert len(job["metadata"]["name"]) <= 63
    [container] = pod_spec(job)["containers"]
    assert container["name"] == project.name
    assert container["image"].endswith("@" + DIGEST)
    assert container["command"] == ["python", "train.py", "--alpha", "0.1", "--l1-ratio", "0.5", "--epochs", "100",
                                    "--checkpoint-every", "10"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == POD_TRACKING_URI
    assert [item["name"] for item in container["env"]].count("MLFLOW_TRACKING_URI") == 1
    assert env["HOME"] == "/tmp"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_runai_fields(bake, monkeypatch, variant):
    answers = {"runai_project": "team-a", "scheduler_name": "runai-scheduler", "gpu": "1",
               "workload_type": "train", "active_deadline_seconds": "86400",
               "ttl_seconds_after_finished": "3600", "max_preemptions": "10", "termination_grace_period_seconds": "60",
               **variant}
    job = render_job(bake(**variant).project_path, monkeypatch)
    spec, pod_meta = pod_spec(job), job["spec"]["template"]["metadata"]
    project = answers["runai_project"]

    assert job["metadata"]["namespace"] == f"runai-{project}"
    assert spec["schedulerName"] == answers["scheduler_name"]
    assert spec["restartPolicy"] == "Never"
    assert spec["terminationGracePeriodSeconds"] == int(answers["termination_grace_period_seconds"])
    # Preemption (any workload type: interactive pods are evicted by node drains too): see test_preemption_policy.
    assert job["spec"]["backoffLimit"] == int(answers["max_preemptions"])
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert job["spec"]["podFailurePolicy"] == PREEMPTION_POLICY
    assert job["spec"]["activeDeadlineSeconds"] == int(answers["active_deadline_seconds"])
    assert job["spec"]["ttlSecondsAfterFinished"] == int(answers["ttl_seconds_after_finished"])
    for meta in (job["metadata"], pod_meta):
        assert meta["labels"]["runai/queue"] == project and meta["labels"]["project"] == project
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "mlflow-projects"
        interactive = answers["workload_type"] == "interactive"
        assert meta["labels"].get("priorityClassName") == ("build" if interactive else None)

    [container] = spec["containers"]
    limits = container["resources"].get("limits", {})
    gpu = float(answers["gpu"])
    annotations = pod_meta.get("annotations", {})
    if gpu >= 1:
        assert limits["nvidia.com/gpu"] == str(int(gpu)) and "gpu-fraction" not in annotations
    elif gpu > 0:
        assert "nvidia.com/gpu" not in limits and float(annotations["gpu-fraction"]) == gpu
    else:
        assert "nvidia.com/gpu" not in limits and "gpu-fraction" not in annotations
    assert container["resources"]["requests"]["cpu"] == answers.get("cpu_request", "1")
    assert limits.get("cpu", "") == answers.get("cpu_limit", "2")
    assert limits.get("memory", "") == answers.get("memory_limit", "4Gi")

    assert spec.get("nodeSelector", {}).get("run.ai/type") == (answers.get("node_type") or None)
    assert pod_meta["labels"].get("runai/node-pool") == (answers.get("node_pool") or None)
    shm = [v for v in spec.get("volumes", []) if v["name"] == "dshm"]
    assert bool(shm) == bool(answers.get("large_shm"))
    if shm:
        assert shm[0]["emptyDir"] == {"medium": "Memory"}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    pull = answers.get("image_pull_secret")
    assert spec.get("imagePullSecrets") == ([{"name": pull}] if pull else None)
    creds = answers.get("credentials_secret")
    assert container.get("envFrom") == ([{"secretRef": {"name": creds}}] if creds else None)

    # Pod Security "restricted"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def test_quoting_keeps_command_tokens_free_of_literal_quotes(bake, monkeypatch):
    """Kubernetes runs the command without a shell: quotes MLflow adds would reach argv literally."""
    job = render_job(bake().project_path, monkeypatch, {"alpha": "1e-3", "l1_ratio": "0.9"})
    assert not any("'" in token for token in pod_spec(job)["containers"][0]["command"])


def test_longest_slug_fits_job_name_limit(bake, monkeypatch):
    job = render_job(bake(project_slug="a" * 30).project_path, monkeypatch)
    assert len(job["metadata"]["name"]) == 30 + 27 <= 63


def test_entry_point_parameters_reach_the_command(bake, monkeypatch):
    """epochs and checkpoint_every are real parameters: tests make runs longer with them, not with switches."""
    job = render_job(bake().project_path, monkeypatch, {"epochs": "3000", "checkpoint_every": "1"})
    command = pod_spec(job)["containers"][0]["command"]
    assert command[command.index("--epochs") + 1] == "3000"
    assert command[command.index("--checkpoint-every") + 1] == "1"
