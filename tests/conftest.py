"""Shared fixtures: the paper's compute-time model and a few systems used across test files."""

from __future__ import annotations

import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.spec import System


@pytest.fixture
def paper_model():
    """The paper's compute times: 1 + Exp(lambda = 2/3), mean 2.5."""
    return shifted_exponential(alpha=1, rate=2 / 3)


@pytest.fixture
def fig1_system(paper_model):
    return System(n=16, K=10, tc=1, compute=paper_model)
