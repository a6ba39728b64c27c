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


def test_run_figure_draws_the_predicted_law_per_class_with_legends_off_the_data():
    """``run --plot``'s figure: the predicted pmf over the run's histogram, a panel per worker class when workers
    differ (each class's predicted pmf), and every legend below its panel (it covers no data)."""
    from types import SimpleNamespace

    import numpy as np
    import scipy.stats

    from stalegrad import System, simulate
    from stalegrad.distributions import shifted_exponential
    from stalegrad.experiments.measured import Comparison
    from stalegrad.staleness_plots import run_figure
    from stalegrad.theory import staleness_distribution

    def draw(system):
        trace = simulate(system, updates=400, seed=1)
        t = np.linspace(0, 10, 20)
        result = SimpleNamespace(trace=trace, errors=np.c_[np.arange(20), t, np.exp(-t)], time_unit=0.01)
        comp = Comparison(
            staleness_mean=1.0, staleness_ci95=0.1, staleness_max=5, staleness_exact=1.0, staleness_paper=1.0,
            staleness_exact_configured=1.0, staleness_rel_diff=0.0, staleness_z=0.0, update_rate=1.0,
            update_rate_exact=1.0, uplink=0.5, downlink=0.5, uplink_extra=0.0, downlink_extra=0.0,
            compute_means=system.means, warmup_updates=50, caveat=None,
        )  # fmt: skip
        law = staleness_distribution(system)
        hist = np.bincount(simulate(system, updates=2000, seed=2)["staleness"])
        return run_figure(result, comp, hist, 2000, law), law

    mixed = System(n=4, K=2, tc=1, compute=[scipy.stats.expon(scale=1.0)] * 2 + [shifted_exponential(2, 0.5)] * 2)
    fig, law = draw(mixed)
    left, mid, right = fig.axes
    assert "per worker class" in mid.get_title()
    markers = [line for line in mid.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 2
    for line, cls in zip(markers, law.per_class, strict=True):
        ys = line.get_ydata()
        assert np.allclose(ys, cls.pmf[: len(ys)])
    assert any(line.get_marker() == "o" for line in left.get_lines())  # the overall predicted pmf
    fig.canvas.draw()
    for ax in (left, mid, right):
        legend = ax.get_legend().get_window_extent()
        assert legend.y1 < ax.get_window_extent().y0  # below the panel
    one, _ = draw(System(n=4, K=2, tc=1, compute=scipy.stats.expon(scale=1.0)))
    assert len(one.axes) == 2


def test_simulate_plot_draws_each_worker_class_beside_its_predicted_law(tmp_path):
    """``simulate --plot`` of a heterogeneous system: a second panel per worker class, the class's predicted pmf
    as markers (equal to the theory's) beside the simulated distribution of that class's gradients."""
    import matplotlib.image

    from stalegrad.cli import main

    path = tmp_path / "sim.png"
    laws = ["--compute", "2*expon(scale=1)", "--compute", "2*shifted_exponential(alpha=2, rate=0.5)"]
    argv = [
        "simulate",
        "--n",
        "4",
        "--K",
        "2",
        "--tc",
        "1",
        *laws,
        "--updates",
        "3000",
        "--seed",
        "1",
        "--plot",
        str(path),
    ]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code in (0, None)
    assert matplotlib.image.imread(path).shape[1] > 1.6 * matplotlib.image.imread(path).shape[0]  # two panels

    import numpy as np

    from stalegrad import System, simulate
    from stalegrad.experiments.points import run_point
    from stalegrad.staleness_plots import points_figure

    system = System.from_dict(json.loads(path.with_suffix(".json").read_text())["systems"]["0"])
    point = run_point(system, 3000, 1)
    trace = simulate(system, 3000, seed=1)
    fig = points_figure([point], (trace["worker"], trace["staleness"]))
    _, per_class = fig.axes
    from stalegrad.theory import staleness_distribution

    law = staleness_distribution(system)
    markers = [line for line in per_class.get_lines() if line.get_marker() == "o"]
    assert len(markers) == 2
    for line, cls in zip(markers, law.per_class, strict=True):
        assert np.allclose(line.get_ydata(), cls.pmf[: len(line.get_ydata())])
