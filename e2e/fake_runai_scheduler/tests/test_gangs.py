"""Gangs: a batch Job with kai.scheduler/batch-min-member binds all its pods together or none, and is
preempted and reclaimed as a whole; without the annotation each pod is its own unit (KAI v0.15+).

The Jobs are real: the Job controller creates their pods, and replaces the ones the scheduler evicts.
"""

from __future__ import annotations

import pytest
from runai.names import BATCH_MIN_MEMBER_ANNOTATION

from fake_runai_scheduler.informer import Informer

from .harness import (
    create_pod,
    events_for,
    get_pod,
    pod_body,
    queue,
    stays_unbound,
    wait_bound,
    wait_unschedulable,
    wait_until,
)

pytestmark = pytest.mark.cluster
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
GANG_OF_2_SHORT = "Resources were found for 1 pods while 2 are required for gang scheduling"


def create_job(api, namespace: str, name: str, scheduler: str, pool: str, pods: int, gpus: int,
               min_member: int | None, queue_name: str = "team-a") -> None:
    """An Indexed Job of `pods` pods with `gpus` whole GPUs each, a gang of `min_member` when given."""
    pod = pod_body(name, scheduler, pool, gpus, queue=queue_name)
    annotations = {BATCH_MIN_MEMBER_ANNOTATION: str(min_member)} if min_member else {}
    api.request("POST", f"/apis/batch/v1/namespaces/{namespace}/jobs", body={
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "annotations": annotations, "labels": pod["metadata"]["labels"]},
        "spec": {"parallelism": pods, "completions": pods, "completionMode": "Indexed", "backoffLimit": 10,
                 "template": {"metadata": {"labels": pod["metadata"]["labels"]}, "spec": pod["spec"]}}})


def schedulable_node(api, nodes, pool: str, gpus: int) -> str:
    """A fake node, once the node controller's not-ready taint (a new node's first moment) is gone."""
    name = nodes.create(pool, gpus=gpus)
    wait_until(lambda: not api.get(f"/api/v1/nodes/{name}")["spec"].get("taints"), 30, what=f"{name} untainted")
    return name


def job_pods(api, namespace: str, job: str, count: int) -> list[str]:
    """The names of the Job's `count` live pods, once the Job controller has created them."""
    def listed():
        items = api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=f"{JOB_NAME_LABEL}={job}")["items"]
        names = sorted(p["metadata"]["name"] for p in items if not p["metadata"].get("deletionTimestamp"))
        return names if len(names) == count else None
    return wait_until(listed, 30, what=f"{count} pods of Job {job}")


def test_a_gang_waits_as_a_whole_until_every_member_fits(api, nodes, namespace, start_scheduler, pool):
    first = schedulable_node(api, nodes, pool, 1)
    scheduler = start_scheduler([queue("team-a")])
    create_job(api, namespace, "gang", scheduler.name, pool, pods=2, gpus=1, min_member=2)
    members = job_pods(api, namespace, "gang", 2)
    for name in members:
        message = wait_unschedulable(api, namespace, name)
        assert message.startswith(GANG_OF_2_SHORT), message
        assert "didn't have enough free GPUs" in message, message
    assert all(stays_unbound(api, namespace, name, 1.0) for name in members), "one GPU free: neither member binds"

    second = schedulable_node(api, nodes, pool, 1)
    placed = {wait_bound(api, namespace, name)["spec"]["nodeName"] for name in members}
    assert placed == {first, second}, "one member on each node"
    groups = {get_pod(api, namespace, name)["metadata"]["annotations"]["pod-group-name"] for name in members}
    assert len(groups) == 1 and groups.pop().startswith("pg-gang-"), "one PodGroup for the Job"


def test_a_gangs_pods_seen_before_their_job_wait_for_it(api, nodes, namespace, start_scheduler, pool):
    """The pods' watch may deliver a Job's pods before the Jobs' watch delivers the Job (CI saw it once)."""
    schedulable_node(api, nodes, pool, 2)
    scheduler = start_scheduler([queue("team-a")])
    scheduler.informers["jobs"].stop()  # a lagging Jobs watch: the Job's event is not applied
    create_job(api, namespace, "gang", scheduler.name, pool, pods=2, gpus=1, min_member=2)
    members = job_pods(api, namespace, "gang", 2)
    assert all(stays_unbound(api, namespace, name, 1.5) for name in members), "bound before the Job was known"

    scheduler.informers["jobs"] = Informer(api, "/apis/batch/v1/jobs", scheduler.wake).start()
    for name in members:
        wait_bound(api, namespace, name)
    groups = {get_pod(api, namespace, name)["metadata"]["annotations"]["pod-group-name"] for name in members}
    assert len(groups) == 1 and groups.pop().startswith("pg-gang-"), "one PodGroup for the Job"


