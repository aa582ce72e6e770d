"""Docker, the loopback registry, and the images built here because none can be pulled.

- pause: a static Go program in a FROM-scratch image, the pod sandbox image containerd uses.
- local/python:3.11-bookworm: Debian bookworm from debootstrap with python3/venv/pip, imported
  into Docker, carrying this machine's CA bundle so pip inside `docker build` trusts the package
  index exactly as the host does. Usable as a generated project's base_image.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path

from kube import WaitFailed, wait_until

from . import runc_clamp
from .procs import Daemon
from .progress import ClusterError, say, step
from .settings import ClusterSettings

PYTHON_BASE_IMAGE = "local/python:3.11-bookworm"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
    "PIP_CERT": "/etc/ssl/certs/ca-certificates.crt",
    "REQUESTS_CA_BUNDLE": "/etc/ssl/certs/ca-certificates.crt",
}


def services_dir(settings: ClusterSettings) -> Path:
    """Pid files and logs of the shared services (Docker, registry); they outlive a cluster's state."""
    return settings.state_dir.parent / "services"


# Docker's default runtime where root lacks a capability: kind's privileged nodes start through it.
CLAMPED_RUNTIME = "runai-mlflow-runc"


def dockerd(settings: ClusterSettings) -> Daemon:
    base = services_dir(settings)
    argv = ["dockerd", "--pidfile", str(base / "dockerd.docker-pid")]
    if runc_clamp.withheld_capabilities():
        argv += ["--add-runtime", f"{CLAMPED_RUNTIME}={base / 'runc-clamp'}", "--default-runtime", CLAMPED_RUNTIME]
    return Daemon("dockerd", argv, base / "dockerd.pid", base / "dockerd.log")


def registry(settings: ClusterSettings) -> Daemon:
    base = services_dir(settings)
    return Daemon("registry", [shutil.which("docker-registry") or "docker-registry", "serve",
                               str(base / "registry.yml")], base / "registry.pid", base / "registry.log")


def docker_ready() -> bool:
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


def docker_default_runtime() -> str:
    return subprocess.run(["docker", "info", "--format", "{{.DefaultRuntime}}"], capture_output=True,
                          text=True).stdout.strip()


def ensure_docker(settings: ClusterSettings) -> None:
    withheld = runc_clamp.withheld_capabilities()
    if docker_ready():
        runtime = docker_default_runtime() if withheld else CLAMPED_RUNTIME
        if runtime != CLAMPED_RUNTIME:
            say(f"note: Docker here runs {runtime}, and root lacks {', '.join(withheld)}: privileged containers "
                "(kind's nodes) will not start. The local cluster does not need them; `make cluster-down` stops a "
                f"Docker it started, and the next `make cluster-up` starts it with {CLAMPED_RUNTIME} (runc_clamp.py).")
        return
    with step("start Docker (dockerd)"):
        daemon = dockerd(settings)
        if not daemon.alive():
            if withheld:
                runc_clamp.install(services_dir(settings) / "runc-clamp")
            daemon.start()
        _wait_for_service(daemon, docker_ready, 60)


def _wait_for_service(daemon: Daemon, ready, timeout: float) -> None:
    try:
        wait_until(ready, timeout, f"{daemon.name} to be ready", give_up=lambda: not daemon.alive() and "it exited")
    except WaitFailed as err:
        raise ClusterError(str(err), daemon.log_file) from None


def registry_ready(settings: ClusterSettings) -> bool:
    try:
        with urllib.request.urlopen(f"http://{settings.registry}/v2/", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def registry_storage(settings: ClusterSettings) -> Path:
    """The registry's blobs are a cache, kept by `down` like the binaries: a 6 GB pytorch environment
    image is compressed and pushed once per machine, not once per cluster (gzip on one core takes minutes)."""
    return settings.cache_dir / "registry"


def ensure_registry(settings: ClusterSettings) -> None:
    if registry_ready(settings):
        return
    with step(f"start registry on {settings.registry}"):
        daemon = registry(settings)
        storage = registry_storage(settings)
        storage.mkdir(parents=True, exist_ok=True)
        config = services_dir(settings) / "registry.yml"
        config.parent.mkdir(parents=True, exist_ok=True)
        # Our own config: Debian's default turns on htpasswd auth.
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {settings.registry}\n"
        )
        if not daemon.alive():
            daemon.start()
        _wait_for_service(daemon, lambda: registry_ready(settings), 30)


