"""Reject bad answers before cookiecutter writes anything.

Every rule here exists because Kubernetes, Run:ai or MLflow would otherwise reject
the job later, after an MLflow run was already created (and left RUNNING).
All problems are collected and printed at once; a non-zero exit makes cookiecutter
remove the half-made output folder.

The module is self-contained (cookiecutter runs hooks as standalone scripts) and
importable (tests and ``local_extensions`` use its pure functions).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import tempfile
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

# MLflow names the Job "<slug>-<26-char timestamp>"; Job names (and the job-name
# label the API server derives from them) must stay within 63 characters.
SLUG_MAX = 30
JOB_NAME_SUFFIX = len("-2026-12-02-17-05-07-123456")  # MLflow's "-%Y-%m-%d-%H-%M-%S-%f"
# The most pods one training spans (nodes). With nodes >= 2 each pod's hostname is "<job>-<index>", a DNS
# label of at most 63 characters too: SLUG_MAX leaves room for the largest index (a template test checks).
MAX_NODES = 256
POD_HOSTNAME_MAX = 63
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
CPU_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?|\.[0-9]+|[0-9]+m)$")
MEMORY_QUANTITY = re.compile(r"^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$")
MEMORY_UNITS = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}
# The distribution reference grammar (docker/distribution reference/regexp.go), condensed.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST_PART = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_DOMAIN = rf"(?:{_HOST_PART}(?:\.{_HOST_PART})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
REPOSITORY = re.compile(rf"^(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*$")
IMAGE_REFERENCE = re.compile(
    rf"^(?P<repo>(?:{_DOMAIN}/)?{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?(?:@(?P<digest>[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}))?$"
)
FREE_TEXT_FIELDS = ("project_name", "description", "author")
GPU_NUMBER = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
GPU_DECIMALS = re.compile(r"^[0-9]*(\.[0-9]{0,2})?$")
MAX_GPU_DEVICES = 16  # the most GPUs a node carries (DGX/HGX: 8; 16 for the largest)


@dataclass(frozen=True)
class Problem:
    field: str
    value: object
    rule: str

    def __str__(self) -> str:
        return f"{self.field} = {self.value!r}: {self.rule}"


@dataclass(frozen=True)
class GpuRequest:
    """What the pod asks of Run:ai's GPUs: whole GPUs become a limit; a fraction or an amount of GPU memory
    becomes an annotation, on one device or, with `devices`, on each of several (gpu-fraction-num-devices)."""

    kind: str  # "none" | "whole" | "fraction" | "memory"
    count: int = 0
    fraction: str = ""
    memory_mib: int = 0
    devices: int = 1

    @property
    def shared(self) -> bool:
        return self.kind in ("fraction", "memory")

    @property
    def summary(self) -> str:
        """The request in a few characters, for the pod's environment and the run's tags."""
        amount = {"none": "0", "whole": str(self.count), "fraction": self.fraction,
                  "memory": f"{self.memory_mib}MiB"}[self.kind]
        return f"{amount}x{self.devices}" if self.devices > 1 else amount

    @property
    def processes(self) -> int:
        """Training processes a PyTorch pod runs, one per GPU it spans (torchrun starts them from 2 on)."""
        return self.count if self.kind == "whole" else self.devices if self.shared else 1


def parse_gpu(raw: object) -> GpuRequest:
    """Parse a GPU answer; raise ValueError with the rule it breaks."""
    text = str(raw).strip()
    if text.startswith("-"):
        raise ValueError("must not be negative")
    if not GPU_NUMBER.match(text):
        raise ValueError("must be a plain decimal number: a whole number of GPUs, a fraction between 0 and 1, "
                         "or 0 (no exponent such as 1e-5)")
    if not GPU_DECIMALS.match(text):
        raise ValueError("must have at most two decimals: Run:ai accepts GPU fractions in steps of 0.01")
    value = float(text)
    if value == 0:
        return GpuRequest("none")
    if value < 1:
        return GpuRequest("fraction", fraction=repr(value))
    if value != int(value):
        raise ValueError(
            "a GPU request of 1 or more must be a whole number (Kubernetes extended resources "
            "are integers); use a fraction between 0 and 1 to share one GPU"
        )
    return GpuRequest("whole", count=int(value))


def parse_gpu_request(answers: dict) -> GpuRequest:
    """The gpu, gpu_memory and gpu_devices answers together; raise GpuAnswerError naming the field it breaks."""
    try:
        gpu = parse_gpu(answers.get("gpu", "1"))
    except ValueError as err:
        raise GpuAnswerError("gpu", answers.get("gpu"), str(err)) from None
    memory_text = str(answers.get("gpu_memory", "")).strip()
    devices_text = str(answers.get("gpu_devices", "1")).strip()
    if not (devices_text.isascii() and devices_text.isdigit()) or not 1 <= int(devices_text) <= MAX_GPU_DEVICES:
        raise GpuAnswerError("gpu_devices", devices_text,
                             f"must be a whole number from 1 to {MAX_GPU_DEVICES}: the GPUs a shared request spans")
    devices = int(devices_text)
    if memory_text:
        if not (memory_text.isascii() and memory_text.isdigit()) or int(memory_text) < 1:
            raise GpuAnswerError("gpu_memory", memory_text, "must be a whole number of MiB (e.g. 4096 for 4 GiB) or "
                                 "empty; Run:ai's gpu-memory annotation takes MiB per device")
        if gpu.kind != "whole" or gpu.count != 1:
            raise GpuAnswerError("gpu", answers.get("gpu"), "must be 1 when gpu_memory is set: GPU memory replaces a "
                                 "fraction (gpu-memory and gpu-fraction are exclusive); gpu_devices spreads it over "
                                 "more GPUs")
        return GpuRequest("memory", memory_mib=int(memory_text), devices=devices)
    if devices > 1:
        if gpu.kind != "fraction":
            raise GpuAnswerError("gpu_devices", devices_text, "must be 1 unless gpu is a fraction or gpu_memory is "
                                 "set: for whole GPUs, give their number as gpu")
        return GpuRequest("fraction", fraction=gpu.fraction, devices=devices)
    return gpu


class GpuAnswerError(ValueError):
    def __init__(self, field: str, value: object, rule: str):
        super().__init__(rule)
        self.problem = Problem(field, value, rule)


# Yes/no answers arrive as booleans from cookiecutter 2.7, but as the strings "True"/"False" from
# older versions' command lines and replay files; "False" would be truthy in the template.
YES_NO_FIELDS = ("large_shm",)
YES = {"true", "yes", "y", "on", "1"}
NO = {"false", "no", "n", "off", "0"}


def parse_yes_no(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    word = str(raw).strip().lower()
    if word in YES | NO:
        return word in YES
    raise ValueError("must be yes or no (true/false, y/n, on/off, 1/0)")


def parse_cpu(text: str) -> Decimal:
    if not CPU_QUANTITY.match(text):
        raise ValueError("must be a CPU quantity such as 1, 0.5 or 500m")
    return Decimal(text[:-1]) / 1000 if text.endswith("m") else Decimal(text)


def parse_memory(text: str) -> Decimal:
    match = MEMORY_QUANTITY.match(text)
    if not match:
        raise ValueError("must be a memory quantity such as 512Mi, 2Gi or 4G")
    return Decimal(match.group(1)) * MEMORY_UNITS[match.group(2) or ""]


def _check_free_text(answers: dict, problems: list[Problem]) -> None:
    for field in FREE_TEXT_FIELDS:
        value = str(answers.get(field, ""))
        if "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value):
            problems.append(Problem(field, value, "must be valid Unicode text without NUL characters"))
    if not str(answers.get("project_name", "")).strip():
        problems.append(Problem("project_name", answers.get("project_name"), "must not be empty"))


# Paths the pod needs for itself: the environment, MLflow's copy of the code, HOME, the system.
RESERVED_MOUNT_PATHS = ("/opt/venv", "/mlflow", "/tmp", "/dev", "/proc", "/sys", "/etc", "/usr", "/bin", "/lib",
                        "/home/mlflow")


def mount_path_problem(path: str) -> str | None:
    if not path.startswith("/") or path != "/" + "/".join(p for p in path.split("/") if p) or any(
            part in (".", "..") for part in path.split("/")) or any(c.isspace() or c in ":\\" for c in path):
        return "must be an absolute path such as /data, without '..', spaces, ':' or a trailing '/'"
    if path == "/" or any(path == r or path.startswith(r + "/") or r.startswith(path + "/")
                          for r in RESERVED_MOUNT_PATHS):
        return f"must not be / or cover or sit inside {', '.join(RESERVED_MOUNT_PATHS)}: the pod needs those itself"
    return None


def _check_names(answers: dict, problems: list[Problem]) -> None:
    slug = str(answers.get("project_slug", ""))
    if not DNS_LABEL.match(slug):
        problems.append(Problem(
            "project_slug", slug,
            "must be a lowercase DNS label: a-z, 0-9 and '-', starting and ending with a letter or digit "
            "(it names the MLflow project, the Job, the container and the image)",
        ))
    elif len(slug) > SLUG_MAX:
        problems.append(Problem(
            "project_slug", slug,
            f"must be at most {SLUG_MAX} characters (it is {len(slug)}): MLflow names the Job "
            "'<slug>-<26-character timestamp>' and Kubernetes caps Job names at 63, and pod hostnames "
            "'<job>-<index>' (several nodes) too",
        ))
    project = str(answers.get("runai_project", ""))
    if not DNS_LABEL.match(project) or len("runai-" + project) > 63:
        problems.append(Problem(
            "runai_project", project,
            "must be a lowercase DNS label (a-z, 0-9, '-') of at most 57 characters, "
            "since the namespace is 'runai-<project>'",
        ))
    scheduler = str(answers.get("scheduler_name", ""))
    if not DNS_SUBDOMAIN.match(scheduler) or len(scheduler) > 253:
        problems.append(Problem("scheduler_name", scheduler, "must be a lowercase DNS name such as runai-scheduler"))
    for field in ("node_type", "node_pool"):
        value = str(answers.get(field, ""))
        if not LABEL_VALUE.match(value) or len(value) > 63:
            problems.append(Problem(
                field, value,
                "must be empty or a Kubernetes label value: at most 63 of A-Z a-z 0-9 - _ ., "
                "starting and ending alphanumeric",
            ))
    for field in ("image_pull_secret", "credentials_secret"):
        value = str(answers.get(field, ""))
        if value and (not DNS_SUBDOMAIN.match(value) or len(value) > 253):
            problems.append(Problem(field, value, "must be empty or a Secret name (lowercase DNS name)"))
    priority = str(answers.get("priority_class", ""))
    if not DNS_SUBDOMAIN.match(priority) or len(priority) > 63:
        problems.append(Problem(
            "priority_class", priority,
            "must be a PriorityClass name of at most 63 characters (lowercase DNS name): it is set as the "
            "priorityClassName label, e.g. train, build-preemptible, build, inference",
        ))
    pvc = str(answers.get("data_pvc", ""))
    if pvc and (not DNS_SUBDOMAIN.match(pvc) or len(pvc) > 253):
        problems.append(Problem("data_pvc", pvc, "must be empty or a PersistentVolumeClaim name (lowercase DNS name) "
                                                 "in the project namespace"))
    mount = str(answers.get("data_mount_path", ""))
    problem = mount_path_problem(mount)
    if problem:
        problems.append(Problem("data_mount_path", mount, problem))
    context = str(answers.get("kube_context", ""))
    if context != context.strip() or any(c.isspace() and c != " " for c in context):
        problems.append(Problem("kube_context", context, "must be a context name from 'kubectl config get-contexts'"))


# Each framework has its own trainer.py, requirements and parameters in the template.
FRAMEWORKS = ("sklearn", "pytorch")


def _check_choices(answers: dict, problems: list[Problem]) -> None:
    framework = answers.get("framework", FRAMEWORKS[0])
    if framework not in FRAMEWORKS:
        problems.append(Problem("framework", framework, f"must be one of {', '.join(FRAMEWORKS)}: the template "
                                "has a training script for each of these and no other"))


def _check_yes_no(answers: dict, problems: list[Problem]) -> None:
    for field in YES_NO_FIELDS:
        try:
            parse_yes_no(answers.get(field, False))
        except ValueError as err:
            problems.append(Problem(field, answers.get(field), str(err)))


def _check_images(answers: dict, problems: list[Problem]) -> None:
    base = str(answers.get("base_image", ""))
    match = IMAGE_REFERENCE.match(base)
    if not match:
        problems.append(Problem("base_image", base, "must be an image reference such as python:3.11-slim"))
    elif not (match.group("tag") or match.group("digest")):
        problems.append(Problem(
            "base_image", base, "must name a tag or digest, e.g. python:3.11-slim, so builds are reproducible"))
    elif match.group("tag") == "latest" and not match.group("digest"):
        problems.append(Problem(
            "base_image", base, "must not be ':latest'; pin a version tag so builds are reproducible"))
    repo = str(answers.get("image_repository", ""))
    if repo != repo.lower():
        problems.append(Problem(
            "image_repository", repo, "must be lowercase (Docker rejects uppercase repository names)"))
    elif not REPOSITORY.match(repo):
        problems.append(Problem(
            "image_repository", repo,
            "must be an image repository without tag or digest, e.g. registry.example.com/team/project "
            "(MLflow adds the tag)",
        ))
    elif match and match.group("repo") == repo:
        problems.append(Problem(
            "image_repository", repo,
            "must differ from the base image's repository: MLflow pushes the project image there",
        ))


def _check_resources(answers: dict, problems: list[Problem]) -> GpuRequest | None:
    gpu = None
    try:
        gpu = parse_gpu_request(answers)
    except GpuAnswerError as err:
        problems.append(err.problem)
    for kind, parse in (("cpu", parse_cpu), ("memory", parse_memory)):
        request_field, limit_field = f"{kind}_request", f"{kind}_limit"
        request_text = str(answers.get(request_field, "")).strip()
        limit_text = str(answers.get(limit_field, "")).strip()
        request = limit = None
        try:
            request = parse(request_text)
            if request <= 0:
                raise ValueError("must be greater than zero")
        except (ValueError, InvalidOperation) as err:
            problems.append(Problem(request_field, request_text, str(err)))
        if limit_text:
            try:
                limit = parse(limit_text)
            except (ValueError, InvalidOperation) as err:
                problems.append(Problem(limit_field, limit_text, str(err) + " (or empty for no limit)"))
        if request is not None and limit is not None and limit < request:
            problems.append(Problem(limit_field, limit_text, f"must not be below {request_field} ({request_text})"))
    return gpu


INT32_MAX = 2**31 - 1  # Kubernetes stores these fields as 32-bit integers


def _check_durations(answers: dict, problems: list[Problem]) -> None:
    rules = {
        "active_deadline_seconds": (1, "must be a positive whole number of seconds"),
        "ttl_seconds_after_finished": (300, "must be a whole number of seconds, at least 300: MLflow polls the "
                                            "Job every 5 s and crashes if it was already deleted"),
        "max_preemptions": (0, "must be a whole number, 0 or more (the Job's backoffLimit: how many preemptions "
                               "without a DisruptionTarget condition a run survives; 0 fails on the first)"),
        "termination_grace_period_seconds": (10, "must be a whole number of seconds, at least 10: after SIGTERM "
                                                 "train.py finishes its epoch and uploads a checkpoint"),
    }
    for field, (minimum, rule) in rules.items():
        text = str(answers.get(field, "")).strip()
        if not (text.isascii() and text.isdigit()) or not minimum <= int(text) <= INT32_MAX:
            problems.append(Problem(field, text, rule))


def _check_combinations(answers: dict, gpu: GpuRequest | None, problems: list[Problem]) -> None:
    pull, creds = str(answers.get("image_pull_secret", "")), str(answers.get("credentials_secret", ""))
    if pull and pull == creds:
        problems.append(Problem(
            "credentials_secret", creds,
            "must differ from image_pull_secret: a registry pull secret holds .dockerconfigjson, "
            "not environment variables",
        ))
    if gpu and gpu.shared and answers.get("scheduler_name") == "default-scheduler":
        field = "gpu_memory" if gpu.kind == "memory" else "gpu"
        problems.append(Problem(
            field, answers.get(field),
            f"a shared GPU ({'GPU memory' if gpu.kind == 'memory' else 'a fraction'}) needs the Run:ai scheduler; "
            "default-scheduler ignores the gpu-fraction and gpu-memory annotations",
        ))


def _check_distributed(answers: dict, gpu: GpuRequest | None, problems: list[Problem]) -> None:
    if gpu is None or gpu.processes < 2 or answers.get("framework") != "pytorch":
        return
    try:
        large_shm = parse_yes_no(answers.get("large_shm", True))
    except ValueError:
        return  # reported by _check_yes_no
    if not large_shm:
        problems.append(Problem(
            "large_shm", answers.get("large_shm"),
            f"must be yes when a PyTorch pod spans {gpu.processes} GPUs: its {gpu.processes} processes pass "
            "gradients through /dev/shm (NCCL), and a container's default 64 MiB fails or slows them",
        ))


def parse_nodes(raw: object) -> int:
    """The nodes answer as a number of pods; raise ValueError with the rule it breaks."""
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_NODES:
        raise ValueError(f"must be a whole number from 1 to {MAX_NODES}: the pods (one per node) the training "
                         "spans; 1 for a single pod")
    return int(text)


def longest_pod_hostname(slug: str, nodes: int) -> int:
    """The length of the last pod's hostname, "<slug>-<timestamp>-<index>", the rendezvous name of a pod."""
    return len(slug) + JOB_NAME_SUFFIX + len(f"-{nodes - 1}")


