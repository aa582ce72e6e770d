"""Users run `cookiecutter gh:org/runai-mlflow` with whatever cookiecutter they have (README: supported versions).

The oldest supported cookiecutter (2.1, the first with local extensions) must write exactly what the
pinned one writes; 1.x is refused before any question, leaving no folder.
"""

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from kube.venvs import cached_venv

from .conftest import ROOT

OLDEST_SUPPORTED = "2.1.1"
TOO_OLD = "1.7.3"
ANSWERS = ["gpu=0.5", "large_shm=True", "workload_type=interactive", "max_preemptions=0"]


def cookiecutter_of_version(version: str) -> Path:
    """A venv with that cookiecutter, cached outside the repository like the other builds."""
    venv = cached_venv(f"cookiecutter-{version}", version, f"cookiecutter=={version}", say=lambda _: None)
    return venv / "bin" / "cookiecutter"


def generate(cookiecutter: Path | str, out: Path, *answers: str) -> subprocess.CompletedProcess:
    command = [str(cookiecutter)] if isinstance(cookiecutter, Path) else [sys.executable, "-m", "cookiecutter"]
    return subprocess.run([*command, str(ROOT), "--no-input", "-o", str(out), *answers], capture_output=True,
                          text=True, env={"HOME": str(out.parent), "PATH": "/usr/bin:/bin"})


def same_tree(left: Path, right: Path) -> list[str]:
    comparison = filecmp.dircmp(left, right)
    differ = comparison.left_only + comparison.right_only + comparison.diff_files
    for name in comparison.common_dirs:
        differ += same_tree(left / name, right / name)
    return differ


@pytest.mark.slow
@pytest.mark.parametrize("answers", [[], ANSWERS, ["large_shm=False"]], ids=["defaults", "bool-and-choices", "no-shm"])
def test_oldest_supported_cookiecutter_writes_the_same_project(tmp_path, answers):
    oldest, pinned = tmp_path / "oldest", tmp_path / "pinned"
    result = generate(cookiecutter_of_version(OLDEST_SUPPORTED), oldest, *answers)
    assert result.returncode == 0, result.stderr[-2000:]
    assert generate("pinned", pinned, *answers).returncode == 0
    assert same_tree(oldest / "diabetes-elasticnet", pinned / "diabetes-elasticnet") == []


@pytest.mark.slow
def test_older_cookiecutter_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    result = generate(cookiecutter_of_version(TOO_OLD), out)
    assert result.returncode != 0
    assert "Unable to load extension: No module named 'local_extensions'" in result.stdout + result.stderr
    assert not out.exists() or list(out.iterdir()) == []
