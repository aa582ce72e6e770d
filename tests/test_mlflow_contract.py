"""The generated project, loaded and rendered by MLflow's own Kubernetes backend code, is a valid Run:ai Job.

Rendering goes through mlflow.projects' functions (not a copy of their logic), then the Job is
validated against the Kubernetes 1.34 OpenAPI schema with unknown fields rejected.
"""

import copy
import json

import kubernetes_validate
import pytest
import yaml
from mlflow.projects import kubernetes as mlflow_k8s
from mlflow.projects.utils import get_entry_point_command, get_run_env_vars, load_project
from runai.names import (
    BATCH_MIN_MEMBER_ANNOTATION,
    DEVICES_ANNOTATION,
    FRACTION_ANNOTATION,
    GPU_RESOURCE,
    MEMORY_ANNOTATION,
    NODE_POOL_LABEL,
    NODE_TYPE_LABEL,
    PRIORITY_LABEL,
    PROJECT_LABEL,
    QUEUE_LABEL,
)

from hooks.pre_gen_project import MAX_NODES, POD_HOSTNAME_MAX, SLUG_MAX, longest_pod_hostname

from .conftest import ANSWER_KEYS
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
# SIGTERM's 143 or an unreachable tracking server's 75 fails the Job at once; those two fall through
# to Count (backoffLimit).
PREEMPTION_POLICY = {"rules": [
    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    {"action": "FailJob", "onExitCodes": {"operator": "NotIn", "values": [75, 143]}},
]}


def pod_spec(job):
    return job["spec"]["template"]["spec"]


def training_processes(answers: dict) -> int:
    """One per GPU the pod spans: whole GPUs, or the devices a shared request spreads over."""
    gpu = float(answers.get("gpu", "1"))
    return int(gpu) if gpu >= 1 else int(answers.get("gpu_devices", "1"))


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_rendered_job_is_valid_kubernetes(bake, monkeypatch, variant):
    project = bake(**variant).project_path
    pytorch = variant.get("framework") == "pytorch"
    job = render_job(project, monkeypatch, {"lr": "0.1"} if pytorch else {"alpha": "0.1"})
    kubernetes_validate.validate(job, "1.34.0", strict=True)
    assert len(job["metadata"]["name"]) <= 63
    [container] = pod_spec(job)["containers"]
    assert container["name"] == project.name
    assert container["image"].endswith("@" + DIGEST)
    model_args = (["--lr", "0.1", "--batch-size", "64", "--workers", "2", "--procs-per-node",
                   str(training_processes(variant)), "--seed", "42", "--epochs", "30"]
                  if pytorch else ["--alpha", "0.1", "--l1-ratio", "0.5", "--batch-size", "32", "--seed", "42",
                                   "--epochs", "100"])
    assert container["command"] == ["python", "train.py", *model_args, "--checkpoint-every", "10",
                                    "--checkpoint-minutes", "10", "--log-every", "100", "--data-file", "none",
                                    "--continue-run", "none"]
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env["MLFLOW_TRACKING_URI"] == POD_TRACKING_URI
    assert [item["name"] for item in container["env"]].count("MLFLOW_TRACKING_URI") == 1
    assert env["HOME"] == "/tmp"


def _meta(job):
    """The Job's and the pod template's metadata: Run:ai reads labels from both."""
    return job["metadata"], job["spec"]["template"]["metadata"]


def _container(job):
    [container] = pod_spec(job)["containers"]
    return container


def _limits(job):
    return _container(job)["resources"].get("limits", {})


def _annotations(job):
    return _meta(job)[1].get("annotations", {})


def _check_gpu(job, a, _):
    gpu, annotations, limits = float(a["gpu"]), _annotations(job), _limits(job)
    if a["gpu_memory"]:
        assert GPU_RESOURCE not in limits and FRACTION_ANNOTATION not in annotations, "memory replaces the fraction"
    elif gpu >= 1:
        assert limits[GPU_RESOURCE] == str(int(gpu)) and FRACTION_ANNOTATION not in annotations
    elif gpu > 0:
        assert GPU_RESOURCE not in limits and float(annotations[FRACTION_ANNOTATION]) == gpu
    else:
        assert GPU_RESOURCE not in limits and FRACTION_ANNOTATION not in annotations