def _check_nodes(answers: dict, gpu: GpuRequest | None, problems: list[Problem]) -> None:
    raw = answers.get("nodes", "1")
    try:
        nodes = parse_nodes(raw)
    except ValueError as err:
        problems.append(Problem("nodes", raw, str(err)))
        return
    if nodes == 1:
        return
    if answers.get("framework") != "pytorch":
        problems.append(Problem("nodes", raw, "must be 1 with framework sklearn: it trains in one process; "
                                              "training across nodes needs framework pytorch (torchrun, DDP)"))
        return  # what else would be wrong depends on the framework chosen
    if gpu is not None and gpu.kind != "whole":
        problems.append(Problem(
            "gpu", answers.get("gpu"),
            f"must be a whole number of GPUs (1 or more) when nodes is {nodes}: each pod of a distributed job "
            "holds its GPUs whole (NCCL between nodes); a fraction, GPU memory or no GPU cannot be spread over nodes",
        ))
    if answers.get("scheduler_name") == "default-scheduler":
        problems.append(Problem(
            "scheduler_name", answers.get("scheduler_name"),
            f"must be the Run:ai scheduler when nodes is {nodes}: it starts the {nodes} pods together or not at "
            "all (kai.scheduler/batch-min-member); default-scheduler places them one by one, and a part-placed "
            "job holds its GPUs while it waits for the rest",
        ))
    slug = answers.get("project_slug", "")
    if DNS_LABEL.match(slug) and not slug[0].isalpha():
        problems.append(Problem(
            "project_slug", slug,
            f"must start with a letter when nodes is {nodes}: it names the headless Service {slug}-peers, and "
            "Kubernetes refuses a Service name that starts with a digit (RFC 1035 label)",
        ))


