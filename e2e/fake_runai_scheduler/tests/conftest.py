import uuid

import pytest
from kube.nodes import FakeNodes

from fake_runai_scheduler import FakeRunaiScheduler, parse_config


@pytest.fixture(scope="session")
def api(kube_api):
    """The cluster's API (e2e/conftest.py starts or reuses the cluster)."""
    return kube_api


@pytest.fixture
def pool():
    return f"p{uuid.uuid4().hex[:8]}"


@pytest.fixture
def nodes(api):
    fake = FakeNodes(api)
    yield fake
    fake.delete_all()


@pytest.fixture
def namespace(api):
    name = f"sched-{uuid.uuid4().hex[:6]}"
    api.request("POST", "/api/v1/namespaces", body={"metadata": {"name": name}})
    yield name
    api.request("DELETE", f"/api/v1/namespaces/{name}", body={"gracePeriodSeconds": 0})


@pytest.fixture
def start_scheduler(api):
    """start_scheduler(queues) -> a running FakeRunaiScheduler with a scheduler name of its own."""
    started = []

    def start(queues: list[dict], name: str | None = None, **options) -> FakeRunaiScheduler:
        name = name or f"runai-scheduler-{uuid.uuid4().hex[:6]}"
        scheduler = FakeRunaiScheduler(api, parse_config({"schedulerName": name, "queues": queues}), period=0.5,
                                       **options)
        started.append(scheduler.start())
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop()
