"""Experiments: compositions of theory, engines, analysis and replay that answer a question, above all of them.

* :mod:`.points` -- one simulated system beside its theory (``simulate``, ``compare``);
* :mod:`.paper` -- the paper's figures 1-3 and Section 4; :mod:`.reproduce` writes them;
* :mod:`.measured` -- a real run's staleness beside the prediction from its measured times;
* :mod:`.figures` -- the figures of ``simulate``, ``compare`` and ``run``, written with their metadata.
"""

from __future__ import annotations

from .figures import plot_points, plot_protocols, plot_run
from .measured import Comparison, compare, measured_system, simulate_measured
from .paper import Fig3, fig1, fig2, fig3, section4
from .points import Point, compare_protocols, for_protocol, run_point, simulate_points
from .reproduce import TARGETS, reproduce
from .training import TrainConfig, TrainSweep, configurations, train_sweep, write_train

__all__ = [
    "TARGETS",
    "Comparison",
    "Fig3",
    "Point",
    "TrainConfig",
    "TrainSweep",
    "compare",
    "compare_protocols",
    "configurations",
    "fig1",
    "fig2",
    "fig3",
    "for_protocol",
    "measured_system",
    "plot_points",
    "plot_protocols",
    "plot_run",
    "reproduce",
    "run_point",
    "section4",
    "simulate_measured",
    "simulate_points",
    "train_sweep",
    "write_train",
]
