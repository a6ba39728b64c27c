"""Training along a timeline: problems, step-size policies, and SGD replayed along a Trace.

The torch problems (:mod:`.torch_problems`: ``TorchProblem``, ``mlp_digits``, ``cnn_digits``) are loaded on first
use, so importing this package never imports torch (an optional extra: ``pip install 'stalegrad[torch]'``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .policies import (
    POLICIES,
    chain,
    constant,
    delay_adaptive,
    delay_compensation,
    get_policy,
    staleness_aware,
)
from .problems import FunctionProblem, LinearModel, LinearRegression, LogisticRegression, Problem
from .replay import ReplayResult, replay

if TYPE_CHECKING:
    from .torch_problems import TorchProblem, cnn_digits, mlp_digits

_TORCH = ("TorchProblem", "cnn_digits", "mlp_digits")

__all__ = [
    "POLICIES",
    "FunctionProblem",
    "LinearModel",
    "LinearRegression",
    "LogisticRegression",
    "Problem",
    "ReplayResult",
    "TorchProblem",
    "chain",
    "cnn_digits",
    "constant",
    "delay_adaptive",
    "delay_compensation",
    "get_policy",
    "mlp_digits",
    "replay",
    "staleness_aware",
]


def __getattr__(name: str) -> Any:
    if name not in _TORCH:
        raise AttributeError(f"module 'stalegrad.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(".torch_problems", __name__), name)
    globals()[name] = value
    return value
