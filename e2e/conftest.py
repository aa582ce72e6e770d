"""Fixtures for every test under e2e/: the cluster they run against, from above the packages.

The local cluster and the fake scheduler never import each other; their tests meet here.
"""

import pytest
from kube import KubeApi


@pytest.fixture(scope="session")
def cluster():
    """Start or reuse the local cluster (idempotent); it stays up for the suites that follow."""
    from local_cluster import LocalCluster

    return LocalCluster().up()


@pytest.fixture(scope="session")
def kube_api(cluster) -> KubeApi:
    return KubeApi.from_kubeconfig(str(cluster.kubeconfig))
