"""Keep a training's progress in its own MLflow run, so the pod that replaces a preempted one resumes it.

Every pod the Job creates gets the same MLFLOW_RUN_ID, and mlflow.start_run() reopens that run. So
the run is where the progress lives:

- checkpoints: two artifact files, checkpoints/slot-a.ckpt and slot-b.ckpt, written in turn. Each
  is a JSON header line (epoch, size, sha256) followed by the framework's bytes. A save cut short
  by SIGKILL can damage only the slot being written; the other slot still holds the previous one.
- the restart count: the `restarts` tag (0 in the first pod).
- the metric history: a replacement pod does not log again the epochs an earlier pod logged, so
  every epoch appears exactly once at step=epoch, even when a few epochs have to be redone.

The training code decides what a checkpoint holds (see train.py). Checkpoints are read back only
from this run's own artifacts, and only when their checksum matches.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from preemption import Preempted, StopRequest

CHECKPOINT_DIR = "checkpoints"
SLOTS = ("slot-a.ckpt", "slot-b.ckpt")
RESTARTS_TAG = "restarts"
RESUMED_FROM_TAG = "resumed_from_epoch"
# Epochs a replacement pod trains again (done before the stop, but after the last checkpoint).
EPOCHS_REDONE_METRIC = "epochs_redone"


@dataclass(frozen=True)
class Checkpoint:
    epoch: int  # the last epoch whose training the payload includes
    payload: bytes
    slot: str


def encode(epoch: int, payload: bytes) -> bytes:
    header = {"epoch": epoch, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
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
    return Checkpoint(int(header["epoch"]), payload, slot)


class ResumableRun:
    """The active MLflow run, seen as a training that an earlier pod may already have taken part of the way."""

    def __init__(self, run_id: str):
        self.client = MlflowClient()
        self.run_id = run_id
        run = self.client.get_run(run_id)
        previous = run.data.tags.get(RESTARTS_TAG)
        self.restarts = int(previous) + 1 if previous is not None else 0
        self.client.set_tag(run_id, RESTARTS_TAG, str(self.restarts))
        self.logged_through = {key: max(m.step for m in self.client.get_metric_history(run_id, key))
                               for key in run.data.metrics if key != EPOCHS_REDONE_METRIC}
        self.checkpoint = self._latest_checkpoint()
        self.saved_epoch = self.checkpoint.epoch if self.checkpoint else -1
        self._next_slot = SLOTS[1] if self.checkpoint and self.checkpoint.slot == SLOTS[0] else SLOTS[0]
        if self.restarts:
            self._record_resume()

    @property
    def start_epoch(self) -> int:
        return self.saved_epoch + 1

    def _latest_checkpoint(self) -> Checkpoint | None:
        present = {Path(item.path).name for item in self.client.list_artifacts(self.run_id, CHECKPOINT_DIR)}
        found = []
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            for slot in (s for s in SLOTS if s in present):
                local = mlflow.artifacts.download_artifacts(run_id=self.run_id,
                                                            artifact_path=f"{CHECKPOINT_DIR}/{slot}", dst_path=tmp)
                checkpoint = decode(Path(local).read_bytes(), slot)
                if checkpoint is None:
                    print(f"checkpoint {slot} is damaged (a save was cut short); using the other slot",
                          file=sys.stderr)
                else:
                    found.append(checkpoint)
        return max(found, key=lambda c: c.epoch, default=None)

    def _record_resume(self) -> None:
        last_trained = max(self.logged_through.values(), default=-1)
        redone = max(0, last_trained - self.saved_epoch)
        self.client.set_tag(self.run_id, RESUMED_FROM_TAG, str(self.start_epoch))
        mlflow.log_metric(EPOCHS_REDONE_METRIC, redone, step=self.restarts)
        where = f"checkpoint of epoch {self.saved_epoch}" if self.checkpoint else "the start (no checkpoint yet)"
        print(f"restart {self.restarts} of run {self.run_id}: resuming from {where}; {redone} epoch(s) to redo",
              flush=True)

    def log_epoch(self, epoch: int, metrics: dict[str, float]) -> None:
        """Log an epoch's metrics at step=epoch, leaving out those an earlier pod already logged for it."""
        fresh = {key: value for key, value in metrics.items() if epoch > self.logged_through.get(key, -1)}
        if fresh:
            mlflow.log_metrics(fresh, step=epoch)
            self.logged_through.update(dict.fromkeys(fresh, epoch))

    def save(self, epoch: int, payload: bytes) -> None:
        slot, self._next_slot = self._next_slot, SLOTS[1] if self._next_slot == SLOTS[0] else SLOTS[0]
        with tempfile.TemporaryDirectory(prefix="checkpoint-") as tmp:
            path = Path(tmp) / slot
            path.write_bytes(encode(epoch, payload))
            self.client.log_artifact(self.run_id, str(path), CHECKPOINT_DIR)
        self.saved_epoch = epoch


def train_epochs(run: ResumableRun, epochs: int, checkpoint_every: int, stop: StopRequest,
                 train_epoch: Callable[[int], dict[str, float]], snapshot: Callable[[], bytes]) -> None:
    """The resumable loop every framework shares.

    train_epoch(epoch) trains one epoch and returns its metrics; snapshot() returns the bytes a
    checkpoint holds. Raises Preempted, with the progress saved, when SIGTERM arrived.
    """
    epoch = run.start_epoch
    while epoch < epochs and not stop.requested:
        run.log_epoch(epoch, train_epoch(epoch))
        if (epoch + 1) % checkpoint_every == 0 or epoch == epochs - 1:
            run.save(epoch, snapshot())
        epoch += 1
    if epoch < epochs:
        done = epoch - 1
        if run.saved_epoch != done:
            run.save(done, snapshot())
        raise Preempted(f"stopped after epoch {done} of {epochs} with a checkpoint saved; the Job's next pod "
                        f"resumes run {run.run_id} at epoch {done + 1}")
