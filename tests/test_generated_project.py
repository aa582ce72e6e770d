"""The generated project's own tests pass: train.py logs metrics and a model to a local store, and resumes.

They run in a venv with the project's requirements-dev.txt (kube.venvs, cached), as a user runs
`make test`: for pytorch that is torch itself, on this machine's CPU.
"""

import subprocess

import pytest
from kube.venvs import project_venv


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{}, {"gpu": "0.5", "description": 'quotes "and" colons: # hash'},
                                     {"framework": "pytorch", "gpu": "0.5"}],
                         ids=["defaults", "fraction", "pytorch"])
def test_generated_project_tests_pass(bake, variant):
    result = bake(**variant)
    assert result.exception is None, result.exception  # never run pytest with cwd=None (the repo itself)
    project = result.project_path
    assert (project / "tests" / "test_train.py").is_file()
    python = project_venv(project) / "bin" / "python"
    run = subprocess.run(["make", "--no-print-directory", "test", f"PYTHON={python}"],
                         cwd=project, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    expected = 11 if variant.get("framework") == "pytorch" else 10  # pytorch checks one more bad parameter
    assert f"{expected} passed" in run.stdout
