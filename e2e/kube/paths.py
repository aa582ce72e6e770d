"""Where this repository is, and where expensive builds are cached outside it (RUNAI_MLFLOW_CACHE)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cache_root() -> Path:
    return Path(os.environ.get("RUNAI_MLFLOW_CACHE", Path.home() / ".cache" / "runai-mlflow"))
