"""The kind path (what users' CI runs) matches pytest-kind-ng's API and kind's local-registry convention.

kind cannot run where images cannot be pulled, so this checks the contract without a cluster.
"""

import inspect
import os
import re

import pytest
import yaml
from suite import targets


def test_kind_config_points_containerd_at_the_registry_hosts_dir():
    config = yaml.safe_load(targets.KIND_CONFIG)
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [patch] = config["containerdConfigPatches"]
    assert 'config_path = "/etc/containerd/certs.d"' in patch


def test_kind_and_its_node_image_are_pinned_by_version_and_digest():
    """The node image of the Kubernetes minor the local cluster runs, by the digest kind's release notes list."""
    assert re.fullmatch(r"v0\.\d+\.\d+", targets.KIND_VERSION)
    match = re.fullmatch(r"kindest/node:(v1\.34\.\d+)@sha256:[0-9a-f]{64}", targets.KIND_NODE_IMAGE)
    assert match, targets.KIND_NODE_IMAGE
    assert targets.KIND_KUBECTL_VERSION == match.group(1), "kubectl matches the node's Kubernetes"


def test_pytest_kind_ng_api_is_what_the_target_uses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # KindCluster keeps its binaries and kubeconfig under ./.pytest-kind
    os.environ.setdefault("KIND_VERSION", targets.KIND_VERSION)
    from pytest_kind import KindCluster

    parameters = inspect.signature(KindCluster).parameters
    assert {"name", "kubeconfig", "image"} <= set(parameters)
    assert "config_file" in inspect.signature(KindCluster.create).parameters
    cluster = KindCluster(targets.KIND_CLUSTER_NAME, image=targets.KIND_NODE_IMAGE)
    for attribute in ("kind_path", "kubeconfig_path", "name"):
        assert hasattr(cluster, attribute)
    for method in ("kubectl", "delete", "load_docker_image"):
        assert callable(getattr(cluster, method))
    assert cluster.kubeconfig_path.is_relative_to(tmp_path) or not cluster.kubeconfig_path.is_absolute()


def test_a_failed_kind_setup_is_one_error_with_the_tools_words_and_the_way_out(tmp_path, monkeypatch):
    """Where images cannot be pulled, docker's own reason and CLUSTER=local, not a CalledProcessError traceback."""
    monkeypatch.chdir(tmp_path)
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text("#!/bin/sh\n[ \"$1\" = inspect ] && exit 1\n"
                      "echo \"docker: Error response from daemon: pull access denied for registry\" >&2\nexit 125\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}:{os.environ['PATH']}")
    with pytest.raises(targets.TargetSetupError) as raised:
        targets.select_target("kind", tmp_path)
    message = str(raised.value)
    assert message.startswith("starting kind's local registry (kind-registry, image registry:3) failed: `docker run")
    assert "exited 125: docker: Error response from daemon: pull access denied" in message
    assert "way out:" in message and "make e2e CLUSTER=local" in message