def docker(*args: str, stdin: Path | None = None) -> str:
    """Run docker; its output, or a ClusterError with Docker's own words."""
    with open(stdin, "rb") if stdin else contextlib.nullcontext() as source:
        result = subprocess.run(["docker", *args], stdin=source, capture_output=True)
    if result.returncode != 0:
        raise ClusterError(f"`docker {' '.join(args[:3])}` failed: {result.stderr.decode(errors='replace')[-1500:]}")
    return result.stdout.decode(errors="replace")


def image_exists(reference: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", reference], capture_output=True).returncode == 0


def ensure_pause_image(settings: ClusterSettings) -> None:
    """Build and push the sandbox image; containerd re-pulls it from the registry if it is GC'd."""
    with step(f"pause image {settings.pause_image}"):
        if not image_exists(settings.pause_image):
            with tempfile.TemporaryDirectory() as context:
                shutil.copy2(settings.pause_bin, Path(context) / "pause")
                (Path(context) / "Dockerfile").write_text('FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n')
                docker("build", "-q", "-t", settings.pause_image, context)
        docker("push", settings.pause_image)


def _ca_digest() -> str:
    return hashlib.sha256(HOST_CA_BUNDLE.read_bytes()).hexdigest()[:16]


def _image_label(reference: str, label: str) -> str:
    result = subprocess.run(["docker", "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}',
                             reference], capture_output=True, text=True)
    return result.stdout.strip()


def ensure_python_rootfs(settings: ClusterSettings) -> Path:
    """Debian bookworm with python3 from debootstrap: a cache, built once per machine (no Docker needed)."""
    return debootstrap_rootfs(settings, "bookworm-python3", ["python3", "python3-venv", "python3-pip",
                                                              "ca-certificates"], "usr/bin/python3")


def debootstrap_rootfs(settings: ClusterSettings, name: str, packages: list[str], built_marker: str) -> Path:
    """A Debian bookworm root file system with these packages, cached under rootfs/<name>; built once per machine.

    Written beside its place and renamed into it, so an interrupted build is never taken for a finished one."""
    rootfs = settings.cache_dir / "rootfs" / name
    if (rootfs / built_marker).exists():
        return rootfs
    say(f"debootstrap Debian bookworm for {name} (about 1 min, cached afterwards)")
    with step(f"debootstrap bookworm ({name})"):
        partial = rootfs.with_name(rootfs.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.parent.mkdir(parents=True, exist_ok=True)
        log = settings.cache_dir / "build-logs" / f"debootstrap-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as out:
            result = subprocess.run(
                ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}",
                 "bookworm", str(partial), DEBIAN_MIRROR], stdout=out, stderr=subprocess.STDOUT)
        if result.returncode != 0:
            raise ClusterError(f"debootstrap failed for {name}", log)
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (partial / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        shutil.rmtree(rootfs, ignore_errors=True)
        partial.rename(rootfs)
    return rootfs


def ensure_python_base_image(settings: ClusterSettings) -> str:
    """The offline base image; rebuilt only when missing or when the host CA bundle changed."""
    digest = _ca_digest()
    if image_exists(PYTHON_BASE_IMAGE) and _image_label(PYTHON_BASE_IMAGE, "runai-mlflow.ca") == digest:
        return PYTHON_BASE_IMAGE
    rootfs = ensure_python_rootfs(settings)
    with step(f"docker import {PYTHON_BASE_IMAGE}"):
        shutil.copy2(HOST_CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        changes = [f"ENV {key}={value}" for key, value in BASE_ENV.items()]
        changes += [f"LABEL runai-mlflow.ca={digest}", 'CMD ["python3"]']
        docker_import_tree(rootfs, PYTHON_BASE_IMAGE, changes)
    return PYTHON_BASE_IMAGE


def docker_import_tree(root: Path, image: str, changes: list[str]) -> None:
    """A directory as a one-layer image; `changes` are Dockerfile lines that `docker import` accepts."""
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    args = ["docker", "import"] + [arg for change in changes for arg in ("--change", change)]
    try:
        result = subprocess.run([*args, "-", image], stdin=tar.stdout, capture_output=True)
    finally:
        tar.stdout.close()  # so tar gets SIGPIPE, not a full pipe, when docker import stops early
        tar.wait()
    if result.returncode != 0 or tar.returncode != 0:
        raise ClusterError(f"docker import {image} failed: {result.stderr.decode(errors='replace')}")
