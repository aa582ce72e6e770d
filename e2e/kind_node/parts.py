"""The upstream parts of the kind node image and where each comes from.

Differences from kind's own ``kindest/node`` (README, "kind here"):
- Debian bookworm's systemd, containerd 1.6, runc and CNI plugins instead of kind's builds of them;
  no fuse-overlayfs (rootless only), nfs-common or open-iscsi (storage drivers the suite never uses).
- No kindnetd (its module is refused by the Go proxy): the node carries a bridge CNI configuration,
  so the cluster is created with ``disableDefaultCNI`` and has one node.
- etcd and CoreDNS are the versions the local cluster builds, not kubeadm's defaults:
  ``KUBEADM_CONFIG_PATCH`` tells kubeadm their tags. CoreDNS is built with the plugins of kubeadm's Corefile.
- containerd is told ``restrict_oom_score_adj`` where root lacks CAP_SYS_RESOURCE (as on this machine).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

from local_cluster.binaries import _go_build, _version_ldflags, ensure_binaries
from local_cluster.images import debootstrap_rootfs
from local_cluster.progress import ClusterError, step
from local_cluster.settings import (
    COREDNS_VERSION,
    ETCD_VERSION,
    GOMOD_DIR,
    KUBERNETES_VERSION,
    PAUSE_VERSION,
    ClusterSettings,
)

KIND_VERSION = "v0.33.0"
REGISTRY_VERSION = "v3.0.0"  # distribution, the registry inside Docker Hub's registry:3
KIND_MODULE = "sigs.k8s.io/kind"
REGISTRY_PACKAGE = "github.com/distribution/distribution/v3/cmd/registry"
VERSIONS = (KIND_VERSION, REGISTRY_VERSION, KUBERNETES_VERSION, ETCD_VERSION, COREDNS_VERSION, PAUSE_VERSION)
NODE_COMMANDS = ("kubeadm", "kube-proxy")  # beside the local cluster's Kubernetes commands

# kind's base image packages (images/base/Dockerfile), the ones Debian bookworm has and the node uses,
# plus containerd, runc and the CNI plugins that kind builds itself.
ROOTFS_PACKAGES = ["systemd", "conntrack", "iptables", "nftables", "iproute2", "ethtool", "util-linux", "mount",
                   "kmod", "libseccomp2", "pigz", "e2fsprogs", "bash", "ca-certificates", "curl", "jq", "procps",
                   "containerd", "runc", "containernetworking-plugins"]
ROOTFS_NAME = "kind-node-bookworm"

IMAGE_REPOSITORY = "registry.k8s.io"  # kubeadm's default: the node's images carry the names kubeadm asks for
ETCD_IMAGE_TAG = f"{ETCD_VERSION.lstrip('v')}-0"
KUBEADM_CONFIG_PATCH = f"""\
kind: ClusterConfiguration
etcd:
  local:
    imageTag: {ETCD_IMAGE_TAG}
dns:
  imageTag: {COREDNS_VERSION}
"""


def node_images() -> dict[str, str]:
    """Image name in the node's containerd -> what runs in it."""
    return {
        f"{IMAGE_REPOSITORY}/kube-apiserver:{KUBERNETES_VERSION}": "kube-apiserver",
        f"{IMAGE_REPOSITORY}/kube-controller-manager:{KUBERNETES_VERSION}": "kube-controller-manager",
        f"{IMAGE_REPOSITORY}/kube-scheduler:{KUBERNETES_VERSION}": "kube-scheduler",
        f"{IMAGE_REPOSITORY}/kube-proxy:{KUBERNETES_VERSION}": "kube-proxy",
        f"{IMAGE_REPOSITORY}/etcd:{ETCD_IMAGE_TAG}": "etcd",
        f"{IMAGE_REPOSITORY}/coredns/coredns:{COREDNS_VERSION}": "coredns",
        f"{IMAGE_REPOSITORY}/pause:{PAUSE_VERSION}": "pause",
    }


def _go() -> str:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise ClusterError("Go is not installed; it is needed once to build kind and the node's binaries")
    return go