def test_without_the_annotation_each_pod_of_a_job_binds_on_its_own(api, nodes, namespace, start_scheduler, pool):
    schedulable_node(api, nodes, pool, 1)
    scheduler = start_scheduler([queue("team-a")])
    create_job(api, namespace, "batch", scheduler.name, pool, pods=2, gpus=1, min_member=None)
    members = job_pods(api, namespace, "batch", 2)
    bound = wait_until(lambda: [n for n in members if get_pod(api, namespace, n)["spec"].get("nodeName")], 20,
                       what="one pod of the Job bound")
    [waiting] = set(members) - set(bound)
    message = wait_unschedulable(api, namespace, waiting)
    assert "didn't have enough free GPUs" in message and "gang" not in message, message


def test_a_gang_over_its_queue_limit_waits_with_the_limit_in_its_message(api, nodes, namespace, start_scheduler,
                                                                        pool):
    schedulable_node(api, nodes, pool, 4)
    scheduler = start_scheduler([queue("team-a", limit=1)])
    create_job(api, namespace, "gang", scheduler.name, pool, pods=2, gpus=1, min_member=2)
    for name in job_pods(api, namespace, "gang", 2):
        message = wait_unschedulable(api, namespace, name)
        assert message.startswith(GANG_OF_2_SHORT) and "quota has reached the allowable limit" in message, message
        assert stays_unbound(api, namespace, name, 0.5)


def test_preemption_takes_the_whole_gang_and_its_replacements_wait_as_a_gang(api, nodes, namespace,
                                                                            start_scheduler, pool):
    schedulable_node(api, nodes, pool, 2)
    scheduler = start_scheduler([queue("team-a", quota=2)])
    create_job(api, namespace, "gang", scheduler.name, pool, pods=2, gpus=1, min_member=2)
    members = job_pods(api, namespace, "gang", 2)
    for name in members:
        wait_bound(api, namespace, name)

    # A non-preemptible pod of the same queue needs one GPU: one member would do, the gang goes as a whole.
    create_pod(api, namespace, pod_body("build", scheduler.name, pool, 1, queue="team-a",
                                        labels={"priorityClassName": "build"}))
    for name in members:
        wait_until(lambda name=name: get_pod(api, namespace, name) is None, 20, what=f"{name} evicted")
        [event] = events_for(api, namespace, name, "Evict")
        assert "was preempted by higher priority workload" in event["message"], event["message"]
    wait_bound(api, namespace, "build")

    # The Job controller replaces both; one GPU is left, so neither replacement binds.
    replacements = wait_until(lambda: [n for n in job_pods(api, namespace, "gang", 2) if n not in members] or None,
                              30, what="the Job's replacement pods")
    for name in replacements:
        assert wait_unschedulable(api, namespace, name).startswith(GANG_OF_2_SHORT)
        assert stays_unbound(api, namespace, name, 0.5)


def test_reclaim_takes_the_whole_gang_from_a_queue_over_its_quota(api, nodes, namespace, start_scheduler, pool):
    schedulable_node(api, nodes, pool, 2)
    scheduler = start_scheduler([queue("over", quota=0), queue("owner", quota=1)])
    create_job(api, namespace, "gang", scheduler.name, pool, pods=2, gpus=1, min_member=2, queue_name="over")
    members = job_pods(api, namespace, "gang", 2)
    for name in members:
        wait_bound(api, namespace, name)

    create_pod(api, namespace, pod_body("owner", scheduler.name, pool, 1, queue="owner"))
    for name in members:
        wait_until(lambda name=name: get_pod(api, namespace, name) is None, 20, what=f"{name} reclaimed")
        [event] = events_for(api, namespace, name, "Evict")
        assert "was preempted by workload" in event["message"], event["message"]
    wait_bound(api, namespace, "owner")
