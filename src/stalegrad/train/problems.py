"""Optimization problems behind one small interface, shared by the replay (``stalegrad.train``) and the real
runtime (``stalegrad.runtime``).

A problem gives an initial point, a stochastic gradient of a minibatch of size ``b`` at ``w`` (the minibatch is
drawn with the caller's ``numpy.random.Generator``), and the full loss and error used to report progress. It may
also write the gradient into an array it is given (``gradient_into(w, b, rng, out)``, the same numbers as
``gradient``): a real run's workers then compute a large model's gradient straight into the shared memory the
master reads it from, with no copy (:class:`~stalegrad.train.torch_problems.TorchProblem` does).

* :class:`LinearRegression` -- least squares on synthetic data (the paper's Figure 3);
* :class:`LogisticRegression` -- l2-regularised logistic regression on scikit-learn's bundled breast-cancer data
  (no download);
* :class:`FunctionProblem` -- your own numpy gradient function.

The two data problems also describe themselves as a :class:`LinearModel` (data, loss, l2), which lets the replay
run them in compiled code. For them ``b >= samples`` means the full gradient (no sampling).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

from ..errors import invalid

__all__ = ["FunctionProblem", "LinearModel", "LinearRegression", "LogisticRegression", "Problem"]


@runtime_checkable
class Problem(Protocol):
    """What SGD needs from a problem."""

    name: str
    dim: int

    def init(self) -> np.ndarray:
        """The initial point ``w_0`` (a fresh array)."""
        ...

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        """Average gradient of ``b`` samples drawn uniformly (with replacement) with ``rng``, at ``w``.

        For the data problems here, ``b >= samples`` gives the full gradient and draws nothing."""
        ...

    def loss(self, w: np.ndarray) -> float:
        """Full training loss at ``w``."""
        ...

    def error(self, w: np.ndarray) -> float:
        """The error reported against time (for example the loss above its minimum)."""
        ...


class LinearModel(NamedTuple):
    """A generalised linear model: ``F(w) = mean_i loss(x_i . w, y_i) + (l2 / 2) ||w||^2``.

    ``loss`` is ``"squares"`` (``(z - y)^2 / 2``, gradient ``(z - y) x``) or ``"logistic"`` (labels 0/1,
    ``log(1 + e^z) - y z``, gradient ``(sigmoid(z) - y) x``).
    """

    X: np.ndarray
    y: np.ndarray
    loss: str
    l2: float


def _minibatch(X: np.ndarray, y: np.ndarray, b: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``b`` rows drawn uniformly with replacement, or all rows when ``b >= samples`` (no draw)."""
    if isinstance(b, bool) or not isinstance(b, (int, np.integer)) or b < 1:
        raise invalid("b", b, "an integer >= 1")
    if b >= X.shape[0]:
        return X, y
    idx = rng.integers(0, X.shape[0], size=b)
    return X[idx], y[idx]


