"""The kind path (what users' CI runs) matches pytest-kind-ng's API and kind's local-registry convention, and
takes upstream's images wherever they can be pulled.

These check the contract without a cluster, against a `docker` on PATH that answers as the test says; the kind
path itself runs in CI (`make e2e CLUSTER=kind`, README: "kind where kindest/node cannot be pulled").
"""

import inspect
import os
import re

import pytest
import yaml
from kind_node import KIND_VERSION, KUBEADM_CONFIG_PATCH
from suite import kind_target, targets


def fake_docker(tmp_path, monkeypatch, script: str) -> None:
    """`docker` answering from a shell `case` on its arguments; anything not listed fails like a missing image."""
    docker = tmp_path / "bin" / "docker"
    docker.parent.mkdir()
    docker.write_text(f"#!/bin/sh\ncase \"$*\" in\n{script}\n*) echo \"docker: Error response from daemon: pull "
                      "access denied for $*\" >&2; exit 125;;\nesac\n")
    docker.chmod(0o755)
    monkeypatch.setenv("PATH", f"{docker.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("KIND_NODE_IMAGE", raising=False)


def test_kind_config_points_containerd_at_the_registry_hosts_dir():
    config = yaml.safe_load(kind_target.KindImages(node=kind_target.KIND_NODE_IMAGE, registry="registry:3",
                                                   built_here=False).config())
    assert config["kind"] == "Cluster" and config["apiVersion"] == "kind.x-k8s.io/v1alpha4"
    [patch] = config["containerdConfigPatches"]
    assert 'config_path = "/etc/containerd/certs.d"' in patch
    assert "networking" not in config and "kubeadmConfigPatches" not in config, "upstream's node keeps kind's CNI"


def test_a_node_image_built_here_gets_its_cni_and_kubeadms_image_tags():
    config = yaml.safe_load(kind_target.KindImages(node="runai-mlflow/kind-node:x", registry="r",
                                                   built_here=True).config())
    assert config["networking"] == {"disableDefaultCNI": True}
    [patch] = config["kubeadmConfigPatches"]
    assert yaml.safe_load(patch) == yaml.safe_load(KUBEADM_CONFIG_PATCH)


def test_kind_and_its_node_image_are_pinned_by_version_and_digest():
    """The node image of the Kubernetes minor the local cluster runs, by the digest kind's release notes list."""
    assert re.fullmatch(r"v0\.\d+\.\d+", KIND_VERSION)
    match = re.fullmatch(r"kindest/node:(v1\.34\.\d+)@sha256:[0-9a-f]{64}", kind_target.KIND_NODE_IMAGE)
    assert match, kind_target.KIND_NODE_IMAGE
    assert kind_target.KIND_KUBECTL_VERSION == match.group(1), "kubectl matches the node's Kubernetes"


def test_pytest_kind_ng_api_is_what_the_target_uses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # KindCluster keeps its binaries and kubeconfig under ./.pytest-kind
    os.environ.setdefault("KIND_VERSION", KIND_VERSION)
    from pytest_kind import KindCluster

    parameters = inspect.signature(KindCluster).parameters
    assert {"name", "kubeconfig", "image", "kind_path", "kubectl_path"} <= set(parameters)
    assert "config_file" in inspect.signature(KindCluster.create).parameters
    cluster = KindCluster(kind_target.KIND_CLUSTER_NAME, image=kind_target.KIND_NODE_IMAGE)
    for attribute in ("kind_path", "kubeconfig_path", "name"):
        assert hasattr(cluster, attribute)
    for method in ("kubectl", "delete", "load_docker_image"):
        assert callable(getattr(cluster, method))
    assert cluster.kubeconfig_path.is_relative_to(tmp_path) or not cluster.kubeconfig_path.is_absolute()


def test_images_that_can_be_pulled_are_upstreams_and_nothing_is_built(tmp_path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, "info) exit 0;;\n'image inspect '*) exit 1;;\n'pull '*) exit 0;;")
    images = kind_target.choose_images()
    assert (images.node, images.registry, images.built_here) == (kind_target.KIND_NODE_IMAGE, "registry:3", False)
    assert images.kind_path is None and images.kubectl_path is None, "pytest-kind-ng downloads kind and kubectl"
    assert images.base_image == "python:3.11-slim" and images.docker_build_args == ""


def test_images_that_cannot_be_pulled_are_built_only_by_root_and_the_pulls_reason_is_said(tmp_path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, "info) exit 0;;\n'image inspect '*) exit 1;;")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(targets.TargetSetupError) as raised:
        kind_target.choose_images()
    message = str(raised.value)
    assert f"{kind_target.KIND_NODE_IMAGE} (docker: Error response from daemon: pull access denied" in message
    assert "registry:3 (docker: Error response" in message and "needs root" in message


def test_a_failed_kind_setup_is_one_error_with_the_tools_words_and_the_way_out(tmp_path, monkeypatch):
    """Docker's own reason and the way out, not a CalledProcessError traceback."""
    monkeypatch.chdir(tmp_path)
    fake_docker(tmp_path, monkeypatch, "info) exit 0;;\n'image inspect '*) exit 0;;\n'inspect '*) exit 0;;")
    with pytest.raises(targets.TargetSetupError) as raised:
        targets.select_target("kind", tmp_path)
    message = str(raised.value)
    assert message.startswith("starting kind's local registry (kind-registry, image registry:3) failed: `docker run")
    assert "exited 125: docker: Error response from daemon: pull access denied" in message
    assert "way out:" in message and "make e2e CLUSTER=local" in message


def test_without_docker_the_kind_target_says_so_and_starts_nothing(tmp_path, monkeypatch):
    fake_docker(tmp_path, monkeypatch, "info) echo 'Cannot connect to the Docker daemon' >&2; exit 1;;")
    with pytest.raises(targets.TargetSetupError) as raised:
        targets.select_target("kind", tmp_path)
    assert "Docker does not answer (`docker info`: Cannot connect to the Docker daemon)" in str(raised.value)
