"""A real single-node Kubernetes cluster built from upstream parts, for CI that cannot pull images."""

from .cluster import LocalCluster
from .settings import ClusterSettings

__all__ = ["ClusterSettings", "LocalCluster"]
