"""Where the local cluster keeps things, which versions it runs, and which addresses it uses.

Binaries, images and the node's image store are caches (kept across clusters); everything under
``state_dir`` belongs to one cluster and is removed by ``down``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from kube.paths import cache_root

KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.16"
PAUSE_VERSION = "3.10"
COREDNS_VERSION = "v1.14.7"  # e2e/local_cluster/gomod/coredns/go.mod requires it
CLUSTER_DOMAIN = "cluster.local"
GOMOD_DIR = Path(__file__).resolve().parent / "gomod"


@dataclass(frozen=True)
class ClusterSettings:
    cache_dir: Path = field(default_factory=cache_root)
    state_dir: Path = Path(os.environ.get("RUNAI_MLFLOW_CLUSTER_STATE", "/var/lib/runai-mlflow/cluster"))
    run_dir: Path = Path("/run/runai-mlflow")
    node_name: str = "runai-mlflow-node"
    gpus: int = int(os.environ.get("RUNAI_MLFLOW_GPUS", "4"))
    gpu_memory_mib: int = 16384
    # The node's pulled images are kept across clusters up to this size (node_images.py).
    node_images_max_gib: float = float(os.environ.get("RUNAI_MLFLOW_NODE_IMAGES_MAX_GIB", "30"))
    # Pods, and the bridge that is both their gateway and the node's address. The Service range is
    # blackholed: no kube-proxy runs, so a Service IP must never leave the machine.
    pod_cidr: str = "10.88.0.0/16"
    bridge: str = "runai0"
    host_ip: str = "10.88.0.1"
    service_cidr: str = "10.96.0.0/24"
    first_service_ip: str = "10.96.0.1"
    apiserver_port: int = 6443
    etcd_client_port: int = 23790
    etcd_peer_port: int = 23800
    kubelet_port: int = 10250
    kubelet_healthz_port: int = 10248
    registry_port: int = 5000
    # Cluster DNS answers pods on the bridge address; its readiness is asked on loopback.
    dns_port: int = 53
    dns_ready_port: int = 18181

    @property
    def bin_dir(self) -> Path:
        return self.cache_dir / "bin"

    def kubernetes_bin(self, name: str) -> Path:
        return self.bin_dir / f"kubernetes-{KUBERNETES_VERSION}" / name

    @property
    def etcd_bin(self) -> Path:
        return self.bin_dir / f"etcd-{ETCD_VERSION}" / "etcd"

    @property
    def coredns_bin(self) -> Path:
        return self.bin_dir / f"coredns-{COREDNS_VERSION}" / "coredns"

    @property
    def pause_bin(self) -> Path:
        return self.bin_dir / f"pause-{PAUSE_VERSION}" / "pause"

    @property
    def bridge_mac(self) -> str:
        """The bridge's own hardware address, set once: left unset, a Linux bridge takes the lowest address of
        its ports and changes it as pods' veths come and go, and a pod that resolved the gateway before holds
        the old one; its packets to the host are dropped until its neighbour entry expires (a new connection
        to the tracking server stalled 11-63 s in SYN-SENT while other pods ended). Locally administered
        (02:00), then the host address's four bytes."""
        return "02:00:" + ":".join(f"{int(octet):02x}" for octet in self.host_ip.split("."))

    @property
    def containerd_root(self) -> Path:
        """The node's image store: containerd's root, a cache (node_images.py)."""
        return self.cache_dir / "containerd"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def kubeconfig(self) -> Path:
        return self.pki_dir / "admin.kubeconfig"

    @property
    def containerd_socket(self) -> Path:
        return self.run_dir / "containerd" / "containerd.sock"

    @property
    def registry(self) -> str:
        """Where Docker pushes and containerd pulls: loopback, plain HTTP for both."""
        return f"127.0.0.1:{self.registry_port}"

    @property
    def pause_image(self) -> str:
        return f"{self.registry}/pause:{PAUSE_VERSION}"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"
