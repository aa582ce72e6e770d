"""Run:ai's names for what a workload asks and a node offers, spelled once.

The fake scheduler reads them, the cluster helpers write them, the suite asserts them: a name typed in
several places drifts. Sources: KAI Scheduler (NVIDIA's open-sourced Run:ai scheduler) and Run:ai's
documentation for `runai submit`. The generated project writes the same names in its Job template;
the template tests check those against this module.
"""

from __future__ import annotations

SCHEDULER_NAME = "runai-scheduler"  # spec.schedulerName Run:ai serves
DEFAULT_QUEUE = "default-queue"  # KAI's queue for pods that name none

# Labels on a pod or its Job (the Job's win).
QUEUE_LABEL = "runai/queue"  # the Run:ai project's queue; also on the project's namespace
PROJECT_LABEL = "project"  # KAI's fallback for the queue
PRIORITY_LABEL = "priorityClassName"  # names a PriorityClass: train, build, ...
PREEMPTIBILITY_LABEL = "kai.scheduler/preemptibility"  # preemptible | non-preemptible, overrides the priority's
NODE_POOL_LABEL = "runai/node-pool"  # also on nodes: a pod sees only its pool's nodes

# Namespace label of a Run:ai project's namespace (runai-<project>).
NAMESPACE_VERSION_LABEL = "runai/namespace-version"

# Job annotation: its pods are one gang of N, bound all together or not at all (KAI v0.15+; without it each
# pod of a batch Job is scheduled, preempted and reclaimed on its own).
BATCH_MIN_MEMBER_ANNOTATION = "kai.scheduler/batch-min-member"

# Pod annotations of a shared GPU request.
FRACTION_ANNOTATION = "gpu-fraction"  # 0 < f < 1 of one device
MEMORY_ANNOTATION = "gpu-memory"  # MiB per device, instead of a fraction
DEVICES_ANNOTATION = "gpu-fraction-num-devices"  # the fraction or memory on each of this many devices

# What the scheduler writes on a pod it binds.
POD_GROUP_ANNOTATION = "pod-group-name"
RESOURCE_TYPE_ANNOTATION = "received-resource-type"  # Regular | Fraction
ALLOCATED_GPUS_ANNOTATION = "runai-allocated-gpus"
GPU_INDEX_ANNOTATION = "runai-gpu-index"  # the devices of a shared request, "0,1"
GPU_GROUP_LABEL = "runai-gpu-group"  # pods sharing a device select each other by it

# Resources and node labels (the GPU operator's, read by Run:ai).
GPU_RESOURCE = "nvidia.com/gpu"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per device; without it a node takes no gpu-memory pod
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
NODE_TYPE_LABEL = "run.ai/type"  # `runai submit --node-type` selects on it

# Run:ai / KAI priority classes (KAI deployments/kai-scheduler/templates/priorityclasses); preemptible below 100.
PRIORITY_CLASSES = {"train": 50, "build-preemptible": 75, "interactive-preemptible": 75, "build": 100,
                    "inference": 125}
TRAIN_PRIORITY = PRIORITY_CLASSES["train"]
NON_PREEMPTIBLE_PRIORITY = 100
