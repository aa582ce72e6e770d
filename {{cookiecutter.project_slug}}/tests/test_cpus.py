"""cpus.py: each training process starts as many threads as its share of the pod's CPU limit, not one per core
of the node. The cgroup files are written here as the container runtime shows them in a pod."""

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import cpus  # noqa: E402 - the project's own module, beside tests/

NODE_CORES = set(range(64))  # what a container sees on a big GPU node, whatever its limit


def cgroup(tmp_path, version: int, quota: str, period: str = "100000", directory: str = "cpu,cpuacct"):
    if version == 2:
        (tmp_path / "cpu.max").write_text(f"{quota} {period}\n")
    else:
        (tmp_path / directory).mkdir()
        (tmp_path / directory / "cpu.cfs_quota_us").write_text(f"{quota}\n")
        (tmp_path / directory / "cpu.cfs_period_us").write_text(f"{period}\n")
    return tmp_path


@pytest.mark.parametrize(("version", "quota", "period", "directory", "limit"), [
    (2, "max", "100000", None, None),
    (2, "150000", "100000", None, 1.5),
    (2, "400000", "200000", None, 2.0),
    (1, "-1", "100000", "cpu,cpuacct", None),
    (1, "50000", "100000", "cpu,cpuacct", 0.5),
    (1, "800000", "100000", "cpu", 8.0),
])
def test_the_pods_cpu_limit_is_read_from_its_cgroup(tmp_path, version, quota, period, directory, limit):
    root = cgroup(tmp_path, version, quota, period, directory or "")
    assert cpus.limit(root) == limit


def test_no_cgroup_files_mean_no_limit(tmp_path):
    assert cpus.limit(tmp_path) is None


@pytest.mark.parametrize(("quota", "processes", "threads"), [
    ("200000", 1, "2"),  # a limit of 2 CPUs: 2 threads, not 64
    ("800000", 4, "2"),  # 8 CPUs shared by 4 training processes
    ("150000", 1, "1"),  # a thread past the quota only waits: rounded down
    ("50000", 1, "1"),  # at least one
    ("max", 2, "32"),  # no limit: the cores, shared
])
def test_each_process_gets_its_share_of_the_cpus_the_pod_may_use(tmp_path, monkeypatch, quota, processes, threads):
    monkeypatch.delenv(cpus.THREADS, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: NODE_CORES)
    said = cpus.share_among(processes, cgroup(tmp_path, 2, quota))
    assert os.environ[cpus.THREADS] == threads
    assert said.startswith(f"CPU threads per process: {threads} ("), said


def test_a_limit_above_the_cores_it_may_run_on_gives_the_cores(tmp_path, monkeypatch):
    monkeypatch.delenv(cpus.THREADS, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    cpus.share_among(1, cgroup(tmp_path, 1, "800000"))
    assert os.environ[cpus.THREADS] == "2"


def test_omp_num_threads_set_by_the_user_wins(tmp_path, monkeypatch):
    monkeypatch.setenv(cpus.THREADS, "3")
    said = cpus.share_among(2, cgroup(tmp_path, 2, "100000"))
    assert os.environ[cpus.THREADS] == "3"
    assert "OMP_NUM_THREADS was set" in said
