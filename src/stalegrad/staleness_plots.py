"""Figures of the staleness distribution: a simulated system's (``simulate --plot``) and a real run's
(``run --plot``), each beside its predicted law, overall and, when the workers differ, per worker class.

Drawn as matplotlib ``Figure`` objects (no pyplot) with the axes-level helpers of :mod:`stalegrad.plots`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .plots import describe_law, describe_system, error_vs_time, figure, staleness_histogram, staleness_vs_n

__all__ = ["class_panel", "points_figure", "run_figure"]

COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def points_figure(points: Sequence[Any], classes: tuple[np.ndarray, np.ndarray] | None = None) -> Any:
    """One simulated system: its staleness histogram with both limits and the predicted distribution; with
    ``classes = (worker, staleness)`` of a simulated Trace and workers that differ, a second panel per worker
    class (:func:`class_panel`). A sweep: mean staleness against the position in the sweep (labelled by what
    varies), with CI bars, the paper's and the exact limit."""
    single = points[0].summary if len(points) == 1 else None
    if single is None:
        fig, ax = figure()
        varies = [k for k in ("n", "K", "tc") if len({getattr(p.system, k) for p in points}) > 1]
        key = varies[0] if len(varies) == 1 else None
        xs = [getattr(p.system, key) for p in points] if key else list(range(1, len(points) + 1))
        staleness_vs_n(
            xs,
            [p.estimate.mean for p in points],
            [p.estimate.ci95 for p in points],
            [p.prediction.staleness_paper for p in points],
            [p.prediction.staleness_exact for p in points],
            ax=ax,
        )
        ax.set_xlabel(key or "system in the sweep")
        return fig
    p = points[0]
    law = _distribution(p.system)
    per_class = law is not None and len(law.per_class) > 1 and classes is not None
    fig, axes = figure(1, 2 if per_class else 1, figsize=(11.5, 4.6) if per_class else (6.4, 4.6))
    ax = axes[0] if per_class else axes
    hist = np.trim_zeros(single.hist, "b")
    staleness_histogram(hist, title=describe_system(p.system), ax=ax)
    exact, paper = p.prediction.staleness_exact, p.prediction.staleness_paper
    ax.axvline(exact, color="tab:blue", label=f"exact mean {exact:.3f}")
    ax.axvline(paper, color="tab:red", ls="--", label=f"paper mean {paper:.3f}")
    ax.axvline(p.estimate.mean, color="black", ls=":", label=f"simulated mean {p.estimate.mean:.3f}")
    if law is not None:
        width = min(len(law.pmf), hist.size + 2)
        ax.plot(np.arange(width), law.pmf[:width], "o-", color="tab:orange", ms=4, lw=1.2,
                label="predicted distribution")  # fmt: skip
    ax.legend(fontsize="small")
    if per_class and classes is not None:
        class_panel(axes[1], classes[0], classes[1], law, p.system)
        axes[1].legend(fontsize="x-small")
    return fig


