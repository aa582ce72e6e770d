"""A fake Run:ai scheduler: real watch-and-bind scheduling with Run:ai's queue and GPU semantics."""

from .config import SchedulerConfig, load_config, parse_config
from .scheduler import FakeRunaiScheduler

__all__ = ["FakeRunaiScheduler", "SchedulerConfig", "load_config", "parse_config"]