def _go_installed(settings: ClusterSettings, package: str, version: str, name: str) -> Path:
    """`go install package@version` once into bin/<name>-<version>/: the module's own go.mod and go.sum pin it."""
    binary = settings.bin_dir / f"{name}-{version}" / package.rsplit("/", 1)[-1]
    if binary.exists():
        return binary
    log = settings.cache_dir / "build-logs" / f"{name}-{version}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.parent.with_name(binary.parent.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOBIN": str(partial), "GOFLAGS": ""}
    with step(f"go install {package}@{version}"), open(log, "w") as out:
        result = subprocess.run([_go(), "install", "-trimpath", "-ldflags", "-s -w", f"{package}@{version}"],
                                env=env, stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ClusterError(f"go install {package}@{version} failed", log)
        shutil.rmtree(binary.parent, ignore_errors=True)
        partial.rename(binary.parent)
    return binary


def kind_binary(settings: ClusterSettings) -> Path:
    return _go_installed(settings, KIND_MODULE, KIND_VERSION, "kind")


def kubectl_binary(settings: ClusterSettings) -> Path:
    ensure_binaries(settings)
    return settings.kubernetes_bin("kubectl")


def registry_binary(settings: ClusterSettings) -> Path:
    return _go_installed(settings, REGISTRY_PACKAGE, REGISTRY_VERSION, "distribution")


def kind_base_files() -> Path:
    """kind's images/base/files from its Go module: entrypoint, systemd units, containerd configuration."""
    result = subprocess.run([_go(), "mod", "download", "-json", f"{KIND_MODULE}@{KIND_VERSION}"],
                            capture_output=True, text=True, env={**os.environ, "GOFLAGS": ""})
    if result.returncode != 0:
        raise ClusterError(f"go mod download {KIND_MODULE}@{KIND_VERSION} failed: {result.stdout}{result.stderr}")
    files = Path(json.loads(result.stdout)["Dir"]) / "images" / "base" / "files"
    if not (files / "usr/local/bin/entrypoint").exists():
        raise ClusterError(f"{files} has no usr/local/bin/entrypoint: kind {KIND_VERSION}'s layout changed")
    return files


def node_binaries(settings: ClusterSettings) -> Path:
    """kubeadm and kube-proxy from the local cluster's Kubernetes module, beside its other commands."""
    ensure_binaries(settings)
    out_dir = settings.bin_dir / f"kubernetes-{KUBERNETES_VERSION}-node"
    if not all((out_dir / name).exists() for name in NODE_COMMANDS):
        with step(f"go build kubeadm and kube-proxy {KUBERNETES_VERSION}"):
            _go_build(GOMOD_DIR / "kubernetes", out_dir, [f"k8s.io/kubernetes/cmd/{c}" for c in NODE_COMMANDS],
                      _version_ldflags(KUBERNETES_VERSION), settings.cache_dir / "build-logs" / "kubernetes-node.log")
    return out_dir


def content_digest(*texts: bytes) -> str:
    """A cache key from what a part is made of, so that changing it builds it again."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(hashlib.sha256(text).digest())
    return digest.hexdigest()[:12]


def coredns_for_kubeadm(settings: ClusterSettings) -> Path:
    sources = sorted((GOMOD_DIR / "coredns").rglob("*.go")) + [GOMOD_DIR / "coredns" / "go.sum"]
    key = content_digest(*(path.read_bytes() for path in sources))
    binary = settings.bin_dir / f"coredns-{COREDNS_VERSION}-kubeadm-{key}" / "coredns"
    if not binary.exists():
        with step(f"go build CoreDNS {COREDNS_VERSION} with kubeadm's Corefile plugins"):
            _go_build(GOMOD_DIR / "coredns", binary.parent, ["./kubeadm/coredns"], "-s -w",
                      settings.cache_dir / "build-logs" / "coredns-kubeadm.log")
    return binary


def node_rootfs(settings: ClusterSettings) -> Path:
    name = f"{ROOTFS_NAME}-{content_digest(' '.join(ROOTFS_PACKAGES).encode())}"
    return debootstrap_rootfs(settings, name, ROOTFS_PACKAGES, "usr/bin/containerd")