def run_figure(result: Any, comparison: Any, simulated: np.ndarray, updates: int, law: Any = None) -> Any:
    """A real run (:func:`stalegrad.runtime.run`) in one figure: left, its staleness distribution (after the
    warm-up) beside ``simulated``, the staleness histogram of ``updates`` simulated updates of the system it
    *measured*, the predicted distribution ``law`` of the configured system (a
    :class:`~stalegrad.theory.StalenessDistribution`, when the run injected times it can predict), and the run's
    mean with the exact and paper limits; when the workers differ, a middle panel per worker class
    (:func:`class_panel`); right, the training error against time. Legends sit below the panels, covering no data."""
    trace = result.trace
    keep = trace["update"] > comparison.warmup_updates
    real = np.bincount(trace["staleness"][keep], minlength=1)
    width = max(real.size, np.trim_zeros(simulated, "b").size)
    per_class = law is not None and len(law.per_class) > 1
    panels = 3 if per_class else 2
    fig, axes = figure(1, panels, figsize=(5.6 * panels, 5.2))
    left, right = axes[0], axes[-1]
    staleness_histogram(np.pad(real, (0, width - real.size)), ax=left)
    left.patches[0].set_label(f"run ({int(real.sum())} gradients)")
    simulated = np.pad(simulated, (0, max(0, width - simulated.size)))[:width]
    left.step(np.arange(width), simulated / simulated.sum(), where="mid", color="black", lw=1.2,
              label=f"simulated, {'measured' if trace.system.protocol == 'k-batch-async' else 'predicted'} system "
                    f"({updates} updates)")  # fmt: skip
    if law is not None:
        shown = min(len(law.pmf), width + 2)
        left.plot(np.arange(shown), law.pmf[:shown], "o", color="tab:orange", ms=4,
                  label="predicted, configured system")  # fmt: skip
    c = comparison
    left.axvline(c.staleness_mean, color="black", ls=":", label=f"run mean {c.staleness_mean:.3f}")
    if trace.system.protocol == "k-batch-async":
        left.axvline(c.staleness_exact, color="tab:blue", label=f"exact mean (measured system) {c.staleness_exact:.3f}")
        left.axvline(c.staleness_paper, color="tab:red", ls="--", label=f"paper mean {c.staleness_paper:.3f}")
    else:  # the theory's or the engine's for the configured system (experiments.measured.compare)
        left.axvline(c.staleness_exact, color="tab:blue", label=f"predicted mean {c.staleness_exact:.3f}")
    left.set_xlim(-0.7, max(_upper(real), _upper(simulated)) + 0.7)
    left.set_title(f"staleness, n = {trace.system.n}, K = {trace.system.K}")
    _legend_below(left)
    if per_class:
        class_panel(axes[1], trace["worker"][keep], trace["staleness"][keep], law, trace.system, what="run")
        _legend_below(axes[1])
    errors = np.asarray(result.errors)
    unit = "time units" if result.time_unit is not None else "s"
    if errors.size:
        error_vs_time(errors[:, 1], errors[:, 2], label="real run", ax=right)
        _legend_below(right)
    right.set_xlabel(f"time ({unit})")
    right.set_title("training error")
    fig.subplots_adjust(bottom=0.36, wspace=0.3)
    return fig


def class_panel(ax: Any, worker: np.ndarray, staleness: np.ndarray, law: Any, system: Any, what: str = "simulated"
                ) -> Any:  # fmt: skip
    """Per worker class of ``law`` (a :class:`~stalegrad.theory.StalenessDistribution`): the measured
    distribution of the class's gradients (``worker`` and ``staleness`` of each gradient) as a step line, and the
    class's predicted pmf as markers of the same colour."""
    top = 1
    for k, cls in enumerate(law.per_class):
        mine = np.isin(worker, cls.workers)
        hist = np.bincount(staleness[mine], minlength=1).astype(float)
        colour = COLOURS[k % len(COLOURS)]
        if hist.sum() > 0:
            ax.step(np.arange(hist.size), hist / hist.sum(), where="mid", color=colour, lw=1.2,
                    label=f"{what}, workers {_workers(cls.workers)}")  # fmt: skip
        shown = min(len(cls.pmf), max(hist.size, 1) + 2)
        trip = f", Tc {system.tcs[cls.workers[0]]:g}" if system.per_worker_delays else ""
        ax.plot(np.arange(shown), cls.pmf[:shown], "o", color=colour, ms=4,
                label=f"predicted, compute time {describe_law(system.compute[cls.workers[0]])}{trip}")  # fmt: skip
        top = max(top, _upper(hist), _upper(cls.pmf[:shown]))
    ax.set_xlim(-0.7, top + 0.7)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("staleness τ")
    ax.set_ylabel("fraction of the class's gradients")
    ax.set_title("per worker class")
    ax.grid(alpha=0.3)
    return ax


def _distribution(system: Any) -> Any:
    """The predicted staleness distribution of ``system``, or ``None`` where it cannot be predicted."""
    from .theory import distribution_refusal, staleness_distribution

    return None if distribution_refusal(system) is not None else staleness_distribution(system)


def _upper(counts: np.ndarray, mass: float = 0.999) -> int:
    """The smallest staleness below which ``mass`` of a histogram or pmf lies (the x-axis ends there)."""
    c = np.cumsum(np.asarray(counts, dtype=float))
    return int(np.searchsorted(c, mass * c[-1])) if c.size and c[-1] > 0 else 0


def _legend_below(ax: Any) -> None:
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=1, frameon=False)


def _workers(workers: Sequence[int]) -> str:
    w = list(workers)
    return f"{w[0]}..{w[-1]}" if len(w) > 2 and w == list(range(w[0], w[-1] + 1)) else ", ".join(map(str, w))
