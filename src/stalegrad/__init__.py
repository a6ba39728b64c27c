"""stalegrad: gradient staleness in asynchronous distributed SGD -- predicted, simulated, replayed, run.

The public API is re-exported here and loaded on first use, so that ``import stalegrad`` (and the CLI's
``--help``) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "System": "spec",
    "PROTOCOLS": "spec",
    "Trace": "trace",
    "Summary": "trace",
    "StalegradError": "errors",
    "SpecError": "errors",
    "shifted_exponential": "distributions",
    "deterministic": "distributions",
    "empirical": "distributions",
    "parse_model": "syntax",
    "Prediction": "theory",
    "predict": "theory",
    "update_rate": "theory",
    "staleness_paper": "theory",
    "staleness_exact": "theory",
    "staleness_exact_per_worker": "theory",
    "renewal_function": "theory",
    "simulate": "sim",
    "simulate_summary": "sim",
    "Estimate": "analysis",
    "Transient": "analysis",
    "steady_state": "analysis",
    "transient": "analysis",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stalegrad' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
