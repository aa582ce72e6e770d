"""The resumable training loop every framework shares: epochs of steps, a stop after any step.

A real epoch takes minutes and the grace period after SIGTERM is often under a minute, so the stop
request is checked after every step (one mini-batch), and a checkpoint then holds the position
inside the epoch. Checkpoints are also taken every `checkpoint_every` epochs and every
`checkpoint_minutes`, so a SIGKILL (a grace period overrun, a lost node) loses at most that much.

The framework's side (trainer.py) is a Steps object:
- steps_per_epoch, samples_per_step: the shape of an epoch;
- train_step(epoch, step) -> loss: train the step-th mini-batch of the epoch's data order (the order
  depends only on the seed and the epoch, so a resumed run sees the same batches);
- validate() -> metrics: scores after an epoch;
- state() -> bytes: everything else a resumed run needs (model, optimizer, scaler, ...).

Several processes may train together (team.py): each step they agree on the loss and on whether to
stop, so all stop after the same step; only the leader (rank 0) validates, prints, logs and saves.
"""

from __future__ import annotations

import time
from typing import Protocol

from checkpoint import Position, Replica, ResumableRun
from preemption import WHO, Preempted, StopRequest


class Steps(Protocol):
    steps_per_epoch: int
    samples_per_step: int

    def train_step(self, epoch: int, step: int) -> float: ...

    def validate(self) -> dict[str, float]: ...

    def state(self) -> bytes: ...


class Team(Protocol):
    world_size: int

    def agree(self, loss: float, stopping: bool) -> tuple[float, bool]: ...

    def wait_for_all(self) -> None: ...


class Alone:
    """One process training by itself: nothing to agree on."""

    world_size = 1

    def agree(self, loss: float, stopping: bool) -> tuple[float, bool]:
        return loss, stopping

    def wait_for_all(self) -> None:
        pass


ALONE = Alone()


class Schedule:
    """When to save and when to say how it goes: the train.py arguments of the same names."""

    def __init__(self, epochs: int, checkpoint_every: int, checkpoint_minutes: float, log_every: int):
        self.epochs, self.checkpoint_every = epochs, checkpoint_every
        self.checkpoint_seconds, self.log_every = checkpoint_minutes * 60, log_every

    @classmethod
    def of(cls, args) -> Schedule:
        return cls(args.epochs, args.checkpoint_every, args.checkpoint_minutes, args.log_every)


def train_steps(run: ResumableRun | Replica, schedule: Schedule, stop: StopRequest, steps: Steps,
                team: Team = ALONE) -> None:
    """Train from the run's saved position to the end. Raises Preempted, with the position saved, on SIGTERM."""
    say = print if run.leader else _quiet
    position = run.start
    # The mean training loss of an epoch is summed over its steps; a mid-epoch checkpoint carries the sum.
    counters = dict(run.checkpoint.counters) if run.checkpoint else {}
    loss_sum = counters.get("loss_sum", 0.0)
    saved_by = counters.get("world_size", 1)
    if position.step and saved_by != team.world_size:
        raise ValueError(f"the checkpoint at {position} was saved inside an epoch by {saved_by} training process(es), "
                         f"whose steps count each one's share of the data: resume it with {saved_by} in all "
                         f"(nodes x procs_per_node = {saved_by})")
    last_save = time.monotonic()

    def save(at: Position) -> None:
        nonlocal last_save
        if run.leader:
            run.save(at, steps.state(), {"loss_sum": loss_sum, "world_size": team.world_size})
        last_save = time.monotonic()

    if team.agree(0.0, stop.requested)[1]:
        raise Preempted(f"stopped before training; the Job's next pod resumes run {run.run_id} at {position}")
    for epoch in range(position.epoch, schedule.epochs):
        first = position.step if epoch == position.epoch else 0
        if first == 0:
            loss_sum = 0.0
        started, done = time.monotonic(), 0
        for step in range(first, steps.steps_per_epoch):
            loss, stopping = team.agree(steps.train_step(epoch, step), stop.requested)
            loss_sum, done = loss_sum + loss, done + 1
            at = Position(epoch, step + 1)
            if stopping:
                save(at)
                stop.stopped_with_a_checkpoint()
                team.wait_for_all()  # the checkpoint is saved before any rank exits
                after = f", {time.monotonic() - stop.at:.1f} s after SIGTERM" if stop.requested else ""
                raise Preempted(f"{WHO}stopped at {at} of {schedule.epochs} epochs{after}, with a checkpoint saved; "
                                f"the Job's next pod resumes run {run.run_id} there")
            if schedule.log_every and (step + 1) % schedule.log_every == 0:
                say(f"epoch {epoch + 1}/{schedule.epochs} step {step + 1}/{steps.steps_per_epoch}: "
                    f"loss {loss:.4f}, {throughput(done, steps.samples_per_step, started)}", flush=True)
            if step + 1 < steps.steps_per_epoch and time.monotonic() - last_save >= schedule.checkpoint_seconds:
                save(at)
        metrics = {"train_loss": loss_sum / steps.steps_per_epoch, **(steps.validate() if run.leader else {})}
        run.log_epoch(epoch, metrics)
        say(f"epoch {epoch + 1}/{schedule.epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            + f"; {throughput(done, steps.samples_per_step, started)}", flush=True)
        if (epoch + 1) % schedule.checkpoint_every == 0 or epoch == schedule.epochs - 1:
            save(Position(epoch + 1, 0))


def _quiet(*_args, **_kwargs) -> None:
    """A rank other than 0 prints nothing per step: the leader's lines are the run's."""


def throughput(steps_done: int, samples_per_step: int, since: float) -> str:
    seconds = max(time.monotonic() - since, 1e-9)
    return f"{steps_done * samples_per_step / seconds:,.0f} samples/s"
