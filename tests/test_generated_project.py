"""The generated project's own tests pass: train.py logs metrics and a model to a local store."""

import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{}, {"gpu": "0.5", "description": 'quotes "and" {{ braces }}'}],
                         ids=["defaults", "fraction"])
def test_generated_project_tests_pass(bake, variant):
    project = bake(**variant).project_path
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
                            cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "4 passed" in result.stdout
