"""``reproduce``: the files it writes, their metadata, and the paper's findings in quick runs."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
from PIL import Image

from stalegrad.errors import SpecError
from stalegrad.experiments import reproduce


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    return out, reproduce(["all"], out, seed=3, quick=True)


def test_all_files_are_written_with_metadata(quick_results):
    out, _ = quick_results
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            *["fig1.csv", "fig1.png", "fig1.json", "fig2.csv", "fig2.png", "fig2.json", "section4.csv", "summary.json"],
            *["fig3.csv", "fig3.png", "fig3.json"],
        ]
    )
    first = (out / "fig1.csv").read_text().splitlines()[0]
    meta = json.loads(first.removeprefix("# stalegrad-metadata: "))
    assert meta["seed"] == 3 and meta["stalegrad"] == "0.1.0" and meta["systems"]["n=10"]["K"] == 10
    rows = list(csv.DictReader(line for line in (out / "fig1.csv").read_text().splitlines() if line[0] != "#"))
    assert [int(r["n"]) for r in rows] == list(range(10, 21))
    png = Image.open(out / "fig1.png")
    assert json.loads(png.text["Description"])["seed"] == 3
    assert json.loads((out / "fig2.json").read_text())["transient"]["replications"] == 100


def test_quick_run_already_shows_the_papers_findings(quick_results):
    _, found = quick_results
    assert all(r["exact_in_ci"] or abs(r["staleness_mean"] / r["staleness_exact"] - 1) < 0.01 for r in found["fig1"])
    f2 = found["fig2"]
    assert f2["first_updates"][0] == 0.0
    assert abs(f2["mean_updates_26_50"] - f2["staleness_exact"]) < 0.1
    case1, case2 = found["section4"]
    assert case1["staleness_exact"] == pytest.approx(1.0) and case2["staleness_exact"] == pytest.approx(10.0)
    assert case1["update_rate"] == pytest.approx(case2["update_rate"], rel=0.05)


def test_same_seed_same_files(tmp_path):
    reproduce(["section4"], tmp_path / "a", seed=5, quick=True)
    reproduce(["section4"], tmp_path / "b", seed=5, quick=True)

    def numbers(p):
        rows = [r for r in (p / "section4.csv").read_text().splitlines()[1:]]
        return [r.rsplit(",", 1)[0] for r in rows]  # last column is wall time

    assert numbers(tmp_path / "a") == numbers(tmp_path / "b")


def test_no_temporary_files_are_left(quick_results):
    out, _ = quick_results
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_unknown_target_is_refused():
    with pytest.raises(SpecError, match="target must be one of fig1, fig2, section4, fig3 or all"):
        reproduce(["fig7"], "unused")


def test_cli_reproduce_prints_the_summary(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from stalegrad.cli import main; main()",
            "reproduce",
            "section4",
            "--quick",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Section 4" in proc.stdout and "case 2" in proc.stdout
    assert (tmp_path / "section4.csv").exists()
