"""The kind path (what users' CI runs) matches pytest-kind-ng's API and kind's local-registry convention.

kind cannot run where images cannot be pulled, so this checks the contract without a cluster.
"""

import inspect
import os

import yaml
from suite import targets


def test_kind_config_points_containerd_at_the_registry_hosts_dir():
    config = yaml.safe_load(targets.KIND_CONFIG)
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [patch] = config["containerdConfigPatches"]
    assert 'config_path = "/etc/containerd/certs.d"' in patch


def test_pinned_versions_are_explicit():
    assert targets.KIND_VERSION.startswith("v0.") and targets.KIND_NODE_IMAGE.startswith("kindest/node:v1.34")


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
