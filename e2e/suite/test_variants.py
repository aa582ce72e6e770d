"""Every variant of the matrix runs end to end: `mlflow run --backend kubernetes` under the fake Run:ai scheduler."""

import math
import subprocess

import mlflow
import pytest
from runai.names import (
    DEVICES_ANNOTATION,
    FRACTION_ANNOTATION,
    MEMORY_ANNOTATION,
    NODE_TYPE_LABEL,
    POD_GROUP_ANNOTATION,
    QUEUE_LABEL,
    SCHEDULER_NAME,
)

from .data_claim import DATA_FILES
from .preemption import by_index
from .variants import MATRIX, NODE_TYPE

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("variant", MATRIX, ids=[v.id for v in MATRIX])
def test_variant_runs_end_to_end(concurrent_runs, e2e, variant, timed_assertions):
    if e2e.cannot_run(variant):
        pytest.skip(e2e.cannot_run(variant))
    outcome = concurrent_runs[variant.id]
    timed_assertions["outcome"] = outcome
    assert not outcome.error, outcome.describe()
    assert outcome.exit_code == 0, outcome.describe()

    # The MLflow run finished with what train.py logs, from inside the pod.
    run = outcome.run
    assert run is not None and run.info.status == "FINISHED", outcome.describe()
    assert {*variant.framework.metrics, *variant.framework.final_metrics} <= set(run.data.metrics)
    assert run.data.params == {**variant.entry_point_defaults, **variant.params}
    assert run.data.tags["restarts"] == "0", "a run that was never preempted started once"
    assert run.data.tags["mlflow.project.backend"] == "kubernetes"
    assert run.data.tags["runtime.uid"] == "1000", "the container must run as non-root"
    assert run.data.tags["gpu.requested"] == variant.gpu_request
    # The pod's CPU limit, as its cgroup shows it, and no more threads per training process than its share.
    limit = variant.cpu_limit
    assert run.data.tags["cpu.limit"] == (f"{limit:g}" if limit else "none"), run.data.tags
    if limit:
        assert 1 <= int(run.data.tags["cpu.threads"]) <= max(1, math.floor(limit) // variant.procs_per_node), \
            (run.data.tags, variant.procs_per_node)
    [model] = outcome.models
    assert model.source_run_id == run.info.run_id

    # The Job completed in the Run:ai project namespace.
    [job] = outcome.jobs
    assert job["metadata"]["namespace"] == f"runai-{outcome.project}"
    assert any(c["type"] == "Complete" and c["status"] == "True" for c in job["status"].get("conditions", []))
    # One pod per node, by index: the pod of index 0 holds rank 0, which logs.
    pods = by_index(outcome.pods)
    assert len(pods) == variant.nodes, [p["metadata"]["name"] for p in pods]
    pod = pods[0]

    # make run printed where the run is, the pods' logs as they came and how each ended; the run keeps the logs.
    pod_name, run_id = pod["metadata"]["name"], run.info.run_id
    assert f"run: {e2e.tracking.uri}/#/experiments/{run.info.experiment_id}/runs/{run_id}" in outcome.output
    assert f"[{pod_name}] run {run_id}: " in outcome.output, "train.py's last line, streamed from rank 0's pod"
    for each in pods:
        assert f"pod {each['metadata']['name']} ended: exit 0: finished" in outcome.output
    kept = mlflow.MlflowClient(e2e.tracking.uri).list_artifacts(run_id, "pod-logs")
    assert sorted(k.path.split("-", 2)[-1] for k in kept) == sorted(f"{p['metadata']['name']}.log" for p in pods)
    if variant.nodes > 1:
        # One gang, bound together; each pod named under the project's headless Service, which make run made.
        assert len({p["metadata"]["annotations"][POD_GROUP_ANNOTATION] for p in pods}) == 1
        assert [p["spec"]["hostname"] for p in pods] == [f"{job['metadata']['name']}-{i}" for i in range(len(pods))]
        assert {p["spec"]["subdomain"] for p in pods} == {f"{outcome.slug}-peers"}
        assert f"created the headless Service {outcome.slug}-peers" in outcome.output

    # The fake Run:ai scheduler bound the pod, with the GPU allocation the answers asked for.
    if e2e.scheduler:
        scheduled = outcome.pod_events("Scheduled")
        assert scheduled and scheduled[-1]["source"]["component"] == SCHEDULER_NAME, outcome.events
        annotations = pod["metadata"]["annotations"]
        assert annotations["received-resource-type"] == variant.resource_type
        assert float(annotations["runai-allocated-gpus"]) == variant.allocated_gpus
        assert annotations[QUEUE_LABEL] == outcome.project
        if variant.shared:
            assert pod["metadata"]["labels"]["runai-gpu-group"] == annotations["runai-gpu-group"]
            assert len(set(annotations["runai-gpu-index"].split(","))) == variant.gpu_devices, "distinct devices"
    # What the Job template asked for, as the pod carries it.
    requested = pod["metadata"]["annotations"]
    if variant.gpu_memory_mib:
        assert requested[MEMORY_ANNOTATION] == str(variant.gpu_memory_mib) and FRACTION_ANNOTATION not in requested
    elif variant.shared:
        assert float(requested[FRACTION_ANNOTATION]) == variant.gpu
    assert requested.get(DEVICES_ANNOTATION) == (str(variant.gpu_devices) if variant.gpu_devices > 1
                                                         else None)
    priority_class = variant.answers.get("priority_class") or (
        "build" if variant.answers.get("workload_type") == "interactive" else "train")
    assert job["metadata"]["labels"]["priorityClassName"] == priority_class
    assert pod["metadata"]["labels"]["priorityClassName"] == priority_class
    assert pod["spec"]["schedulerName"] == SCHEDULER_NAME
    if variant.answers.get("node_type"):
        assert pod["spec"]["nodeSelector"] == {NODE_TYPE_LABEL: e2e.target.node_type or NODE_TYPE}
    if variant.answers.get("data_pvc"):
        mount = {"name": "data", "mountPath": "/data", "readOnly": True}
        assert mount in pod["spec"]["containers"][0]["volumeMounts"]
        # The pod saw the claim's files and trained on the CSV the run was pointed at.
        tags = run.data.tags
        assert tags["data.dir"] == "/data" and tags["data.used"] == f"/data/{variant.params['data_file']}", tags
        assert tags["data.entries"] == str(len(DATA_FILES)) and tags["data.sample"] == ", ".join(sorted(DATA_FILES))
    if variant.large_shm:
        assert {"name": "dshm", "mountPath": "/dev/shm"} in pod["spec"]["containers"][0]["volumeMounts"]
    if variant.answers.get("framework") == "pytorch":
        tags = run.data.tags
        assert tags["amp"] == ("on" if tags["device"] == "cuda" else "off"), "mixed precision on CUDA only"
        if e2e.target.may_resize_gpus:  # advertised GPUs, not real ones: torch finds no CUDA and uses the CPU
            assert tags["device"] == "cpu", tags
        assert run.data.metrics["test_accuracy"] > 0.8
        procs = variant.procs_per_node
        assert (tags["world_size"], tags["procs_per_node"], tags["nodes"]) == (
            str(variant.world_size), str(procs), str(variant.nodes)), tags
        assert (f"launching {procs} training processes" in outcome.output) == (variant.world_size > 1), \
            "torchrun from 2 GPUs or 2 nodes on"
    if variant.answers.get("credentials_secret"):
        assert pod["spec"]["containers"][0]["envFrom"][0]["secretRef"]["name"] == outcome.credentials_secret
    [container] = pod["status"]["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 0
    # make image builds for linux/amd64 (PLATFORM) and MLflow's project image inherits it.
    image = pod["spec"]["containers"][0]["image"].split("@")[0]
    architecture = subprocess.run(["docker", "image", "inspect", "-f", "{{.Os}}/{{.Architecture}}", image],
                                  capture_output=True, text=True).stdout.strip()
    assert architecture == "linux/amd64", (image, architecture)
