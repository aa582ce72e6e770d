"""The queue file: KAI's units and special values, and clear errors for the traps (unset limit = nothing)."""

import pytest

from fake_runai_scheduler.config import UNLIMITED, ConfigError, parse_config


def test_queues_parse_with_units_and_unlimited_defaults():
    config = parse_config({"schedulerName": "runai-scheduler", "queues": [
        {"name": "team-a", "gpu": {"quota": 2, "limit": -1}, "cpu": {"quota": 8000, "limit": 16000}},
        {"name": "team-b", "gpu": {"quota": 0.5, "limit": 1}},
    ]})
    a, b = config.queues["team-a"], config.queues["team-b"]
    assert (a.gpu.quota, a.gpu.limit, a.cpu.limit) == (2, UNLIMITED, 16000)
    assert (a.memory.quota, a.memory.limit) == (UNLIMITED, UNLIMITED)
    assert (b.gpu.quota, b.gpu.limit) == (0.5, 1)
    assert config.scheduler_name == "runai-scheduler"


@pytest.mark.parametrize("queues, message", [
    ([{"name": "a"}], "'gpu' with quota and limit is required"),
    ([{"name": "a", "gpu": {"quota": 1}}], "gpu.limit is required (-1 = unlimited; KAI reads unset as 0)"),
    ([{"name": "a", "gpu": {"quota": -2, "limit": 1}}], "gpu.quota must be a number >= 0, or -1"),
    ([{"name": "a", "gpu": {"quota": "one", "limit": 1}}], "gpu.quota must be a number"),
    ([{"name": "a", "gpu": {"quota": 1, "limit": 1, "weight": 2}}], "must be a mapping with 'quota' and 'limit'"),
    ([{"gpu": {"quota": 1, "limit": 1}}], "every queue needs a 'name'"),
    ([{"name": "a", "gpu": {"quota": 1, "limit": 1}}] * 2, "queue 'a' is defined twice"),
])
def test_bad_queue_files_name_the_queue_and_the_rule(queues, message):
    with pytest.raises(ConfigError) as error:
        parse_config({"queues": queues})
    assert message in str(error.value)


def test_queues_list_is_required():
    with pytest.raises(ConfigError, match="needs a 'queues' list"):
        parse_config({"queue": []})
