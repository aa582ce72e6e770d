"""The node image carries what kubeadm and kind's containerd ask for: checked against kubeadm's own list.

Builds kubeadm (cached) where it is missing; runs in `make cluster-test`."""

from __future__ import annotations

import re
import subprocess

import pytest
from kind_node import parts
from local_cluster.settings import KUBERNETES_VERSION, ClusterSettings


@pytest.fixture(scope="module")
def kubeadm() -> str:
    return str(parts.node_binaries(ClusterSettings()) / "kubeadm")


def test_every_image_kubeadm_asks_for_is_in_the_node(kubeadm, tmp_path):
    """kubeadm's own list for this version, with the patch the kind target gives it: a pull on the node would fail."""
    config = tmp_path / "kubeadm.yaml"
    config.write_text(f"apiVersion: kubeadm.k8s.io/v1beta4\nkubernetesVersion: {KUBERNETES_VERSION}\n"
                      + parts.KUBEADM_CONFIG_PATCH)
    listed = subprocess.run([kubeadm, "config", "images", "list", "--config", str(config)], check=True,
                            capture_output=True, text=True).stdout.split()
    in_node = set(parts.node_images())
    # kubeadm also names its own pause version; the kubelet's sandboxes use containerd's (the next test).
    missing = [image for image in listed if image not in in_node and "/pause:" not in image]
    assert listed and not missing, f"kubeadm asks for images the node image lacks: {missing}"


def test_the_sandbox_image_of_kinds_containerd_config_is_in_the_node():
    config = (parts.kind_base_files() / "etc/containerd/config.toml").read_text()
    sandbox = re.search(r'sandbox_image = "([^"]+)"', config)
    assert sandbox, "kind's containerd config names no sandbox_image"
    assert sandbox.group(1) in parts.node_images()
