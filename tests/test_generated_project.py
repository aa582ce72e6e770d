"""The generated project's own tests pass: train.py logs metrics and a model to a local store."""

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{}, {"gpu": "0.5", "description": 'quotes "and" colons: # hash'}],
                         ids=["defaults", "fraction"])
def test_generated_project_tests_pass(bake, variant):
    result = bake(**variant)
    assert result.exception is None, result.exception  # never run pytest with cwd=None (the repo itself)
    project = result.project_path
    assert (project / "tests" / "test_train.py").is_file()
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                         cwd=project, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "8 passed" in run.stdout
