"""Training along a timeline: problems, step-size policies, and SGD replayed along a Trace."""

from __future__ import annotations

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

__all__ = [
    "POLICIES",
    "FunctionProblem",
    "LinearModel",
    "LinearRegression",
    "LogisticRegression",
    "Problem",
    "ReplayResult",
    "chain",
    "constant",
    "delay_adaptive",
    "delay_compensation",
    "get_policy",
    "replay",
    "staleness_aware",
]
