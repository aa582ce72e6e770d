"""Keep a training's progress in its own MLflow run, so the pod that replaces a preempted one resumes it.

Every pod the Job creates gets the same MLFLOW_RUN_ID, and mlflow.start_run() reopens that run. So
the run is where the progress lives:

- checkpoints: two artifact files, checkpoints/slot-a.ckpt and slot-b.ckpt, written in turn. Each
  is a JSON header line (the position to go on from, the loop's own counters, size, sha256)
  followed by the framework's bytes. A save cut short by SIGKILL can damage only the slot being
  written; the other slot still holds the previous one.
- the restart count: the `restarts` tag (0 in the first pod).
- the metric history: a replacement pod does not log again the epochs an earlier pod logged, so
  every epoch appears exactly once at step=epoch, even when a few epochs have to be redone.

Every call to the tracking server goes through a Retry (retry.py). Checkpoints are read back only
from this run's own artifacts, and only when their checksum matches.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from retry import Retry

CHECKPOINT_DIR = "checkpoints"
SLOTS = ("slot-a.ckpt", "slot-b.ckpt")
RESTARTS_TAG = "restarts"
RESUMED_FROM_TAGS = ("resumed_from_epoch", "resumed_from_step")
# Epochs a replacement pod trains again (done before the stop, but after the last checkpoint).
EPOCHS_REDONE_METRIC = "epochs_redone"


@dataclass(frozen=True)
class Position:
    """Where training goes on: the next step of the next epoch. (e, 0) means epochs before e are done."""
    epoch: int = 0
    step: int = 0

    def __str__(self) -> str:
        return f"epoch {self.epoch} step {self.step}"


@dataclass(frozen=True)
class Checkpoint:
    position: Position
    payload: bytes  # the framework's state: model, optimizer, ...
    slot: str
    counters: dict = field(default_factory=dict)  # the loop's own state inside the epoch


def encode(position: Position, payload: bytes, counters: dict) -> bytes:
    header = {"epoch": position.epoch, "step": position.step, "counters": counters, "size": len(payload),
              "sha256": hashlib.sha256(payload).hexdigest()}
    return json.dumps(header).encode() + b"\n" + payload


def decode(data: bytes, slot: str) -> Checkpoint | None:
    """The checkpoint in a slot file, or None when the file is damaged (a save that was cut short)."""
    line, newline, payload = data.partition(b"\n")
    try:
        header = json.loads(line)
    except ValueError:
        return None
    if (not newline or not isinstance(header, dict) or header.get("size") != len(payload)
            or header.get("sha256") != hashlib.sha256(payload).hexdigest()):
        return None
    return Checkpoint(Position(int(header["epoch"]), int(header["step"])), payload, slot, header.get("counters", {}))


class ResumableRun:
    """The active MLflow run, seen as a training that an earlier pod may already have taken part of the way."""

    leader = True  # the process that talks to MLflow (rank 0 when several train together, see team.py)

    def __init__(self, run_id: str, retry: Retry):
        # Loaded here, not at the top: a Replica's process never talks to the tracking server (~1 s of CPU saved).
        import mlflow  # noqa: PLC0415

        self.mlflow, self.client, self.run_id, self.retry = mlflow, mlflow.MlflowClient(), run_id, retry
        run = retry("reading the run", self.client.get_run, run_id)
        previous = run.data.tags.get(RESTARTS_TAG)
        self.restarts = int(previous) + 1 if previous is not None else 0
        retry("tagging the run", self.client.set_tag, run_id, RESTARTS_TAG, str(self.restarts))
        self.logged_through = {
            key: max(m.step for m in retry("reading metrics", self.client.get_metric_history, run_id, key))
            for key in run.data.metrics if key != EPOCHS_REDONE_METRIC}
        self.checkpoint = self._latest_checkpoint()
        self.saved = self.checkpoint.position if self.checkpoint else None
        self._next_slot = SLOTS[1] if self.checkpoint and self.checkpoint.slot == SLOTS[0] else SLOTS[0]
        if self.restarts:
            self._record_resume()

    @property
    def start(self) -> Position:
        return self.saved or Position()

    def _latest_checkpoint(self) -> Checkpoint | None:
        listed = self.retry("listing checkpoints", self.client.list_artifacts, self.run_id, CHECKPOINT_DIR)
        present = {Path(item.path).name for item in listed}
        found = []
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            for slot in (s for s in SLOTS if s in present):
                local = self.retry(f"downloading checkpoint {slot}", self.mlflow.artifacts.download_artifacts,
                                   run_id=self.run_id, artifact_path=f"{CHECKPOINT_DIR}/{slot}", dst_path=tmp)
                checkpoint = decode(Path(local).read_bytes(), slot)
                if checkpoint is None:
                    print(f"checkpoint {slot} is damaged (a save was cut short); using the other slot",
                          file=sys.stderr)
                else:
                    found.append(checkpoint)
        return max(found, key=lambda c: (c.position.epoch, c.position.step), default=None)

    def _record_resume(self) -> None:
        last_trained = max(self.logged_through.values(), default=-1)
        redone = max(0, last_trained - self.start.epoch + 1)
        for tag, value in zip(RESUMED_FROM_TAGS, (self.start.epoch, self.start.step), strict=True):
            self.retry("tagging the run", self.client.set_tag, self.run_id, tag, str(value))
        self.retry("logging a metric", self.client.log_metric, self.run_id, EPOCHS_REDONE_METRIC, redone,
                   step=self.restarts)
        where = f"the checkpoint at {self.start}" if self.checkpoint else "the start (no checkpoint yet)"
        print(f"restart {self.restarts} of run {self.run_id}: resuming from {where}; {redone} epoch(s) to redo",
              flush=True)

    def tag(self, tags: dict[str, str]) -> None:
        self.retry("tagging the run", self.mlflow.set_tags, tags)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Log an epoch's metrics at step=epoch, leaving out those an earlier pod already logged for it."""
        fresh = {key: value for key, value in metrics.items() if epoch > self.logged_through.get(key, -1)}
        if fresh:
            self.retry(f"logging epoch {epoch}", self.mlflow.log_metrics, fresh, step=epoch)
            self.logged_through.update(dict.fromkeys(fresh, epoch))

    def save(self, position: Position, payload: bytes, counters: dict) -> None:
        slot = self._next_slot
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            path = Path(tmp) / slot
            path.write_bytes(encode(position, payload, counters))
            self.retry(f"uploading checkpoint {slot}", self.client.log_artifact, self.run_id, str(path),
                       CHECKPOINT_DIR)
        self._next_slot = SLOTS[1] if slot == SLOTS[0] else SLOTS[0]
        self.saved = position


class Replica:
    """A training process other than rank 0 (team.py): it trains from the checkpoint rank 0 read and shares,
    and leaves the tracking server, the metrics and the checkpoints to rank 0, so each is written once."""

    leader = False

    def __init__(self, run_id: str):
        self.run_id, self.checkpoint = run_id, None

    @property
    def start(self) -> Position:
        return self.checkpoint.position if self.checkpoint else Position()

    def tag(self, tags: dict[str, str]) -> None:
        pass

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        pass

    def save(self, position: Position, payload: bytes, counters: dict) -> None:
        pass
