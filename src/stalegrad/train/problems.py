"""Optimization problems behind one small interface, shared by the replay (``stalegrad.train``) and the real
runtime (``stalegrad.runtime``).

A problem gives an initial point, a stochastic gradient of a minibatch of size ``b`` at ``w`` (the minibatch is
drawn with the caller's ``numpy.random.Generator``), and the full loss and error used to report progress.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import invalid

__all__ = ["LinearRegression", "Problem"]


@runtime_checkable
class Problem(Protocol):
    """What SGD needs from a problem."""

    name: str
    dim: int

    def init(self) -> np.ndarray:
        """The initial point ``w_0`` (a fresh array)."""
        ...

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        """Average gradient of ``b`` samples drawn uniformly (with replacement) with ``rng``, at ``w``."""
        ...

    def loss(self, w: np.ndarray) -> float:
        """Full training loss at ``w``."""
        ...

    def error(self, w: np.ndarray) -> float:
        """The error reported against time (for example the loss above its minimum)."""
        ...


class LinearRegression:
    """Least squares on synthetic data (the paper's Figure 3 problem).

    ``X`` has i.i.d. standard normal entries (``samples x dim``), ``y = X w* + noise * N(0, 1)`` with
    ``w* ~ N(0, I)``; the loss is ``F(w) = ||X w - y||^2 / (2 samples)``, the error is ``F(w) - min F``, and
    ``w_0 = 0``. The data are a pure function of ``seed``.
    """

    name = "linreg"

    def __init__(self, dim: int = 20, samples: int = 2000, noise: float = 0.5, seed: int = 0) -> None:
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise invalid("dim", dim, "an integer >= 1")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
            raise invalid("samples", samples, "an integer >= 1")
        if not (np.isfinite(noise) and noise >= 0):
            raise invalid("noise", noise, "a finite number >= 0")
        rng = np.random.default_rng(np.random.SeedSequence(seed))
        self.dim = dim
        self.samples = samples
        self.noise = float(noise)
        self.seed = seed
        self.X = rng.standard_normal((samples, dim))
        self.w_true = rng.standard_normal(dim)
        self.y = self.X @ self.w_true + noise * rng.standard_normal(samples)
        self.w_opt = np.linalg.lstsq(self.X, self.y, rcond=None)[0]
        self.loss_opt = self.loss(self.w_opt)

    def init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        idx = rng.integers(0, self.samples, size=b)
        Xb = self.X[idx]
        return Xb.T @ (Xb @ w - self.y[idx]) / b

    def loss(self, w: np.ndarray) -> float:
        r = self.X @ w - self.y
        return float(r @ r) / (2 * self.samples)

    def error(self, w: np.ndarray) -> float:
        return self.loss(w) - self.loss_opt

    def __repr__(self) -> str:
        return f"LinearRegression(dim={self.dim}, samples={self.samples}, noise={self.noise}, seed={self.seed})"
