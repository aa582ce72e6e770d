"""Adding a template option touches several places (README: "Adding a template option"); these fail when one is missed.

The contract test's part of the checklist is test_mlflow_contract.test_every_answer_has_a_contract_check.
"""

import re

from .conftest import ANSWER_KEYS, ROOT
from .matrix import VARIANTS


def test_every_question_is_varied_by_the_option_matrix():
    varied = {key for variant in VARIANTS for key in variant}
    assert ANSWER_KEYS - varied == set(), "add a row (or a value to a row) in tests/matrix.py"


def test_every_question_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## The questions", 1)[1].split("\n\n", 2)[1]
    documented = {name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z_]+)`", row.split("|")[1])}
    assert documented == ANSWER_KEYS, "the README's question table and cookiecutter.json disagree"
