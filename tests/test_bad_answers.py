"""Bad answers are rejected with a message naming the field and the rule, and nothing is written."""

import json
import re
from pathlib import Path

import pytest
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config

from hooks.pre_gen_project import YES_NO_FIELDS, parse_gpu, validate

from .conftest import ROOT

# (answers, field named in the message, words of the rule)
BAD_ANSWERS = [
    ({"project_slug": "My_Project"}, "project_slug", "lowercase DNS label"),
    ({"project_slug": "-lives"}, "project_slug", "starting and ending with a letter or digit"),
    ({"project_slug": "trailing-"}, "project_slug", "lowercase DNS label"),
    ({"project_slug": "a" * 31}, "project_slug", "at most 30 characters"),
    ({"runai_project": "Team_A"}, "runai_project", "DNS label"),
    ({"runai_project": "r" * 58}, "runai_project", "at most 57"),
    ({"gpu": "two"}, "gpu", "must be a plain decimal number"),
    ({"gpu": "1e-5"}, "gpu", "no exponent"),
    ({"gpu": "0.125"}, "gpu", "at most two decimals"),
    ({"gpu": "-1"}, "gpu", "must not be negative"),
    ({"gpu": "1.5"}, "gpu", "whole number"),
    ({"gpu": "nan"}, "gpu", "plain decimal number"),
    ({"cpu_request": "1 core"}, "cpu_request", "CPU quantity"),
    ({"cpu_request": "0"}, "cpu_request", "greater than zero"),
    ({"memory_request": "2GB"}, "memory_request", "memory quantity"),
    ({"memory_limit": "lots"}, "memory_limit", "memory quantity"),
    ({"cpu_request": "4", "cpu_limit": "2"}, "cpu_limit", "must not be below cpu_request"),
    ({"memory_request": "8Gi", "memory_limit": "4Gi"}, "memory_limit", "must not be below memory_request"),
    ({"active_deadline_seconds": "0"}, "active_deadline_seconds", "positive whole number"),
    ({"active_deadline_seconds": "1.5"}, "active_deadline_seconds", "positive whole number"),
    ({"ttl_seconds_after_finished": "60"}, "ttl_seconds_after_finished", "at least 300"),
    ({"ttl_seconds_after_finished": "-1"}, "ttl_seconds_after_finished", "at least 300"),
    ({"active_deadline_seconds": "\u00b2"}, "active_deadline_seconds", "positive whole number"),
    ({"max_preemptions": "-1"}, "max_preemptions", "0 or more"),
    ({"max_preemptions": "2.5"}, "max_preemptions", "whole number"),
    ({"max_preemptions": "many"}, "max_preemptions", "backoffLimit"),
    ({"max_preemptions": str(2**31)}, "max_preemptions", "whole number"),
    ({"termination_grace_period_seconds": "5"}, "termination_grace_period_seconds", "at least 10"),
    ({"termination_grace_period_seconds": ""}, "termination_grace_period_seconds", "uploads a checkpoint"),
    ({"image_repository": "Registry.example.com/Team/X"}, "image_repository", "lowercase"),
    ({"image_repository": "registry.example.com/team/x:v1"}, "image_repository", "without tag"),
    ({"image_repository": "not a repo"}, "image_repository", "without tag"),
    ({"base_image": "python"}, "base_image", "tag or digest"),
    ({"base_image": "python:latest"}, "base_image", "latest"),
    ({"base_image": "python:3.11 slim"}, "base_image", "image reference"),
    ({"base_image": "reg.io/py:3", "image_repository": "reg.io/py"}, "image_repository", "must differ"),
    ({"node_type": "dgx a100"}, "node_type", "label value"),
    ({"node_pool": "-pool"}, "node_pool", "label value"),
    ({"image_pull_secret": "Reg_Cred"}, "image_pull_secret", "Secret name"),
    ({"image_pull_secret": "creds", "credentials_secret": "creds"}, "credentials_secret", "must differ"),
    ({"gpu": "0.5", "scheduler_name": "default-scheduler"}, "gpu", "needs the Run:ai scheduler"),
    ({"scheduler_name": "Runai Scheduler"}, "scheduler_name", "DNS name"),
    ({"kube_context": "prod\n"}, "kube_context", "context name"),
    ({"gpu_memory": "4G"}, "gpu_memory", "whole number of MiB"),
    ({"gpu_memory": "0"}, "gpu_memory", "whole number of MiB"),
    ({"gpu_memory": "4096", "gpu": "0.5"}, "gpu", "must be 1 when gpu_memory is set"),
    ({"gpu": "1", "gpu_memory": "4096", "scheduler_name": "default-scheduler"}, "gpu_memory",
     "needs the Run:ai scheduler"),
    ({"gpu_devices": "0"}, "gpu_devices", "from 1 to 16"),
    ({"gpu_devices": "2"}, "gpu_devices", "unless gpu is a fraction or gpu_memory is set"),
    ({"gpu_devices": "17", "gpu": "0.5"}, "gpu_devices", "from 1 to 16"),
    ({"priority_class": "Build"}, "priority_class", "PriorityClass name"),
    ({"priority_class": ""}, "priority_class", "PriorityClass name"),
    ({"data_pvc": "My_Data"}, "data_pvc", "PersistentVolumeClaim name"),
    ({"data_mount_path": "data"}, "data_mount_path", "absolute path"),
    ({"data_mount_path": "/data/"}, "data_mount_path", "trailing '/'"),
    ({"data_mount_path": "/tmp/data"}, "data_mount_path", "the pod needs those itself"),
    ({"data_mount_path": "/opt"}, "data_mount_path", "the pod needs those itself"),
    ({"large_shm": "maybe"}, "large_shm", "must be yes or no"),
    ({"framework": "pytorch", "gpu": "2", "large_shm": False}, "large_shm",
     "must be yes when a PyTorch pod spans 2 GPUs"),
    ({"framework": "pytorch", "gpu": "0.5", "gpu_devices": "4", "large_shm": "no"}, "large_shm",
     "must be yes when a PyTorch pod spans 4 GPUs"),
    ({"nodes": "0"}, "nodes", "whole number from 1 to 256"),
    ({"nodes": "two"}, "nodes", "whole number from 1 to 256"),
    ({"framework": "pytorch", "nodes": "257"}, "nodes", "whole number from 1 to 256"),
    ({"nodes": "2"}, "nodes", "must be 1 with framework sklearn"),
    ({"framework": "pytorch", "gpu": "1", "nodes": "2", "project_slug": "3d-seg"}, "project_slug",
     "must start with a letter when nodes is 2"),
    ({"framework": "pytorch", "gpu": "0.5", "nodes": "2"}, "gpu", "whole number of GPUs (1 or more) when nodes is 2"),
    ({"framework": "pytorch", "gpu": "0", "nodes": "4"}, "gpu", "whole number of GPUs (1 or more) when nodes is 4"),
    ({"framework": "pytorch", "gpu": "1", "gpu_memory": "4096", "nodes": "2"}, "gpu", "GPU memory"),
    ({"framework": "pytorch", "gpu": "1", "nodes": "2", "scheduler_name": "default-scheduler"}, "scheduler_name",
     "batch-min-member"),
    ({"framework": "tensorflow"}, "framework", "must be one of sklearn, pytorch"),
    ({"project_name": "  "}, "project_name", "must not be empty"),
    ({"description": "nul\x00byte"}, "description", "NUL"),
]


