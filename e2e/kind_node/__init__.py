"""A kind node image and kind's local registry, built on this machine from upstream parts.

Where the pinned ``kindest/node`` image and ``registry:3`` cannot be pulled, the e2e suite's kind target
uses these instead: kind's own base files from its Go module, Debian's systemd, containerd, runc and CNI
plugins, and the Kubernetes, etcd, CoreDNS and pause binaries the local cluster builds (parts.py says
what differs from upstream).
"""

from .node_image import ensure_node_image
from .parts import KIND_VERSION, KUBEADM_CONFIG_PATCH, kind_binary, kubectl_binary
from .registry_image import ensure_registry_image

__all__ = ["KIND_VERSION", "KUBEADM_CONFIG_PATCH", "ensure_node_image", "ensure_registry_image", "kind_binary",
           "kubectl_binary"]
