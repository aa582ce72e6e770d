"""Build the cluster's binaries from their Go modules, once per version.

Kubernetes' staging modules are pinned by the committed wrapper go.mod/go.sum, so a cold build
needs only the Go module proxy. Results land in the cache by version; a warm machine never rebuilds.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .progress import ClusterError, say, step
from .settings import COREDNS_VERSION, ETCD_VERSION, GOMOD_DIR, KUBERNETES_VERSION, PAUSE_VERSION, ClusterSettings

KUBERNETES_COMMANDS = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl")


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {package}.gitVersion={version}", f"-X {package}.gitMajor={major}",
                  f"-X {package}.gitMinor={minor}", f"-X {package}.gitTreeState=clean",
                  f"-X {package}.buildDate=1970-01-01T00:00:00Z"]
    return " ".join(flags)


def go_cache_warm() -> bool:
    """Whether Go's build cache already holds compiled packages (then a build is not cold)."""
    result = subprocess.run([shutil.which("go") or "/usr/local/go/bin/go", "env", "GOCACHE"],
                            capture_output=True, text=True)
    cache = Path(result.stdout.strip() or Path.home() / ".cache" / "go-build")
    return cache.is_dir() and sum(1 for _ in zip(range(2000), cache.rglob("*-d"), strict=False)) >= 2000


def _record_build_time(settings: ClusterSettings, name: str, seconds: float, warm: bool) -> None:
    """Keep build figures next to the binaries, for the benchmark on machines that no longer build."""
    record = settings.bin_dir / "build-times.json"
    times = json.loads(record.read_text()) if record.exists() else {}
    times[name] = {"seconds": round(seconds, 1), "date": time.strftime("%Y-%m-%d %H:%M"), "cpus": os.cpu_count(),
                   "go_cache": "warm" if warm else "cold"}
    record.write_text(json.dumps(times, indent=2))


def _go_build(module_dir: Path, out_dir: Path, packages: list[str], ldflags: str, log: Path) -> None:
    go = shutil.which("go") or "/usr/local/go/bin/go"
    if not Path(go).exists():
        raise ClusterError("Go is not installed; it is needed once to build the cluster binaries")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly"}
    command = [go, "build", "-trimpath", "-o", f"{partial}/", "-ldflags", ldflags, *packages]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w") as out:
        build = subprocess.Popen(command, cwd=module_dir, env=env, stdout=out, stderr=subprocess.STDOUT)
        while True:  # a heartbeat, so a long cold build shows it is alive
            try:
                build.wait(timeout=30)
                break
            except subprocess.TimeoutExpired:
                say(f"  still building {module_dir.name} ({time.monotonic() - started:.0f}s; log: {log})")
    if build.returncode != 0:
        tail = log.read_text()[-2000:]
        raise ClusterError(f"go build failed in {module_dir}:\n{tail}", log)
    shutil.rmtree(out_dir, ignore_errors=True)
    partial.rename(out_dir)


def ensure_binaries(settings: ClusterSettings) -> None:
    logs = settings.cache_dir / "build-logs"
    kube_dir = settings.kubernetes_bin("kubectl").parent
    if not all((kube_dir / name).exists() for name in KUBERNETES_COMMANDS):
        say(f"building Kubernetes {KUBERNETES_VERSION} from k8s.io/kubernetes (cold: about 6 min on 2 cores, "
            f"once per version)")
        with step(f"go build Kubernetes {KUBERNETES_VERSION}"):
            started, warm = time.monotonic(), go_cache_warm()
            _go_build(GOMOD_DIR / "kubernetes", kube_dir, [f"k8s.io/kubernetes/cmd/{c}" for c in KUBERNETES_COMMANDS],
                      _version_ldflags(KUBERNETES_VERSION), logs / "kubernetes.log")
            _record_build_time(settings, f"kubernetes-{KUBERNETES_VERSION}", time.monotonic() - started, warm)
    if not settings.etcd_bin.exists():
        with step(f"go build etcd {ETCD_VERSION}"):
            started, warm = time.monotonic(), go_cache_warm()
            _go_build(GOMOD_DIR / "etcd", settings.etcd_bin.parent, ["."], "-s -w", logs / "etcd.log")
            _record_build_time(settings, f"etcd-{ETCD_VERSION}", time.monotonic() - started, warm)
    if not settings.coredns_bin.exists():
        with step(f"go build CoreDNS {COREDNS_VERSION} (cluster DNS)"):
            started, warm = time.monotonic(), go_cache_warm()
            _go_build(GOMOD_DIR / "coredns", settings.coredns_bin.parent, ["."], "-s -w", logs / "coredns.log")
            _record_build_time(settings, f"coredns-{COREDNS_VERSION}", time.monotonic() - started, warm)
    if not settings.pause_bin.exists():
        with step(f"go build pause {PAUSE_VERSION}"):
            _go_build(GOMOD_DIR / "pause", settings.pause_bin.parent, ["."], "-s -w", logs / "pause.log")