def _check_data(job, a, _):
    volumes = {v["name"]: v for v in pod_spec(job).get("volumes", [])}
    mounts = {m["name"]: m for m in _container(job).get("volumeMounts", [])}
    env = {e["name"]: e.get("value") for e in _container(job)["env"]}
    if not a["data_pvc"]:
        assert "data" not in volumes and "data" not in mounts and "DATA_DIR" not in env
        return
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": a["data_pvc"], "readOnly": True}
    assert mounts["data"] == {"name": "data", "mountPath": a["data_mount_path"], "readOnly": True}
    assert env["DATA_DIR"] == a["data_mount_path"]


def _check_large_shm(job, a, _):
    shm = [v for v in pod_spec(job).get("volumes", []) if v["name"] == "dshm"]
    assert bool(shm) == a["large_shm"]
    if shm:
        assert shm[0]["emptyDir"] == {"medium": "Memory"}
        assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(job)["volumeMounts"]


def _check_project(job, a, _):
    assert job["metadata"]["namespace"] == f"runai-{a['runai_project']}"
    for meta in _meta(job):
        assert meta["labels"][QUEUE_LABEL] == a["runai_project"] and meta["labels"][PROJECT_LABEL] == a["runai_project"]


def _check_workload_type(job, a, project):
    """Its default priority class is checked by the defaults test; here, what the Run:ai CLI line says."""
    assert ("--interactive" in (project / "README.md").read_text()) == (a["workload_type"] == "interactive")


def _check_priority_class(job, a, _):
    for meta in _meta(job):
        assert meta["labels"][PRIORITY_LABEL] == a["priority_class"]


def _check_framework(job, a, project):
    """The framework picks trainer.py and the entry point's parameters; train.py is shared."""
    trainer = (project / "trainer.py").read_text()
    command = _container(job)["command"]
    if a["framework"] == "pytorch":
        assert "import torch" in trainer and "--lr" in command and "--workers" in command
        assert "torch==" in (project / "requirements-torch.txt").read_text()
        assert "-r requirements-torch.txt" in (project / "requirements.txt").read_text()
    else:
        assert "from sklearn.linear_model import SGDRegressor" in trainer and "--alpha" in command
        assert "torch" not in (project / "requirements.txt").read_text()


def _check_nodes(job, a, project):
    """Several nodes: an Indexed Job of one gang, each pod named under the project's headless Service, with
    what torchrun needs to meet at index 0; one node: a plain Job and no Service."""
    nodes, service_file = int(a["nodes"]), project / "kubernetes_peers_service.yaml"
    env = {item["name"]: item for item in _container(job)["env"]}
    if nodes == 1:
        assert "completionMode" not in job["spec"] and "subdomain" not in pod_spec(job)
        assert BATCH_MIN_MEMBER_ANNOTATION not in job["metadata"]["annotations"] and "TRAIN_NODES" not in env
        assert not service_file.exists()
        return
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == nodes
    assert job["metadata"]["annotations"][BATCH_MIN_MEMBER_ANNOTATION] == str(nodes)
    service = yaml.safe_load(service_file.read_text())
    kubernetes_validate.validate(service, "1.34.0", strict=True)
    assert pod_spec(job)["subdomain"] == service["metadata"]["name"] == f"{a['project_slug']}-peers"
    assert service["metadata"]["namespace"] == job["metadata"]["namespace"]
    assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is True
    assert service["spec"]["selector"].items() <= _meta(job)[1]["labels"].items(), "the Service selects the pods"
    assert env["TRAIN_NODES"]["value"] == str(nodes)
    job_name_label = "metadata.labels['batch.kubernetes.io/job-name']"  # MLflow's name, with its timestamp
    assert env["JOB_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": job_name_label}}
    names = [item["name"] for item in _container(job)["env"]]
    assert names.index("JOB_NAME") < names.index("TRAIN_RENDEZVOUS_HOST"), "$(JOB_NAME) expands if defined first"
    assert env["TRAIN_RENDEZVOUS_HOST"]["value"] == f"$(JOB_NAME)-0.{service['metadata']['name']}"


