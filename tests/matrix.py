"""A curated option matrix: every option value appears at least once, combined where it matters."""

# Each entry varies a few answers from the defaults; the id says which.
VARIANTS = [
    {},
    {"gpu": "0.5"},
    {"gpu": "0.25", "workload_type": "interactive"},
    {"gpu": "0", "cpu_limit": "", "memory_limit": ""},
    {"gpu": "4", "large_shm": True, "memory_request": "16Gi", "memory_limit": "32Gi"},
    {"framework": "pytorch", "gpu": "0.5", "large_shm": False},
    {"gpu": "0.5", "gpu_devices": "2", "data_pvc": "team-datasets", "data_mount_path": "/mnt/datasets"},
    {"gpu": "1", "gpu_memory": "20480", "priority_class": "build-preemptible"},
    {"gpu": "1", "gpu_memory": "4096", "gpu_devices": "4", "workload_type": "interactive",
     "priority_class": "inference", "data_pvc": "imagenet"},
    {"framework": "pytorch", "gpu": "2", "workload_type": "interactive",
     "base_image": "nvcr.io/nvidia/pytorch:25.10-py3"},
    {"workload_type": "interactive", "gpu": "1", "max_preemptions": "0"},
    {"framework": "pytorch", "gpu": "2", "nodes": "2", "max_preemptions": "3"},
    {"max_preemptions": "100", "termination_grace_period_seconds": "600"},
    {"node_type": "dgx-a100", "node_pool": "a100-pool"},
    {"kube_context": "runai-prod", "image_pull_secret": "regcred", "credentials_secret": "mlflow-s3",
     "image_repository": "registry.example.com:5000/vision/segmenter"},
    {"description": 'Quotes "and" colons: # not a comment, and long enough to pass the line-length limit of the '
                    "generated code's own linter, which must still pass", "author": "Zoë O'Brien <zoe@example.com>"},
    {"scheduler_name": "default-scheduler", "gpu": "2", "base_image": "local/python:3.11-bookworm"},
    {"project_name": "x", "project_slug": "a" * 30, "runai_project": "r" * 57,
     "active_deadline_seconds": "60", "ttl_seconds_after_finished": "300", "cpu_request": "250m", "cpu_limit": "500m",
     "termination_grace_period_seconds": "10"},
]


def variant_id(variant: dict) -> str:
    if not variant:
        return "defaults"
    return "-".join(f"{key}={str(value)[:12] or 'empty'}" for key, value in variant.items())
