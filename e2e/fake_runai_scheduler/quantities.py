"""Kubernetes quantities as numbers: CPU in millicores, memory in bytes."""

from __future__ import annotations

from kubernetes.utils.quantity import parse_quantity


def millicores(value: object) -> float:
    return float(parse_quantity(str(value)) * 1000) if value not in (None, "") else 0.0


def bytes_(value: object) -> float:
    return float(parse_quantity(str(value))) if value not in (None, "") else 0.0


def count(value: object) -> int:
    return int(parse_quantity(str(value))) if value not in (None, "") else 0
