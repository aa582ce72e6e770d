"""The e2e option matrix: each variant is a set of cookiecutter answers and what the cluster must show."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from kube.nodes import GPU_MEMORY_MIB

ANSWER_DEFAULTS = json.loads((Path(__file__).resolve().parents[2] / "cookiecutter.json").read_text())

NODE_TYPE = "e2e-gpu"
CREDENTIALS_SECRET = "mlflow-credentials"
DATA_CLAIM = "e2e-data"
DATA_FILE = "train.csv"


@dataclass(frozen=True)
class Framework:
    """What a generated project of one framework logs: its per-epoch metrics, the test split's scores
    (once, at the end) and its entry point's defaults."""

    metrics: tuple[str, ...]
    final_metrics: tuple[str, ...]
    params: dict


_SCHEDULE = {"seed": "42", "checkpoint_every": "10", "checkpoint_minutes": "10", "log_every": "100",
             "data_file": "none", "continue_run": "none"}
FRAMEWORKS = {
    "sklearn": Framework(("train_loss", "val_rmse", "val_mae", "val_r2"), ("test_rmse", "test_mae", "test_r2"),
                         {"alpha": "0.05", "l1_ratio": "0.5", "batch_size": "32", "epochs": "100", **_SCHEDULE}),
    "pytorch": Framework(("train_loss", "val_loss", "val_accuracy"), ("test_loss", "test_accuracy"),
                         {"lr": "0.003", "batch_size": "64", "workers": "2", "epochs": "30", **_SCHEDULE}),
}


@dataclass(frozen=True)
class Variant:
    id: str
    answers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    expect_success: bool = True
    gpu_quota: float = 4
    gpu_limit: float = -1  # -1: unlimited (a preemptible job may use idle GPUs over its quota)
    deadline: int = 600  # the Job's activeDeadlineSeconds (an answer)
    needs_fake_scheduler: bool = False  # sets a queue's quota, which only the suite's own scheduler takes
    # Its pod is never scheduled: the run only waits out its deadline, using no CPU, so it need not wait for
    # one of the concurrent runs' places (E2E_JOBS), nor hold one.
    never_scheduled: bool = False

    @property
    def framework(self) -> Framework:
        return FRAMEWORKS[self.answers.get("framework", "sklearn")]

    @property
    def large_shm(self) -> bool:
        """The answer, or its default: yes for pytorch (its DataLoader workers pass batches through /dev/shm)."""
        return bool(self.answers.get("large_shm", self.answers.get("framework") == "pytorch"))

    @property
    def gpu(self) -> float:
        return float(self.answers.get("gpu", self.default_gpu))

    @property
    def default_gpu(self) -> str:
        """cookiecutter.json's: a GPU for pytorch, none for sklearn (CPU code)."""
        return "1" if self.answers.get("framework") == "pytorch" else "0"

    @property
    def procs_per_node(self) -> int:
        """Training processes in the pod: one per GPU for pytorch (torchrun from 2 on), else one."""
        if self.answers.get("framework") != "pytorch":
            return 1
        return self.gpu_devices if self.shared and self.gpu_devices > 1 else max(1, int(self.gpu))

    @property
    def nodes(self) -> int:
        """Pods of the run: an Indexed Job of them from 2 on, one gang."""
        return int(self.answers.get("nodes", "1"))

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    @property
    def entry_point_defaults(self) -> dict:
        """The MLproject's parameters with their defaults, which MLflow logs for the run."""
        if self.answers.get("framework") != "pytorch":
            return self.framework.params
        return {**self.framework.params, "procs_per_node": str(self.procs_per_node)}

    @property
    def cpu_limit(self) -> float | None:
        """The pod's CPU limit in CPUs (the answer, or cookiecutter.json's default), None for none."""
        quantity = self.answers.get("cpu_limit", ANSWER_DEFAULTS["cpu_limit"])
        if not quantity:
            return None
        return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)

    @property
    def gpu_memory_mib(self) -> int:
        return int(self.answers.get("gpu_memory") or 0)

    @property
    def gpu_devices(self) -> int:
        return int(self.answers.get("gpu_devices", "1"))

    @property
    def shared(self) -> bool:
        return bool(self.gpu_memory_mib) or 0 < self.gpu < 1

    @property
    def resource_type(self) -> str:
        """What the scheduler's binding annotates: received-resource-type."""
        return "Fraction" if self.shared else "Regular"

    @property
    def allocated_gpus(self) -> float:
        """runai-allocated-gpus on a node of the fake GPUs (GPU_MEMORY_MIB per device)."""
        if self.gpu_memory_mib:
            return self.gpu_memory_mib / GPU_MEMORY_MIB * self.gpu_devices
        return self.gpu * self.gpu_devices if self.shared else self.gpu

    @property
    def gpu_request(self) -> str:
        """What the Job tells the pod it asked for (RUNAI_GPU_REQUEST, the run's gpu.requested tag)."""
        amount = f"{self.gpu_memory_mib}MiB" if self.gpu_memory_mib else self.answers.get("gpu", self.default_gpu)
        return f"{amount}x{self.gpu_devices}" if self.gpu_devices > 1 else amount


