"""What the theory says before anything is simulated: the optimal worker count of the fixed-time model, the noise
ratio ``S = sigma^2 / epsilon`` of a problem at a target, and the step sizes worth trying.

**The optimal worker count** (Tyurin & Richtárik, NeurIPS 2023, "Optimal time complexities of parallel stochastic
optimization methods under a fixed computation model"). Sort the workers by mean compute time,
``mu_(1) <= ... <= mu_(n)``. Rennala SGD, which uses the ``m`` fastest, reaches the target in time proportional to

    t(m) = (m + S) / sum_{i <= m} 1 / mu_(i),

where ``S = sigma^2 / epsilon`` is the number of stochastic gradients the noise demands per "unit of progress"
(their Theorem: the time complexity is ``min_m t(m)`` times ``L Delta / epsilon``, up to constants). The optimum
``m* = argmin_m t(m)`` ignores the slow workers when ``S`` is small: a slow worker adds 1 to the numerator
(synchronisation) and little to the rate.

**The noise ratio of a problem.** For the linear models (:class:`~stalegrad.train.LinearModel`) the quantities
are exact at the optimum ``w*``: ``sigma^2`` is the variance of one minibatch gradient (``b`` samples) at ``w*``,
the per-sample gradient's total variance over ``b``; the target error ``epsilon`` on ``F - F*`` is turned into
the theory's target on the squared gradient norm by ``||grad F||^2 <= 2 L (F - F*)`` (``L`` the largest
eigenvalue of the Hessian at ``w*``), so ``S = sigma^2 / (2 L epsilon)``. It is a scale for the search, not a
promise: the advisor confirms every candidate by replay.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import invalid

__all__ = ["NoiseScale", "WorkerChoice", "noise_scale", "step_grid", "theory_workers"]


@dataclass(frozen=True)
class WorkerChoice:
    """The fixed-time theory's choice: ``m`` (the fastest ``m`` workers), ``order`` (worker indices, fastest
    first) and ``times[m - 1] = t(m)`` for every ``m`` (in compute-time units, up to the common constant)."""

    m: int
    order: tuple[int, ...]
    times: tuple[float, ...]
    noise_ratio: float


def theory_workers(means: Sequence[float], noise_ratio: float) -> WorkerChoice:
    """``m* = argmin_m (m + S) / sum_{i<=m} 1/mu_(i)`` over the workers sorted by mean compute time (ties by
    index; the smallest ``m`` among equal times).

    >>> theory_workers([1.0, 1.0, 10.0, 10.0], noise_ratio=2.0).m
    2
    >>> theory_workers([1.0, 1.0, 10.0, 10.0], noise_ratio=1000.0).m
    4
    """
    mu = np.asarray(means, dtype=float)
    if mu.ndim != 1 or mu.size == 0 or not np.all(np.isfinite(mu) & (mu > 0)):
        raise invalid("means", list(means), "one or more finite mean compute times > 0")
    if not (isinstance(noise_ratio, (int, float)) and math.isfinite(noise_ratio) and noise_ratio >= 0):
        raise invalid("noise_ratio", noise_ratio, "a finite number >= 0")
    order = np.argsort(mu, kind="stable")
    rates = np.cumsum(1.0 / mu[order])
    m = np.arange(1, mu.size + 1)
    times = (m + noise_ratio) / rates
    best = int(np.flatnonzero(times <= times.min() * (1 + 1e-12))[0]) + 1
    return WorkerChoice(best, tuple(int(i) for i in order), tuple(float(t) for t in times), float(noise_ratio))


@dataclass(frozen=True)
class NoiseScale:
    """A linear problem at its optimum: per-sample gradient variance, the Hessian's largest and smallest
    eigenvalues."""

    sigma2: float  # total variance of one sample's gradient at w*
    L: float
    mu: float

    def noise_ratio(self, target: float, b: int) -> float:
        """``S = (sigma^2 / b) / (2 L target)`` (see the module docstring)."""
        return self.sigma2 / b / (2.0 * self.L * target)


def noise_scale(problem: Any) -> NoiseScale | None:
    """The noise scale of a problem with a linear model and a known optimum ``w_opt`` (``None`` for others)."""
    describe = getattr(problem, "linear_model", None)
    w = getattr(problem, "w_opt", None)
    if not callable(describe) or w is None:
        return None
    X, y, loss, l2 = describe()
    z = X @ w
    if loss == "squares":
        r, curvature = z - y, np.ones_like(z)
    else:
        s = 0.5 * (1.0 + np.tanh(0.5 * z))
        r, curvature = s - y, s * (1.0 - s)
    g = r[:, None] * X + l2 * w  # per-sample gradients at w*
    sigma2 = float(np.sum(np.var(g, axis=0)))
    H = (X * curvature[:, None]).T @ X / X.shape[0] + l2 * np.eye(X.shape[1])
    eig = np.linalg.eigvalsh(H)
    return NoiseScale(sigma2, float(eig[-1]), float(max(eig[0], 0.0)))


def step_grid(problem: Any, count: int = 8) -> tuple[float, ...]:
    """Constant steps worth trying, largest first, halving: from ``2 / L`` (the largest stable step of full
    gradient descent) for a linear problem, else from 1."""
    scale = noise_scale(problem)
    top = 2.0 / scale.L if scale is not None and scale.L > 0 else 1.0
    return tuple(top * 0.5**k for k in range(count))
