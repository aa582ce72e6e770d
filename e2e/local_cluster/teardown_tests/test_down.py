"""`cluster-down` removes every trace. Run last: it takes the cluster down.

The checks read the machine directly (/proc, mountinfo, ip, iptables-save), not the cluster's own
bookkeeping, so a leak the implementation forgot about is still caught.
"""

import json
import subprocess
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


def test_down_leaves_no_process_mount_link_rule_route_or_state():
    cluster = LocalCluster().up()
    s = cluster.settings
    sysctls_before = json.loads((s.state_dir / "sysctls.json").read_text())
    cluster.down()

    assert processes_mentioning(str(s.state_dir.parent), str(s.run_dir), str(s.bin_dir)) == []
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    assert [m for m in mounts if m.startswith((str(s.state_dir.parent), str(s.run_dir)))] == []
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
    assert not cluster.status()["apiserver_ready"]
