"""The ground floor of e2e/: Kubernetes API access, waiting, fake nodes and fake GPUs.

Used alike by the local cluster, the fake Run:ai scheduler, the e2e suite, the tests and the
benchmarks; it imports none of them.
"""

from .api import ApiError, KubeApi, pod_path
from .wait import WaitFailed, wait_for_default_service_account, wait_until

__all__ = ["ApiError", "KubeApi", "WaitFailed", "pod_path", "wait_for_default_service_account", "wait_until"]
