"""Virtual environments with a generated project's own pins, cached outside the repository.

A generated project's tests and its `make run` need what requirements-dev.txt pins (for the pytorch
framework that includes torch with its CUDA libraries, several GB). One venv per distinct set of
requirements, keyed by their content, so a warm machine reuses it and a changed pin makes a new one.
They are made with uv, which downloads in parallel and links files from its cache: a second venv with
the same wheels costs seconds, where pip unpacks several GB again.
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


def uv() -> str:
    """The uv that .venv pins (beside this interpreter), else one on PATH."""
    beside = Path(sys.executable).with_name("uv")
    found = str(beside) if beside.exists() else shutil.which("uv")
    if not found:
        raise RuntimeError("uv is not installed: run `make setup` (it installs the pinned uv into .venv)")
    return found


# Part of every cached venv's key: a venv made another way is made again.
RECIPE = "uv venv --seed; uv pip install --compile-bytecode"


def make_venv(venv: Path, *requirements: str, cwd: Path | None = None) -> None:
    """A venv with pip seeded (users' tools expect it) and the given `pip install` arguments installed.

    Compiled to bytecode at install, as pip does: uv does not by default, and where PYTHONDONTWRITEBYTECODE
    is set (CI here) every `import torch` or `import mlflow` would compile thousands of files again.
    """
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([uv(), "venv", "-q", "--seed", "--python", sys.executable, str(venv)], check=True,
                   capture_output=True)
    result = subprocess.run([uv(), "pip", "install", "-q", "--compile-bytecode", "--python",
                             str(venv / "bin" / "python"), *requirements], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"installing {' '.join(requirements)} failed:\n{result.stderr[-3000:]}")


def cached_venv(name: str, key: str, *requirements: str, cwd: Path | None = None,
                say: Callable[[str], None] = print) -> Path:
    """The venv `name` in the cache, made once per `key`; a file lock lets parallel test workers share it."""
    cache = cache_root() / "venvs"
    cache.mkdir(parents=True, exist_ok=True)
    venv, key = cache / name, f"{sys.version_info[:2]} {RECIPE} {key}"
    with open(cache / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = venv / ".complete"
        if not done.exists() or done.read_text() != key:
            say(f"creating the venv {venv} ({' '.join(requirements)}; once, then cached)")
            make_venv(venv, *requirements, cwd=cwd)
            done.write_text(key)
    return venv


def project_venv(project: Path, say: Callable[[str], None] = print) -> Path:
    """`pip install -r requirements-dev.txt` of this project: the pins a user installs are the ones tested."""
    text = "".join(path.read_text() for path in sorted(project.glob("requirements*.txt")))
    digest = hashlib.sha256(f"{sys.version_info[:2]}{text}".encode()).hexdigest()[:16]
    return cached_venv(digest, text, "-r", "requirements-dev.txt", cwd=project, say=say)
