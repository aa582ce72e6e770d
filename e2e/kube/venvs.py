"""Virtual environments with a generated project's own pins, cached outside the repository.

A generated project's tests and its `make run` need what requirements-dev.txt pins (for the pytorch
framework that includes torch with its CUDA libraries, several GB). One venv per distinct set of
requirements, keyed by their content, so a warm machine reuses it and a changed pin makes a new one.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .paths import cache_root


def project_venv(project: Path, say: Callable[[str], None] = print) -> Path:
    """`pip install -r requirements-dev.txt` of this project: the pins a user installs are the ones tested."""
    text = "".join((project / name).read_text() for name in ("requirements-dev.txt", "requirements.txt"))
    digest = hashlib.sha256(f"{sys.version_info[:2]}{text}".encode()).hexdigest()[:16]
    cache = cache_root() / "venvs"
    cache.mkdir(parents=True, exist_ok=True)
    venv = cache / digest
    # A file lock: the template tests and the e2e suite may want the same venv at once.
    with open(cache / f"{digest}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (venv / ".complete").exists():
            say(f"creating a venv from {project.name}/requirements-dev.txt in {venv} (once; cached)")
            shutil.rmtree(venv, ignore_errors=True)
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-r",
                                     "requirements-dev.txt"], cwd=project, capture_output=True, text=True)
            if result.returncode != 0:
                raise RuntimeError(f"pip install -r requirements-dev.txt failed:\n{result.stderr[-3000:]}")
            (venv / ".complete").write_text(text)
    return venv
