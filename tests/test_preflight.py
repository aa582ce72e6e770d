"""`make run` refuses to submit (before MLflow creates a run) when the environment cannot work.

A stand-in `docker` on PATH decides whether Docker looks up; Kubernetes is a kubeconfig that does not exist.
"""

import os
import subprocess
import sys

import pytest


@pytest.fixture
def project(bake):
    return bake().project_path


def preflight(project, tmp_path, docker_ok: bool, env_image_built: bool = True, python: str = sys.executable,
              **env):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    docker = bin_dir / "docker"
    down = "echo 'Cannot connect to the Docker daemon' >&2\nexit 1\n"
    images = "exit 0" if env_image_built else "echo 'Error: No such image' >&2; exit 1"
    docker.write_text("#!/bin/sh\n" + (f'[ "$1" = image ] && {{ {images}; }}\nexit 0\n' if docker_ok else down))
    docker.chmod(0o755)
    clean = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI") and k != "KUBECONFIG"}
    full_env = {**clean, "PATH": f"{bin_dir}:{os.environ['PATH']}", "KUBECONFIG": str(tmp_path / "missing"), **env}
    return subprocess.run([python, "preflight.py"], cwd=project, env=full_env, capture_output=True, text=True)


GOOD = {"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "KUBE_MLFLOW_TRACKING_URI": "http://10.0.0.5:5000"}


@pytest.mark.parametrize("env, says", [
    ({}, "MLFLOW_TRACKING_URI is ''"),
    ({**GOOD, "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}, "sqlite store means nothing inside the pod"),
    ({**GOOD, "KUBE_MLFLOW_TRACKING_URI": ""}, "KUBE_MLFLOW_TRACKING_URI is ''"),
    ({**GOOD, "KUBE_MLFLOW_TRACKING_URI": "file:///tmp/mlruns"}, "as seen from pods"),
], ids=["no-tracking-uri", "sqlite-tracking-uri", "no-pod-uri", "file-pod-uri"])
def test_refuses_tracking_uris_pods_cannot_use(project, tmp_path, env, says):
    result = preflight(project, tmp_path, docker_ok=True, **env)
    assert result.returncode == 2 and says in result.stderr, result.stderr
    assert "no MLflow run was created" in result.stderr


def test_refuses_when_docker_is_not_running(project, tmp_path):
    result = preflight(project, tmp_path, docker_ok=False, **GOOD)
    assert result.returncode == 2 and "Docker is not running (Cannot connect to the Docker daemon)" in result.stderr


def test_refuses_when_the_environment_image_was_not_built(project, tmp_path):
    """MLflow would create the run, then fail to build FROM a missing image and leave the run RUNNING."""
    result = preflight(project, tmp_path, docker_ok=True, env_image_built=False, **GOOD)
    assert result.returncode == 2, result.stderr
    assert f"registry.example.com/team-a/{project.name}-env:0.1.0 is not on this machine" in result.stderr
    assert "make image" in result.stderr


def test_says_what_to_install_when_the_submitting_tools_are_missing(project, tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    result = preflight(project, tmp_path, docker_ok=True, python=str(tmp_path / "bare" / "bin" / "python"), **GOOD)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert "Python packages missing here: mlflow, kubernetes, yaml" in result.stderr
    assert "pip install -r requirements-dev.txt" in result.stderr


def test_refuses_to_ship_local_environments_and_stores_in_the_image(project, tmp_path):
    (project / ".venv" / "lib").mkdir(parents=True)
    (project / ".venv" / "lib" / "big.so").write_bytes(b"x" * 3 * 2**20)
    (project / "mlflow.db").write_bytes(b"")
    result = preflight(project, tmp_path, docker_ok=True, **GOOD)
    assert result.returncode == 2, result.stderr
    assert "copy these into the image and push them: .venv (3.0 MiB), mlflow.db (0.0 MiB)" in result.stderr
    accepted = preflight(project, tmp_path, docker_ok=True, PREFLIGHT_ACCEPT_FOLDER="1", **GOOD)
    assert "copy these into the image" not in accepted.stderr, "the override ships them knowingly"


def test_refuses_a_project_folder_over_the_size_limit(project, tmp_path):
    with open(project / "data.bin", "wb") as data:
        data.truncate(60 * 2**20)  # sparse: the size MLflow would copy, without writing it
    result = preflight(project, tmp_path, docker_ok=True, **GOOD)
    assert result.returncode == 2, result.stderr
    assert "(limit 50.0 MiB)" in result.stderr and "data.bin (60.0 MiB)" in result.stderr


def test_make_image_builds_for_the_nodes_platform(project):
    """Images built on Apple-silicon laptops would be arm64 and fail on amd64 GPU nodes."""
    default = subprocess.run(["make", "-n", "image"], cwd=project, capture_output=True, text=True).stdout
    assert "docker build --platform linux/amd64 " in default
    chosen = subprocess.run(["make", "-n", "image", "PLATFORM=linux/arm64"], cwd=project, capture_output=True,
                            text=True).stdout
    assert "docker build --platform linux/arm64 " in chosen


def test_refuses_when_the_kube_context_cannot_be_loaded(project, tmp_path):
    result = preflight(project, tmp_path, docker_ok=True, **GOOD)
    assert result.returncode == 2 and "Cannot load the current context from your kubeconfig" in result.stderr


def test_make_run_stops_at_preflight(project, tmp_path):
    """make run never reaches `mlflow run` when preflight refuses."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    marker = tmp_path / "mlflow-was-called"
    (bin_dir / "mlflow").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (bin_dir / "mlflow").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.endswith("TRACKING_URI")}
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    result = subprocess.run(["make", "run", f"PYTHON={sys.executable}"], cwd=project, env=env,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "preflight:" in result.stderr
    assert not marker.exists()
