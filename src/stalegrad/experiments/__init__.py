"""Experiments: compositions of theory, engines, analysis and replay that answer a question, above all of them.

* :mod:`.points` -- one simulated system beside its theory (``simulate``, ``compare``);
* :mod:`.paper` -- the paper's figures 1-3 and Section 4; :mod:`.reproduction` writes them;
* :mod:`.measured` -- a real run's staleness beside the prediction from its measured times;
* :mod:`.figures` -- the figures of ``simulate``, ``compare`` and ``run``, written with their metadata.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .figures import plot_points, plot_protocols, plot_run
    from .measured import Comparison, compare, measured_system, simulate_measured
    from .paper import Fig3, fig1, fig2, fig3, section4
    from .points import Point, compare_protocols, for_protocol, run_point, simulate_points
    from .reproduction import TARGETS, reproduce
    from .training import TrainConfig, TrainSweep, configurations, train_sweep, write_train

# loaded on first use: a command that needs one name does not pay for the others' imports
_EXPORTS = {
    "plot_points": "figures",
    "plot_protocols": "figures",
    "plot_run": "figures",
    "Comparison": "measured",
    "compare": "measured",
    "measured_system": "measured",
    "simulate_measured": "measured",
    "Fig3": "paper",
    "fig1": "paper",
    "fig2": "paper",
    "fig3": "paper",
    "section4": "paper",
    "Point": "points",
    "compare_protocols": "points",
    "for_protocol": "points",
    "run_point": "points",
    "simulate_points": "points",
    "TARGETS": "reproduction",
    "reproduce": "reproduction",
    "TrainConfig": "training",
    "TrainSweep": "training",
    "configurations": "training",
    "train_sweep": "training",
    "write_train": "training",
}

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


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stalegrad.experiments' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value
