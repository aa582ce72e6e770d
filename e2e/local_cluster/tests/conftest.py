import pytest

from local_cluster import LocalCluster


@pytest.fixture(scope="session")
def cluster():
    """Start or reuse the local cluster (idempotent); it stays up for the suites that follow."""
    return LocalCluster().up()
