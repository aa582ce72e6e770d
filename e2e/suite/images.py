"""Environment images and the registry: the build cache that outlives a session, and cleaning up what a run pushed."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import urllib.request
from pathlib import Path

from kube.paths import cache_root

CACHE_REPOSITORY = "runai-mlflow-cache/env"
FIRST_BUILDS = "image-first-builds.json"  # in the cache: what a user's first `make image` costs, per framework


def environment_image(project: Path) -> str:
    """The image MLproject names (what `make image` builds)."""
    return next(line.split(":", 1)[1].strip() for line in (project / "MLproject").read_text().splitlines()
                if line.strip().startswith("image:"))


def cache_tag(project: Path) -> str:
    """The build cache's tag for this project's environment: a digest of what the image is built from.

    Comments are left out: the Dockerfile's first line names the project, and each session has its own slug.
    """
    inputs = [project / "Dockerfile", *sorted(p for p in project.glob("requirements*.txt") if p.name !=
                                              "requirements-dev.txt")]
    text = "".join(line for path in inputs for line in path.read_text().splitlines(keepends=True)
                   if not line.lstrip().startswith("#"))
    return f"{CACHE_REPOSITORY}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def installed_requirements(build_output: str) -> bool:
    """Whether a `make image` ran its pip install steps instead of taking them from the layer cache.

    Docker's classic builder follows a cached step with "Using cache", BuildKit with "CACHED".
    """
    lines = build_output.splitlines()
    for i, line in enumerate(lines):
        if "pip install" in line and ("Step " in line or line.startswith("#")):
            following = next((later for later in lines[i + 1:] if later.strip()), "")
            if "Using cache" not in following and "CACHED" not in following:
                return True
    return False


def keep_build_cache(project: Path) -> None:
    """Tag the environment image by its inputs so its layers (the pip install) survive the session's cleanup.

    A build cache, like ~/.cache: it is never pushed, and the next session's `make image` reuses it.
    """
    subprocess.run(["docker", "tag", environment_image(project), cache_tag(project)], capture_output=True)


def image_size(reference: str) -> int:
    return int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", reference], check=True,
                              capture_output=True, text=True).stdout)


def record_first_build(framework: str, seconds: float, reference: str) -> None:
    """Keep what the machine's first build of an environment cost: the benchmark prints it instead of building
    a several-GB image again (as bench-cluster does for the Go builds)."""
    record = cache_root() / FIRST_BUILDS
    builds = json.loads(record.read_text()) if record.exists() else {}
    builds[framework] = {"seconds": round(seconds, 1), "bytes": image_size(reference),
                         "date": time.strftime("%Y-%m-%d %H:%M")}
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(builds, indent=2))


def first_builds() -> dict:
    record = cache_root() / FIRST_BUILDS
    return json.loads(record.read_text()) if record.exists() else {}


def images_of(repository: str) -> list[str]:
    out = subprocess.run(["docker", "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository],
                         capture_output=True, text=True).stdout.split()
    return [image for image in out if not image.endswith(":<none>")]


MANIFEST_TYPES = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                            "application/vnd.oci.image.manifest.v1+json",
                            "application/vnd.docker.distribution.manifest.list.v2+json",
                            "application/vnd.oci.image.index.v1+json"])


def registry_tags(registry: str, repository: str) -> list[str]:
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/{repository}/tags/list", timeout=5) as response:
            return json.loads(response.read()).get("tags") or []
    except OSError:
        return []


def delete_registry_repository(registry: str, repository: str) -> None:
    for tag in registry_tags(registry, repository):
        head = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{tag}", method="HEAD",
                                      headers={"Accept": MANIFEST_TYPES})
        try:
            with urllib.request.urlopen(head, timeout=5) as response:
                digest = response.headers["Docker-Content-Digest"]
            urllib.request.urlopen(urllib.request.Request(
                f"http://{registry}/v2/{repository}/manifests/{digest}", method="DELETE"), timeout=5).close()
        except OSError:
            pass
