"""The e2e option matrix: each variant is a set of cookiecutter answers and what the cluster must show."""

from __future__ import annotations

from dataclasses import dataclass, field

NODE_TYPE = "e2e-gpu"
CREDENTIALS_SECRET = "mlflow-credentials"


@dataclass(frozen=True)
class Framework:
    """What a generated project of one framework logs: its per-epoch metrics and its entry point's defaults."""

    metrics: tuple[str, ...]
    params: dict


FRAMEWORKS = {
    "sklearn": Framework(("rmse", "mae", "r2"), {"alpha": "0.05", "l1_ratio": "0.5", "epochs": "100",
                                                  "checkpoint_every": "10"}),
    "pytorch": Framework(("train_loss", "test_loss", "accuracy"), {"lr": "0.003", "batch_size": "64", "workers": "2",
                                                                   "epochs": "30", "checkpoint_every": "10"}),
}


@dataclass(frozen=True)
class Variant:
    id: str
    answers: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    expect_success: bool = True
    gpu_quota: float = 4
    gpu_limit: float = -1  # -1: unlimited (a preemptible job may use idle GPUs over its quota)

    @property
    def framework(self) -> Framework:
        return FRAMEWORKS[self.answers.get("framework", "sklearn")]

    @property
    def large_shm(self) -> bool:
        """The answer, or its default: yes for pytorch (its DataLoader workers pass batches through /dev/shm)."""
        return bool(self.answers.get("large_shm", self.answers.get("framework") == "pytorch"))

    @property
    def gpu(self) -> float:
        return float(self.answers.get("gpu", "1"))

    @property
    def resource_type(self) -> str:
        """What the scheduler's binding annotates: received-resource-type."""
        return "Fraction" if 0 < self.gpu < 1 else "Regular"


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
]
