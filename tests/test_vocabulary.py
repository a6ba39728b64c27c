"""One vocabulary: every command's rows carry the shared keys, and the documentation table is the code's."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from stalegrad.experiments.vocabulary import SHARED_KEYS

DOC = Path(__file__).resolve().parents[1] / "docs" / "vocabulary.md"


def test_the_documented_table_is_the_codes():
    table = dict(re.findall(r"^\| `(\w+)` \| (.+?) \|$", DOC.read_text(), flags=re.M))
    assert table == SHARED_KEYS


SYSTEM = ["--n", "4", "--K", "2", "--tc", "1"]


@pytest.mark.parametrize(
    "argv",
    [
        ["predict", *SYSTEM],
        ["predict", "--n", "4:5", "--K", "2"],
        ["simulate", *SYSTEM, "--updates", "300", "--seed", "1"],
        ["compare", *SYSTEM, "--updates", "300", "--seed", "1"],
        ["train", *SYSTEM, "--updates", "100", "--seed", "1", "--policy", "constant,staleness-aware"],
    ],
)
def test_every_command_row_has_the_shared_keys(argv, run_cli):
    code, out, err = run_cli([*argv, "--json"])
    assert code == 0, err
    obj = json.loads(out)
    rows = obj.get("rows", [obj])
    for row in rows:
        missing = set(SHARED_KEYS) - set(row)
        assert not missing, (argv[0], missing)
        assert row["n"] in (4, 5) and row["K"] == (4 if row["protocol"] == "sync" else 2)
        if argv[0] == "predict":
            assert row["staleness_mean"] is None and row["update_rate"] is None and row["seed"] is None
        else:
            assert row["staleness_mean"] is not None and row["update_rate"] > 0 and row["seed"] is not None
        if row["protocol"] == "k-batch-async":
            assert row["staleness_exact"] is not None and row["update_rate_exact"] > 0