MATRIX = [
    Variant("whole-gpu-train", {"gpu": "1"}),
    Variant("fraction-half-gpu", {"gpu": "0.5"}),
    Variant("interactive", {"gpu": "1", "workload_type": "interactive"}),
    Variant("cpu-only", {"gpu": "0", "cpu_limit": "", "memory_limit": ""}),
    Variant("node-type", {"gpu": "1", "node_type": NODE_TYPE}),
    Variant("large-shm", {"gpu": "0.25", "large_shm": True}),
    Variant("credentials-secret", {"gpu": "0", "credentials_secret": CREDENTIALS_SECRET}),
    # A fraction of a GPU and large /dev/shm (pytorch's default), the DataLoader's workers passing batches through it.
    Variant("pytorch", {"framework": "pytorch", "gpu": "0.5"}),
    # Two GPUs: torchrun starts two training processes (gloo on the fake GPUs' CPU), one MLflow run. They
    # train in lockstep, which the matrix's other pods on 2 cores slow most: a longer deadline than the rest.
    Variant("pytorch-two-gpus", {"framework": "pytorch", "gpu": "2"}, deadline=900),
    # Two nodes of two GPUs: an Indexed Job of 2 pods, one gang, 4 processes meeting at index 0 by its DNS
    # name (the local cluster's CoreDNS). It waits until all 4 fake GPUs are free at once; half a CPU per pod
    # lets both pods fit on the 2-CPU node beside another run.
    Variant("pytorch-two-nodes", {"framework": "pytorch", "gpu": "2", "nodes": "2", "cpu_request": "500m"},
            deadline=1200),
    Variant("gpu-memory", {"gpu": "1", "gpu_memory": "4096"}),
    Variant("fraction-two-devices", {"gpu": "0.5", "gpu_devices": "2"}),
    # A CPU limit below the node's cores: the training's threads follow the limit, not the cores (cpus.py).
    Variant("priority-class", {"gpu": "1", "priority_class": "build-preemptible", "cpu_limit": "1"}),
    # A claim the suite makes (a local PersistentVolume) with a CSV in it; -P data_file trains on it.
    Variant("data-pvc", {"gpu": "0", "data_pvc": DATA_CLAIM}, params={"data_file": DATA_FILE}),
]

# Runs that must fail, each for its own reason, each in a project of its own: they run alongside the matrix.
OVER_QUOTA = Variant("over-quota", {"gpu": "1", "workload_type": "interactive"}, expect_success=False, gpu_quota=0,
                     deadline=45, needs_fake_scheduler=True, never_scheduled=True)
BAD_PARAMETER = Variant("bad-parameter", {"gpu": "0"}, params={"l1_ratio": "2"}, expect_success=False)
OUT_OF_MEMORY = Variant("oom", {"gpu": "0", "memory_request": "32Mi", "memory_limit": "64Mi"}, expect_success=False)
# Trains until its Job's deadline ends it (DeadlineExceeded): test_resume.py then continues it with `make resume`.
RESUMED_AFTER_DEADLINE = Variant("resume-after-deadline", {"gpu": "0"},
                                 params={"epochs": "100000", "checkpoint_every": "5"}, expect_success=False,
                                 deadline=45)
FAILING = [OVER_QUOTA, BAD_PARAMETER, OUT_OF_MEMORY, RESUMED_AFTER_DEADLINE]

# Trains while its tracking server (its own) stops and comes back: test_tracking_outage.py, played by outage.py.
TRACKING_OUTAGE = Variant("tracking-outage", {"gpu": "0"}, params={"epochs": "400", "checkpoint_every": "5"})
