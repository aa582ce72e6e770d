"""How many threads each training process's math libraries start: the CPUs the pod may use, shared by its processes.

{{ "torch's CPU kernels (OpenMP)" if cookiecutter.framework == "pytorch" else "numpy's and scikit-learn's BLAS and OpenMP" }} start one thread per core they see, and a container
sees every core of its node, whatever the pod's CPU limit. A pod limited to 2 CPUs on a 64-core node
then runs 64 threads on 2 CPUs' time: the kernel throttles it, and threads spinning while they wait for
each other spend the quota on nothing. (Measured on a 2-core machine that ran other work beside it: one
20-epoch CPU training of the PyTorch project took 78 s of CPU with a thread per core, 15 s with one.)
torchrun sets one thread per process, and only when it starts several, whatever the limit.

Here every process gets the CPUs the pod may use divided by the training processes in the pod, set in
OMP_NUM_THREADS before the libraries load, so the processes torchrun starts inherit it. An
OMP_NUM_THREADS already set (by you, or in the Job template's env) wins.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")  # the container's own cgroup, as the runtime mounts it
THREADS = "OMP_NUM_THREADS"  # read by OpenMP and OpenBLAS when they load: set it before importing them


def limit(cgroup: Path = CGROUP) -> float | None:
    """The CPUs the pod's limit allows (its CFS quota over its period: cgroup v2's cpu.max, or v1's
    cpu.cfs_quota_us), or None for no limit."""
    v2 = cgroup / "cpu.max"
    if v2.is_file():
        quota, period = v2.read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    for v1 in (cgroup / "cpu", cgroup / "cpu,cpuacct"):
        if (v1 / "cpu.cfs_quota_us").is_file():
            quota = int((v1 / "cpu.cfs_quota_us").read_text())
            return None if quota <= 0 else quota / int((v1 / "cpu.cfs_period_us").read_text())
    return None


def usable(cgroup: Path = CGROUP) -> tuple[int, str]:
    """The CPUs this process may keep busy, and why: the cores it may run on, or fewer under a limit, rounded
    down (a thread past the quota only waits) but at least one."""
    cores = len(os.sched_getaffinity(0))
    quota = limit(cgroup)
    if quota is None or quota >= cores:
        return cores, f"{cores} cores" + (f", CPU limit {quota:g}" if quota else ", no CPU limit")
    return max(1, math.floor(quota)), f"CPU limit {quota:g} of {cores} cores"


def share_among(processes: int, cgroup: Path = CGROUP) -> str:
    """Set OMP_NUM_THREADS for this process and those it starts, unless it is set; say what it is, and why."""
    if THREADS in os.environ:
        return f"CPU threads per process: {os.environ[THREADS]} ({THREADS} was set)"
    cpus, why = usable(cgroup)
    threads = max(1, cpus // processes)
    os.environ[THREADS] = str(threads)
    return f"CPU threads per process: {threads} ({why}, {processes} training process{'es' if processes > 1 else ''})"
