"""Queues (Run:ai projects) and their quotas, from a YAML file, in the units KAI's Queue uses.

    schedulerName: runai-scheduler      # optional
    queues:
      - name: team-a
        gpu: {quota: 2, limit: -1}      # devices; fractions allowed
        cpu: {quota: -1, limit: -1}     # millicores (optional section: unlimited)
        memory: {quota: -1, limit: -1}  # MB = 10^6 bytes (optional section: unlimited)

-1 means unlimited. As in KAI, a limit of 0 allows nothing; unlike KAI, an unset gpu limit is
an error here rather than a silent "nothing allowed".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml
from runai.names import SCHEDULER_NAME

UNLIMITED = -1.0
RESOURCES = ("gpu", "cpu", "memory")


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Quota:
    quota: float = UNLIMITED
    limit: float = UNLIMITED


@dataclass(frozen=True)
class Queue:
    name: str
    gpu: Quota
    cpu: Quota = field(default_factory=Quota)
    memory: Quota = field(default_factory=Quota)

    def resource(self, name: str) -> Quota:
        return getattr(self, name)


@dataclass(frozen=True)
class SchedulerConfig:
    queues: dict[str, Queue]
    scheduler_name: str = SCHEDULER_NAME


def _quota(queue: str, resource: str, raw: object, required: bool) -> Quota:
    if raw is None:
        if required:
            raise ConfigError(f"queue {queue!r}: '{resource}' with quota and limit is required (-1 = unlimited)")
        return Quota()
    if not isinstance(raw, dict) or set(raw) - {"quota", "limit"}:
        raise ConfigError(f"queue {queue!r}: '{resource}' must be a mapping with 'quota' and 'limit'")
    values = {}
    for key in ("quota", "limit"):
        if key not in raw:
            raise ConfigError(f"queue {queue!r}: {resource}.{key} is required (-1 = unlimited; KAI reads unset as 0)")
        value = raw[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or (value < 0 and value != -1):
            raise ConfigError(f"queue {queue!r}: {resource}.{key} must be a number >= 0, or -1 for unlimited")
        values[key] = float(value)
    return Quota(**values)


def parse_config(data: dict) -> SchedulerConfig:
    if not isinstance(data, dict) or not isinstance(data.get("queues"), list):
        raise ConfigError("the config needs a 'queues' list")
    queues = {}
    for entry in data["queues"]:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not name or not isinstance(name, str):
            raise ConfigError(f"every queue needs a 'name': {entry!r}")
        if name in queues:
            raise ConfigError(f"queue {name!r} is defined twice")
        queues[name] = Queue(name, *[_quota(name, r, entry.get(r), required=(r == "gpu")) for r in RESOURCES])
    return SchedulerConfig(queues, data.get("schedulerName", SCHEDULER_NAME))


def load_config(path: str | Path) -> SchedulerConfig:
    return parse_config(yaml.safe_load(Path(path).read_text()))
