"""The generated project's own tests pass: train.py logs metrics and a model to a local store, and resumes.

They run in a venv with the project's requirements-dev.txt (kube.venvs, cached), as a user runs
`make test`: for pytorch that is torch itself, on this machine's CPU. Each project's suite runs in three
shards, selected with pytest's own -k through PYTEST_ADDOPTS, so that `make test`'s workers run them side
by side; each shard's passed and deselected counts together prove that they cover the whole suite.
"""

import os
import subprocess

import pytest
from kube.venvs import project_venv

VARIANTS = {"defaults": {}, "fraction": {"gpu": "0.5", "description": 'quotes "and" colons: # hash'},
            "pytorch": {"framework": "pytorch", "gpu": "0.5"}}
# The two tests that train, stop midway and resume are the longest: one shard each.
SHARDS = {"sigterm": "sigterm", "damaged": "damaged", "rest": "not (sigterm or damaged)"}


def suite_size(variant: dict) -> int:
    return 11 if variant.get("framework") == "pytorch" else 10  # pytorch checks one more bad parameter


@pytest.mark.slow
@pytest.mark.parametrize("shard", SHARDS)
@pytest.mark.parametrize("name", VARIANTS)
def test_generated_project_tests_pass(bake, name, shard):
    variant = VARIANTS[name]
    result = bake(**variant)
    assert result.exception is None, result.exception  # never run pytest with cwd=None (the repo itself)
    project = result.project_path
    assert (project / "tests" / "test_train.py").is_file()
    python = project_venv(project) / "bin" / "python"
    env = {**os.environ, "PYTEST_ADDOPTS": f"-k '{SHARDS[shard]}'"}
    run = subprocess.run(["make", "--no-print-directory", "test", f"PYTHON={python}"],
                         cwd=project, capture_output=True, text=True, timeout=900, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    selected = suite_size(variant) - 2 if shard == "rest" else 1
    assert f"{selected} passed, {suite_size(variant) - selected} deselected" in run.stdout, run.stdout[-500:]
