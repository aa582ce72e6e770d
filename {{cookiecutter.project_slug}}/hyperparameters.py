"""What the {{ "regressor" if cookiecutter.framework == "sklearn" else "network" }} is trained with: trainer.py's own arguments (the MLproject parameters of the same names).

Standard library only: train.py checks these before MLflow and {{ "scikit-learn" if cookiecutter.framework == "sklearn" else "PyTorch" }} load, so a bad `-P`
fails in a second.
"""

from __future__ import annotations

import argparse

{%- if cookiecutter.framework == "pytorch" %}

EPOCHS = 30
# One training process per GPU the pod asks for (the gpu answer, or gpu_devices for a shared request).
PROCS_PER_NODE = {{ (cookiecutter | gpu_spec).processes }}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lr", type=float, default=0.003, help="Adam learning rate, > 0")
    parser.add_argument("--batch-size", type=int, default=64, help="images per step and process, >= 1")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes, >= 0 (0: load in-process)")
    parser.add_argument("--procs-per-node", type=int, default=PROCS_PER_NODE,
                        help="training processes, one per GPU (torchrun and DistributedDataParallel from 2 on; "
                             "gloo on CPU), >= 1")


def check_arguments(args: argparse.Namespace) -> list[str]:
    problems = []
    if not args.lr > 0:
        problems.append(f"--lr must be > 0, got {args.lr}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        problems.append(f"--workers must be >= 0, got {args.workers}")
    if args.procs_per_node < 1:
        problems.append(f"--procs-per-node must be >= 1, got {args.procs_per_node}")
    return problems
{%- else %}

EPOCHS = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--alpha", type=float, default=0.05, help="regularisation strength, >= 0")
    parser.add_argument("--l1-ratio", type=float, default=0.5, help="L1 share of the penalty, 0..1")
    parser.add_argument("--batch-size", type=int, default=32, help="rows per step, >= 1")


def check_arguments(args: argparse.Namespace) -> list[str]:
    problems = []
    if not args.alpha >= 0:
        problems.append(f"--alpha must be >= 0, got {args.alpha}")
    if not 0 <= args.l1_ratio <= 1:
        problems.append(f"--l1-ratio must be between 0 and 1, got {args.l1_ratio}")
    if args.batch_size < 1:
        problems.append(f"--batch-size must be >= 1, got {args.batch_size}")
    return problems
{%- endif %}
