#!/usr/bin/python3
"""runc wrapper for machines that withhold capabilities from root (some sandboxed VMs withhold CAP_SYS_RESOURCE).

On such a machine runc fails on two kinds of OCI spec, and this fits the spec (the bundle's config.json,
or an exec's --process file) to what the machine allows root, then execs the real runc:
- a negative oomScoreAdj, which the kubelet asks for every pod sandbox (-998): runc cannot lower
  oom_score_adj and fails with "can't get final child's PID from pipe". Raised to 0.
- a capability outside root's bounding set, which every privileged container asks for (kind runs its
  nodes so): "unable to apply caps: operation not permitted". Left out: the container has every
  capability the machine gives root.
Nothing else changes, and a spec it cannot read goes to runc as it came: the wrapper never stops a
container runc would start. Containerd (the local cluster's pods) and dockerd (`docker run`, kind's nodes)
run it only where root lacks a capability (withheld_capabilities). Standard library only: it runs as a copy.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RUNC = "/usr/sbin/runc"
# The kernel's capability numbers (include/uapi/linux/capability.h): a name's index is its bit.
CAPABILITIES = tuple(f"CAP_{name}" for name in (
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO SYS_CHROOT "
    "SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE "
    "AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ "
    "PERFMON BPF CHECKPOINT_RESTORE").split())


def bounding_set() -> int:
    """Root's bounding set here: no process, a container's included, can hold a capability outside it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            return int(line.split()[1], 16)
    return (1 << len(CAPABILITIES)) - 1


def withheld_capabilities() -> list[str]:
    """The capabilities this kernel has that root may not hold here; none on an ordinary machine."""
    try:
        last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    except (OSError, ValueError):
        last = len(CAPABILITIES) - 1
    allowed = bounding_set()
    return [name for bit, name in enumerate(CAPABILITIES[:last + 1]) if not allowed >> bit & 1]


def install(path: Path) -> Path:
    """A copy of this wrapper at path, executable: what a runtime's configuration names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")  # a runtime starting now execs the old copy, never half a new one
    staged.write_text(Path(__file__).read_text())
    staged.chmod(0o755)
    os.replace(staged, path)
    return path


def fit(process: dict, withheld: set[str]) -> bool:
    """Fit one OCI process spec to the machine, in place; whether it changed."""
    changed = False
    adj = process.get("oomScoreAdj")
    if "CAP_SYS_RESOURCE" in withheld and isinstance(adj, int) and adj < 0:
        process["oomScoreAdj"] = 0
        changed = True
    capabilities = process.get("capabilities")
    for kind, names in (capabilities.items() if isinstance(capabilities, dict) else ()):
        kept = [name for name in names or () if name not in withheld]
        if kept != (names or []):
            capabilities[kind] = kept
            changed = True
    return changed


def fit_file(spec_file: str, in_process: bool, withheld: set[str]) -> None:
    """Rewrite the spec runc is about to read, if it asks for what the machine refuses root."""
    try:
        with open(spec_file) as handle:
            spec = json.load(handle)
        process = spec if in_process else spec.get("process")
        if isinstance(process, dict) and fit(process, withheld):
            with open(spec_file, "w") as handle:
                json.dump(spec, handle)
    except (OSError, ValueError, TypeError, AttributeError):
        return


def main(argv: list[str]) -> None:
    withheld = set(withheld_capabilities())
    # containerd's shim and dockerd pass each flag's value as the next argument (go-runc), never as --flag=value.
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("--bundle", "-b"):
            fit_file(os.path.join(value, "config.json"), in_process=False, withheld=withheld)
        elif flag in ("--process", "-p"):
            fit_file(value, in_process=True, withheld=withheld)
    os.execv(RUNC, [RUNC, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
