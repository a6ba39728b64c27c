"""The figures of ``simulate --plot``, ``compare --plot`` and ``run --plot``: the data made (a simulation where the
figure needs one), drawn by :mod:`stalegrad.plots`, and written with its metadata."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..artefacts import metadata, write_figure
from ..plots import protocols_figure
from ..staleness_plots import points_figure, run_figure
from .measured import simulate_measured
from .points import Point

__all__ = ["plot_points", "plot_protocols", "plot_run"]

#: Updates simulated (with a Trace) for the per-class panel of a heterogeneous system's figure.
CLASS_UPDATES = 50_000


def plot_points(points: Sequence[Point], path: str | Path, root_seed: int) -> Path:
    """One simulated system: its staleness histogram with both limits marked. A sweep: mean staleness against
    the position in the sweep (labelled by what varies), with CI bars, the paper's and the exact limit."""
    meta = metadata(root_seed, {f"{k}": p.system for k, p in enumerate(points)}, rows=[p.row() for p in points])
    classes = None
    p = points[0]
    if len(points) == 1 and p.summary is not None and (not p.system.identical or p.system.per_worker_delays):
        from ..sim import simulate

        trace = (
            p.trace if p.trace is not None else simulate(p.system, min(p.summary.updates, CLASS_UPDATES), seed=p.seed)
        )
        keep = trace["update"] > min(p.summary.warmup, trace.updates // 10)
        classes = (trace["worker"][keep], trace["staleness"][keep])
    return write_figure(points_figure(points, classes), path, meta)


def plot_protocols(points: Sequence[Point], path: str | Path, root_seed: int) -> Path:
    """Protocols side by side: update rate (simulated, theory where known) and staleness (mean with 95% CI, p95),
    with the wasted and dropped fractions written on the bars."""
    meta = metadata(root_seed, {p.system.protocol: p.system for p in points}, rows=[p.row() for p in points])
    return write_figure(protocols_figure(points), path, meta)


def plot_run(result: Any, comparison: Any, path: str | Path, *, updates: int = 100_000, seed: int = 1) -> Path:
    """A real run beside ``updates`` simulated updates of the system it measured (:func:`simulate_measured`), and
    its training error against time."""
    system, summary = simulate_measured(result, updates, seed)
    meta = metadata(seed, {"measured": system}, run=comparison.to_dict())
    law = None
    if result.time_unit is not None:  # the injected (configured) system, where its distribution can be predicted
        from ..theory import distribution_refusal, staleness_distribution

        if distribution_refusal(result.trace.system) is None:
            law = staleness_distribution(result.trace.system)
            meta["staleness_pmf_configured"] = law.pmf.tolist()
    return write_figure(run_figure(result, comparison, summary.hist, updates, law), path, meta)
