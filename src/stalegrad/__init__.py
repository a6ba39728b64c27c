"""stalegrad: gradient staleness in asynchronous distributed SGD -- predicted, simulated, replayed, run.

The public API is re-exported here, one name per line, and loaded on first use, so that ``import stalegrad`` (and
the CLI's ``--help``) stays fast; the ``TYPE_CHECKING`` block tells type checkers what each name is. The
subpackages (``stalegrad.theory``, ``sim``, ``train``, ``runtime``, ``experiments``) load on first use too.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:  # what the lazy loader below returns, for mypy and IDEs
    from . import experiments, runtime, sim, theory, train
    from .analysis import Estimate, Transient, steady_state, transient
    from .distributions import ComputeModel, deterministic, empirical, scaled, shifted_exponential
    from .errors import SpecError, StalegradError
    from .runtime.run import run as run
    from .sim import simulate, simulate_summary
    from .spec import PROTOCOLS, System
    from .theory import (
        Prediction,
        predict,
        renewal_function,
        staleness_exact,
        staleness_exact_per_worker,
        staleness_paper,
        update_rate,
    )
    from .trace import Summary, Trace
    from .trace_io import read_trace, write_trace
    from .train import Problem, ReplayResult, replay

_EXPORTS = {
    # the system and its parts
    "System": "spec",
    "PROTOCOLS": "spec",
    "ComputeModel": "distributions",
    "shifted_exponential": "distributions",
    "deterministic": "distributions",
    "empirical": "distributions",
    "scaled": "distributions",
    # errors
    "StalegradError": "errors",
    "SpecError": "errors",
    # theory
    "Prediction": "theory",
    "predict": "theory",
    "update_rate": "theory",
    "staleness_paper": "theory",
    "staleness_exact": "theory",
    "staleness_exact_per_worker": "theory",
    "renewal_function": "theory",
    # engines and their data
    "simulate": "sim",
    "simulate_summary": "sim",
    "Trace": "trace",
    "Summary": "trace",
    "read_trace": "trace_io",
    "write_trace": "trace_io",
    # analysis
    "Estimate": "analysis",
    "Transient": "analysis",
    "steady_state": "analysis",
    "transient": "analysis",
    # training along a timeline, and for real
    "Problem": "train",
    "ReplayResult": "train",
    "replay": "train",
    "run": "runtime",
}
_SUBPACKAGES = ("experiments", "runtime", "sim", "theory", "train")

__all__ = [
    "PROTOCOLS",
    "ComputeModel",
    "Estimate",
    "Prediction",
    "Problem",
    "ReplayResult",
    "SpecError",
    "StalegradError",
    "Summary",
    "System",
    "Trace",
    "Transient",
    "__version__",
    "deterministic",
    "empirical",
    "experiments",
    "predict",
    "read_trace",
    "renewal_function",
    "replay",
    "run",
    "runtime",
    "scaled",
    "shifted_exponential",
    "sim",
    "simulate",
    "simulate_summary",
    "staleness_exact",
    "staleness_exact_per_worker",
    "staleness_paper",
    "steady_state",
    "theory",
    "train",
    "transient",
    "update_rate",
    "write_trace",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'stalegrad' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