def validate(answers: dict) -> list[Problem]:
    """Return every problem with the answers, in question order."""
    problems: list[Problem] = []
    _check_free_text(answers, problems)
    _check_names(answers, problems)
    _check_choices(answers, problems)
    gpu = _check_resources(answers, problems)
    _check_yes_no(answers, problems)
    _check_images(answers, problems)
    _check_durations(answers, problems)
    _check_combinations(answers, gpu, problems)
    _check_distributed(answers, gpu, problems)
    _check_nodes(answers, gpu, problems)
    return problems


def save_for_rerun(answers: dict) -> Path:
    """Keep the typed answers as a replay file, so fixing one answer does not mean typing all again."""
    public = {key: value for key, value in answers.items() if not key.startswith("_")}
    slug = "".join(c for c in str(answers.get("project_slug", "")) if c.isalnum() or c == "-")[:30] or "project"
    handle, path = tempfile.mkstemp(prefix=f"runai-mlflow-{slug}-", suffix=".json")
    with os.fdopen(handle, "w") as out:
        json.dump({"cookiecutter": public}, out, indent=2, ensure_ascii=False)
    return Path(path)


def report(problems: list[Problem], answers: dict, saved: Path | None) -> str:
    lines = [f"runai-mlflow: {len(problems)} answer(s) need fixing; nothing was generated."]
    lines += [f"  - {problem}" for problem in problems]
    if saved:
        output = f" -o {shlex.quote(str(answers['_output_dir']))}" if answers.get("_output_dir") else ""
        lines.append(f"Your answers are saved in {saved}. Fix the fields above in that file, then run:")
        lines.append(f"  cookiecutter {shlex.quote(str(answers.get('_template', '<template>')))} "
                     f"--replay-file {shlex.quote(str(saved))}{output}")
    else:
        lines.append("Fix them and run cookiecutter again.")
    return "\n".join(lines)


def main(answers: dict) -> int:
    problems = validate(answers)
    if problems:
        try:
            saved = save_for_rerun(answers)
        except OSError:
            saved = None
        print(report(problems, answers, saved), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    # Cookiecutter renders this file with Jinja first: the answers arrive as a Python string literal.
    sys.exit(main(json.loads({{ cookiecutter | jsonify | py_str }})))  # noqa: F821
