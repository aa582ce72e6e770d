"""`make e2e CLUSTER=kind` leaves nothing running: run by `make cluster-teardown-test`, before the cluster goes down.

Outside e2e/suite, so that the suite itself (which runs while its kind cluster is up) never collects it."""

import subprocess

import pytest
from suite.kind_target import KIND_CLUSTER_NAME, KIND_REGISTRY_NAME


def names(*filters: str) -> list[str]:
    argv = ["docker", "ps", "-a", "--format", "{{.Names}}"] + [arg for f in filters for arg in ("--filter", f)]
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()


def test_the_kind_e2e_run_left_no_kind_cluster_or_registry():
    """The suite deletes the kind cluster and the registry container it started (E2E_KEEP_CLUSTER=1 keeps them on
    purpose); what is left would start again with the next Docker (--restart=always), holding memory and ports."""
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("Docker is not running: no kind cluster can be left")
    left = names(f"label=io.x-k8s.kind.cluster={KIND_CLUSTER_NAME}") + names(f"name=^{KIND_REGISTRY_NAME}$")
    assert left == [], f"left by the kind e2e run: {left}"