def answers_with(**changes):
    """The defaults as cookiecutter renders them (for the first framework), with `changes`."""
    context = generate_context(str(ROOT / "cookiecutter.json"))
    answers = {key: value for key, value in prompt_for_config(context, no_input=True).items()
               if not key.startswith("_")}
    answers.update(changes)
    return answers


def _id(case):
    return "-".join(f"{key}={value!r}"[:40] for key, value in case[0].items())


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=_id)
def test_rule_names_field_and_reason(case):
    changes, field, rule = case
    problems = validate(answers_with(**changes))
    assert [p.field for p in problems] == [field], problems
    assert rule in problems[0].rule
    assert field in str(problems[0]) and repr(problems[0].value) in str(problems[0])


def test_defaults_are_valid():
    assert validate(answers_with()) == []


def test_all_problems_are_reported_at_once():
    problems = validate(answers_with(gpu="1.5", project_slug="Bad", ttl_seconds_after_finished="1"))
    assert {p.field for p in problems} == {"gpu", "project_slug", "ttl_seconds_after_finished"}


@pytest.mark.parametrize("raw, kind, count, fraction", [
    ("0", "none", 0, ""), ("0.0", "none", 0, ""), (".5", "fraction", 0, "0.5"), ("0.25", "fraction", 0, "0.25"),
    ("1", "whole", 1, ""), ("8.0", "whole", 8, ""), (" 2 ", "whole", 2, ""), ("0.05", "fraction", 0, "0.05"),
    ("0.10", "fraction", 0, "0.1"), ("1.", "whole", 1, ""),
])
def test_gpu_answers_map_like_runai_submit(raw, kind, count, fraction):
    gpu = parse_gpu(raw)
    assert (gpu.kind, gpu.count, gpu.fraction) == (kind, count, fraction)