def _config(project):
    return json.loads((project / "kubernetes_config.json").read_text())


# One check per answer: where it shows in what `mlflow run` submits (the rendered Job), or, for answers
# MLflow takes elsewhere, in the file it reads. test_every_answer_has_a_contract_check keeps this complete.
ANSWER_CHECKS = {
    "framework": _check_framework,
    "project_name": lambda job, a, project: (project / "README.md").read_text().startswith(f"# {a['project_name']}\n"),
    "project_slug": lambda job, a, _: _container(job)["name"] == a["project_slug"]
    and all(m["labels"]["app.kubernetes.io/name"] == a["project_slug"] for m in _meta(job)),
    "description": lambda job, a, _: job["metadata"]["annotations"]["runai-mlflow/description"] == a["description"],
    "author": lambda job, a, _: job["metadata"]["annotations"]["runai-mlflow/author"] == a["author"],
    "runai_project": _check_project,
    "workload_type": _check_workload_type,
    "priority_class": _check_priority_class,
    "gpu": _check_gpu,
    "gpu_memory": lambda job, a, _: _annotations(job).get(MEMORY_ANNOTATION) == (a["gpu_memory"] or None),
    "gpu_devices": lambda job, a, _: _annotations(job).get(DEVICES_ANNOTATION)
    == (a["gpu_devices"] if a["gpu_devices"] != "1" else None),
    "data_pvc": _check_data,
    "data_mount_path": _check_data,
    "cpu_request": lambda job, a, _: _container(job)["resources"]["requests"]["cpu"] == a["cpu_request"],
    "cpu_limit": lambda job, a, _: _limits(job).get("cpu", "") == a["cpu_limit"],
    "memory_request": lambda job, a, _: _container(job)["resources"]["requests"]["memory"] == a["memory_request"],
    "memory_limit": lambda job, a, _: _limits(job).get("memory", "") == a["memory_limit"],
    "node_type": lambda job, a, _: pod_spec(job).get("nodeSelector", {}).get(NODE_TYPE_LABEL)
    == (a["node_type"] or None),
    "node_pool": lambda job, a, _: _meta(job)[1]["labels"].get(NODE_POOL_LABEL) == (a["node_pool"] or None),
    "large_shm": _check_large_shm,
    "base_image": lambda job, a, project: f"\nFROM {a['base_image']}\n" in (project / "Dockerfile").read_text(),
    "image_repository": lambda job, a, project: _config(project)["repository-uri"] == a["image_repository"],
    "kube_context": lambda job, a, project: _config(project).get("kube-context") == (a["kube_context"] or None),
    "image_pull_secret": lambda job, a, _: pod_spec(job).get("imagePullSecrets")
    == ([{"name": a["image_pull_secret"]}] if a["image_pull_secret"] else None),
    "credentials_secret": lambda job, a, _: _container(job).get("envFrom")
    == ([{"secretRef": {"name": a["credentials_secret"]}}] if a["credentials_secret"] else None),
    "active_deadline_seconds": lambda job, a, _:
    job["spec"]["activeDeadlineSeconds"] == int(a["active_deadline_seconds"]),
    "ttl_seconds_after_finished": lambda job, a, _:
    job["spec"]["ttlSecondsAfterFinished"] == int(a["ttl_seconds_after_finished"]),
    "max_preemptions": lambda job, a, _: job["spec"]["backoffLimit"] == int(a["max_preemptions"]) * int(a["nodes"]),
    "nodes": _check_nodes,
    "termination_grace_period_seconds": lambda job, a, _:
    pod_spec(job)["terminationGracePeriodSeconds"] == int(a["termination_grace_period_seconds"]),
    "scheduler_name": lambda job, a, _: pod_spec(job)["schedulerName"] == a["scheduler_name"],
}


