"""Pins that exist to work around something upstream must go as soon as upstream no longer needs them."""

import inspect
import re
from importlib.metadata import version

import mlflow.projects.kubernetes

from .conftest import ROOT

TEMPLATE = ROOT / "{{cookiecutter.project_slug}}"


def pinned(requirements: str, package: str) -> str:
    return re.search(rf"^{re.escape(package)}(\[[a-z,]+\])?==(\S+)$", requirements, re.M).group(2)


def test_kubernetes_client_pin_is_still_needed():
    """Tripwire. kubernetes 37 (pydantic models) rejects the pretty=True that MLflow's Kubernetes backend passes
    to create_namespaced_job, so pyproject.toml and the template pin kubernetes==36.0.3. When MLflow stops
    passing it, this fails: lift both pins (and remove this test)."""
    assert "pretty=True" in inspect.getsource(mlflow.projects.kubernetes), (
        "MLflow's Kubernetes backend no longer passes pretty=True: lift the kubernetes==36.0.3 pins")
    assert version("kubernetes").split(".")[0] == "36"


def test_the_template_pins_the_mlflow_the_tests_use():
    """The pod's mlflow-skinny, the submitter's mlflow and the one the contract tests render with are one version."""
    dev = (TEMPLATE / "requirements-dev.txt").read_text()
    pod = (TEMPLATE / "requirements.txt").read_text()
    assert pinned(dev, "mlflow") == pinned(pod, "mlflow-skinny") == version("mlflow")
    assert pinned(dev, "kubernetes") == version("kubernetes")
