"""`cluster-down` removes every trace. Run last: it takes the cluster down.

The checks read the machine directly (/proc, mountinfo, ip, iptables-save), not the cluster's own
bookkeeping, so a leak the implementation forgot about is still caught.
"""

import json
import subprocess
import uuid
from pathlib import Path

import pytest
from local_cluster import LocalCluster

pytestmark = pytest.mark.cluster


def processes_mentioning(*needles: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if any(needle in cmdline for needle in needles):
                found.append(f"{proc.name}: {cmdline[:150]}")
    return found


def sh(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


def ctr(s, *args: str) -> str:
    """`ctr images ...` against the node's containerd, in the namespace the kubelet uses."""
    return subprocess.run(["ctr", "--address", str(s.containerd_socket), "--namespace", "k8s.io", "images", *args],
                          check=True, capture_output=True, text=True).stdout


def node_images(s) -> list[str]:
    return ctr(s, "ls", "-q").split()


def test_down_leaves_no_process_mount_link_rule_route_or_state_and_keeps_the_nodes_images():
    cluster = LocalCluster().up()
    s = cluster.settings
    # The node pulls an image from the registry, as for a pod, and holds it under a name of this test's own.
    kept = f"{s.registry}/teardown-test-kept:{uuid.uuid4().hex[:8]}"
    ctr(s, "pull", "--plain-http", s.pause_image)
    ctr(s, "tag", s.pause_image, kept)
    sysctls_before = json.loads((s.state_dir / "sysctls.json").read_text())
    cluster.down()
    assert_nothing_left(s, sysctls_before)

    # The node's image store is a cache: the next cluster starts with the image, and down still leaves nothing.
    cluster = LocalCluster().up()
    assert kept in node_images(s), "the node pulls its images again after every cluster-down"
    ctr(s, "rm", kept)
    cluster.down()
    assert_nothing_left(s, sysctls_before)


def assert_nothing_left(s, sysctls_before: dict) -> None:
    assert processes_mentioning(str(s.state_dir.parent), str(s.run_dir), str(s.bin_dir),
                                str(s.containerd_root)) == []
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert [m for m in mounts if m.startswith((str(s.state_dir.parent), str(s.run_dir), str(s.containerd_root)))] == []
    assert s.bridge not in sh("ip", "-o", "link")
    assert sh("ip", "-o", "link", "show", "master", s.bridge) == ""
    assert s.service_cidr not in sh("ip", "route", "show", "table", "all")
    assert s.pod_cidr not in sh("ip", "route")
    for tool in ("iptables-save", "ip6tables-save"):
        rules = sh(tool)
        assert "RUNAI-MLFLOW" not in rules and ":KUBE-" not in rules and s.pod_cidr not in rules, rules
    for key, value in sysctls_before.items():
        assert Path("/proc/sys", key).read_text().strip() == value, key
    assert not s.state_dir.exists() and not s.run_dir.exists()
    assert not LocalCluster(s).status()["apiserver_ready"]