class LinearRegression:
    """Least squares on synthetic data (the paper's Figure 3 problem).

    ``X`` has i.i.d. standard normal entries (``samples x dim``), ``y = X w* + noise * N(0, 1)`` with
    ``w* ~ N(0, I)``; the loss is ``F(w) = ||X w - y||^2 / (2 samples)``, the error is ``F(w) - min F``, and
    ``w_0 = 0``. The data are a pure function of ``seed``. The Hessian ``X^T X / samples`` has eigenvalues near
    1 (within ``(1 +- sqrt(dim / samples))^2``), so steps up to about ``2 / (1 + sqrt(dim / samples))^2`` are
    stable without staleness.
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
        Xb, yb = _minibatch(self.X, self.y, b, rng)
        return Xb.T @ (Xb @ w - yb) / Xb.shape[0]

    def linear_model(self) -> LinearModel:
        return LinearModel(self.X, self.y, "squares", 0.0)

    def loss(self, w: np.ndarray) -> float:
        r = self.X @ w - self.y
        return float(r @ r) / (2 * self.samples)

    def error(self, w: np.ndarray) -> float:
        return self.loss(w) - self.loss_opt

    def __repr__(self) -> str:
        return f"LinearRegression(dim={self.dim}, samples={self.samples}, noise={self.noise}, seed={self.seed})"


class LogisticRegression:
    """l2-regularised logistic regression on scikit-learn's bundled Wisconsin breast-cancer data (569 x 30).

    Features are standardised and a constant feature 1 is appended (``dim = 31``); labels are 0/1. The loss is
    ``F(w) = mean_i [log(1 + exp(x_i . w)) - y_i x_i . w] + (l2 / 2) ||w||^2``, the error is ``F(w) - min F``
    (the minimum found by L-BFGS to 1e-12), and ``w_0 = 0``. Nothing is downloaded: the data ship with
    scikit-learn.
    """

    name = "logreg"

    def __init__(self, l2: float = 1e-3) -> None:
        if not (np.isfinite(l2) and l2 > 0):
            raise invalid(
                "l2",
                l2,
                "a finite number > 0 (the unregularised problem has no minimum: the data are almost separable)",
            )
        from sklearn.datasets import load_breast_cancer

        data = load_breast_cancer()
        Z = np.asarray(data.data, dtype=float)
        Z = (Z - Z.mean(axis=0)) / Z.std(axis=0)
        self.X = np.hstack([Z, np.ones((Z.shape[0], 1))])
        self.y = np.asarray(data.target, dtype=float)
        self.samples, self.dim = self.X.shape
        self.l2 = float(l2)
        import scipy.optimize

        opt = scipy.optimize.minimize(
            self.loss,
            np.zeros(self.dim),
            jac=self.full_gradient,
            method="L-BFGS-B",
            options={"gtol": 1e-12, "ftol": 1e-15, "maxiter": 10_000},
        )
        self.w_opt = opt.x
        self.loss_opt = float(opt.fun)

    def init(self) -> np.ndarray:
        return np.zeros(self.dim)

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        Xb, yb = _minibatch(self.X, self.y, b, rng)
        return Xb.T @ (_sigmoid(Xb @ w) - yb) / Xb.shape[0] + self.l2 * w

    def full_gradient(self, w: np.ndarray) -> np.ndarray:
        return self.X.T @ (_sigmoid(self.X @ w) - self.y) / self.samples + self.l2 * w

    def loss(self, w: np.ndarray) -> float:
        z = self.X @ w
        return float(np.mean(np.logaddexp(0.0, z) - self.y * z) + 0.5 * self.l2 * (w @ w))

    def error(self, w: np.ndarray) -> float:
        return self.loss(w) - self.loss_opt

    def accuracy(self, w: np.ndarray) -> float:
        """Fraction of the data classified correctly."""
        return float(np.mean((self.X @ w > 0) == (self.y > 0.5)))

    def linear_model(self) -> LinearModel:
        return LinearModel(self.X, self.y, "logistic", self.l2)

    def __repr__(self) -> str:
        return f"LogisticRegression(data='sklearn breast_cancer', l2={self.l2})"


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


class FunctionProblem:
    """A problem from your own numpy functions.

    ``gradient(w, b, rng)`` returns the average gradient of a minibatch of ``b`` samples at ``w`` (draw the
    minibatch with ``rng`` so that runs are reproducible); ``loss(w)`` the full loss; ``error(w)`` what is
    reported against time (default: ``loss(w) - loss_opt``, with ``loss_opt = 0`` unless given).

    >>> import numpy as np
    >>> p = FunctionProblem(lambda w, b, rng: w - 1.0, lambda w: 0.5 * float((w - 1) @ (w - 1)), init=np.zeros(3))
    >>> p.error(np.ones(3)), p.dim
    (0.0, 3)
    """

    def __init__(
        self,
        gradient: Callable[[np.ndarray, int, np.random.Generator], np.ndarray],
        loss: Callable[[np.ndarray], float],
        init: Any,
        *,
        error: Callable[[np.ndarray], float] | None = None,
        loss_opt: float = 0.0,
        name: str = "custom",
    ) -> None:
        w0 = np.array(init, dtype=float)
        if w0.ndim != 1 or w0.size < 1 or not np.isfinite(w0).all():
            raise invalid("init", init, "a finite 1-d array with at least one entry")
        for label, fn in (("gradient", gradient), ("loss", loss)):
            if not callable(fn):
                raise invalid(label, fn, "a function")
        self._gradient = gradient
        self._loss = loss
        self._error = error
        self._w0 = w0
        self.loss_opt = float(loss_opt)
        self.dim = w0.size
        self.name = name

    def init(self) -> np.ndarray:
        return self._w0.copy()

    def gradient(self, w: np.ndarray, b: int, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(self._gradient(w, b, rng), dtype=float)

    def loss(self, w: np.ndarray) -> float:
        return float(self._loss(w))

    def error(self, w: np.ndarray) -> float:
        return float(self._error(w)) if self._error is not None else self.loss(w) - self.loss_opt

    def __repr__(self) -> str:
        return f"FunctionProblem(name={self.name!r}, dim={self.dim})"