# Cookiecutter 2.7 refuses a bad yes/no answer or choice itself, before the hook; older versions and replay
# files leave them to the hook.
THROUGH_COOKIECUTTER = [case for case in BAD_ANSWERS[::4] + BAD_ANSWERS[-5:-1]
                        if case[1] not in (*YES_NO_FIELDS, "framework")]


@pytest.mark.parametrize("case", THROUGH_COOKIECUTTER, ids=_id)
def test_cookiecutter_refuses_and_leaves_no_folder(tmp_path, capfd, case, cookiecutter_config):
    changes, field, rule = case
    with pytest.raises(FailedHookException):
        cookiecutter(str(ROOT), no_input=True, extra_context=changes, output_dir=str(tmp_path),
                     config_file=cookiecutter_config)
    err = capfd.readouterr().err
    assert field in err and rule in err and "nothing was generated" in err
    assert list(tmp_path.iterdir()) == []
    assert f"--replay-file {saved_answers(err)}" in err, "the typed answers are kept for the rerun"


def test_a_replay_file_with_an_unknown_framework_is_refused(tmp_path, capfd, cookiecutter_config):
    """A replay file skips cookiecutter's own choice check; the hook still names the field and the choices."""
    replay = tmp_path / "answers.json"
    replay.write_text(json.dumps({"cookiecutter": answers_with(framework="tensorflow")}))
    with pytest.raises(FailedHookException):
        cookiecutter(str(ROOT), replay=str(replay), output_dir=str(tmp_path / "out"), config_file=cookiecutter_config)
    err = capfd.readouterr().err
    assert "framework = 'tensorflow': must be one of sklearn, pytorch" in err
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []


def saved_answers(err: str) -> Path:
    return Path(re.search(r"Your answers are saved in (\S+)\. ", err).group(1))


def test_a_rejected_answer_keeps_the_others_for_the_rerun(tmp_path, capfd, cookiecutter_config):
    """Fix the one bad field in the saved file and rerun the printed command: every other answer is kept."""
    typed = {"gpu": "1.5", "runai_project": "vision", "cpu_request": "1500m", "node_type": "dgx-a100"}
    with pytest.raises(FailedHookException):
        cookiecutter(str(ROOT), no_input=True, extra_context=typed, output_dir=str(tmp_path / "out"),
                     config_file=cookiecutter_config)
    err = capfd.readouterr().err
    saved = saved_answers(err)
    command = err.strip().splitlines()[-1].split()
    assert command[:2] == ["cookiecutter", str(ROOT)] and command[-2:] == ["-o", str(tmp_path / "out")]
    replay = json.loads(saved.read_text())
    replay["cookiecutter"]["gpu"] = "2"
    saved.write_text(json.dumps(replay))
    project = Path(cookiecutter(str(ROOT), replay=str(saved), output_dir=str(tmp_path / "out"),
                                config_file=cookiecutter_config))
    saved.unlink()
    answers = json.loads((project / ".runai-mlflow-answers.json").read_text())["cookiecutter"]
    assert {k: answers[k] for k in typed} == {**typed, "gpu": "2"}


def test_answers_file_regenerates_the_project(tmp_path, bake, cookiecutter_config):
    """.runai-mlflow-answers.json is a replay file: --replay-file regenerates the same project."""
    first = bake(gpu="0.5", runai_project="vision", large_shm=True).project_path
    again = Path(cookiecutter(str(ROOT), replay=str(first / ".runai-mlflow-answers.json"),
                              output_dir=str(tmp_path / "again"), config_file=cookiecutter_config))
    for path in first.rglob("*"):
        if path.is_file():
            assert (again / path.relative_to(first)).read_bytes() == path.read_bytes(), path.name


def test_a_name_starting_with_a_digit_gives_a_valid_default_slug(tmp_path, cookiecutter_config):
    """Kubernetes names, image names and MLflow all accept a leading digit ("3D Segmentation")."""
    project = cookiecutter(str(ROOT), no_input=True, extra_context={"project_name": "3D Segmentation"},
                           output_dir=str(tmp_path), config_file=cookiecutter_config)
    assert project.endswith("/3d-segmentation")
