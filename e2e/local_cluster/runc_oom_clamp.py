#!/usr/bin/python3
"""runc wrapper for machines that withhold CAP_SYS_RESOURCE from root (some sandboxed VMs).

There no process may lower oom_score_adj, yet the kubelet asks for -998 on every pod sandbox,
so runc fails with "can't get final child's PID from pipe". This clamps negative oomScoreAdj
in the OCI spec (bundle config.json or exec --process file) to 0, then execs the real runc.
Containerd uses it only when the capability is missing (see components.needs_oom_clamp).
"""

import json
import os
import sys

RUNC = "/usr/sbin/runc"


def clamp(spec_file: str, in_process: bool) -> None:
    try:
        with open(spec_file) as handle:
            spec = json.load(handle)
    except (OSError, ValueError):
        return
    process = spec if in_process else spec.get("process", {})
    if process.get("oomScoreAdj", 0) < 0:
        process["oomScoreAdj"] = 0
        with open(spec_file, "w") as handle:
            json.dump(spec, handle)


def main(argv: list[str]) -> None:
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag in ("--bundle", "-b"):
            clamp(os.path.join(value, "config.json"), in_process=False)
        elif flag in ("--process", "-p"):
            clamp(value, in_process=True)
    os.execv(RUNC, [RUNC, *argv])


if __name__ == "__main__":
    main(sys.argv[1:])