def test_every_answer_has_a_contract_check():
    """Adding a question to cookiecutter.json means saying here where it lands (README: adding a template option)."""
    assert set(ANSWER_CHECKS) == ANSWER_KEYS


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_runai_fields(bake, monkeypatch, variant):
    project = bake(**variant).project_path
    answers = json.loads((project / ".runai-mlflow-answers.json").read_text())["cookiecutter"]  # in effect
    job = render_job(project, monkeypatch)
    for key, check in ANSWER_CHECKS.items():
        assert check(job, answers, project) is not False, f"{key}={answers[key]!r} is not where it belongs"

    spec, container = pod_spec(job), _container(job)
    assert spec["restartPolicy"] == "Never"
    # Preemption, for every workload type (interactive pods are evicted by node drains too).
    assert job["spec"]["podReplacementPolicy"] == "Failed"
    assert job["spec"]["podFailurePolicy"] == PREEMPTION_POLICY
    for meta in _meta(job):
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "mlflow-projects"
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


def test_longest_slug_and_most_nodes_fit_the_pod_hostname_limit(bake, monkeypatch):
    """An Indexed Job's pod is named <job>-<index> (a DNS label, at most 63): the rendezvous address must fit."""
    nodes = MAX_NODES
    job = render_job(bake(project_slug="a" * SLUG_MAX, framework="pytorch", nodes=str(nodes)).project_path,
                     monkeypatch)
    last_hostname = f"{job['metadata']['name']}-{nodes - 1}"
    assert len(last_hostname) == longest_pod_hostname("a" * SLUG_MAX, nodes) <= POD_HOSTNAME_MAX == 63


def test_entry_point_parameters_reach_the_command(bake, monkeypatch):
    """epochs, checkpoints, seed and progress are real parameters: tests shape runs with them, not with switches."""
    given = {"epochs": "3000", "checkpoint_every": "1", "checkpoint_minutes": "0.5", "seed": "7", "log_every": "5",
             "batch_size": "4"}
    job = render_job(bake().project_path, monkeypatch, given)
    command = pod_spec(job)["containers"][0]["command"]
    for name, value in given.items():
        assert command[command.index("--" + name.replace("_", "-")) + 1] == value, name


@pytest.mark.parametrize("answers", [{"gpu": "2"}, {"gpu": "8"}, {"gpu": "0.5", "gpu_devices": "2"}], ids=str)
def test_a_pytorch_pod_on_several_gpus_runs_one_process_per_gpu(bake, monkeypatch, answers):
    """torchrun needs the count (procs_per_node, from the answers) and NCCL a large /dev/shm; -P overrides it."""
    project = bake(framework="pytorch", **answers).project_path
    procs = training_processes(answers)
    job = render_job(project, monkeypatch)
    kubernetes_validate.validate(job, "1.34.0", strict=True)
    command = _container(job)["command"]
    assert command[:2] == ["python", "train.py"], "train.py launches torchrun itself, to keep the exit codes"
    assert command[command.index("--procs-per-node") + 1] == str(procs)
    assert {"name": "dshm", "mountPath": "/dev/shm"} in _container(job)["volumeMounts"]
    if "." not in answers["gpu"]:
        assert _limits(job)[GPU_RESOURCE] == str(procs)
    one = render_job(project, monkeypatch, {"procs_per_node": "1"})
    assert _container(one)["command"][_container(one)["command"].index("--procs-per-node") + 1] == "1"


@pytest.mark.parametrize(("workload_type", "priority_class"), [("train", "train"), ("interactive", "build")])
def test_the_workload_type_picks_the_default_priority_class(bake, monkeypatch, workload_type, priority_class):
    """Run:ai's defaults: train workloads are preemptible (train, 50), interactive ones are not (build, 100)."""
    job = render_job(bake(workload_type=workload_type).project_path, monkeypatch)
    assert [meta["labels"][PRIORITY_LABEL] for meta in _meta(job)] == [priority_class] * 2
