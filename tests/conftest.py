import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = json.loads((ROOT / "cookiecutter.json").read_text())
ANSWER_KEYS = {key for key in DEFAULTS if not key.startswith("_")}


def bake_project(cookies, **answers):
    """Bake with cookiecutter through pytest-cookies; unknown keys fail instead of silently using defaults."""
    unknown = set(answers) - ANSWER_KEYS
    assert not unknown, f"not questions in cookiecutter.json: {sorted(unknown)}"
    return cookies.bake(extra_context=answers, template=str(ROOT))


@pytest.fixture
def bake(cookies):
    return lambda **answers: bake_project(cookies, **answers)
