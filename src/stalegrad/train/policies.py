"""Step-size policies and gradient corrections for stale gradients: small pure functions, composed, never
special-cased in the replay loop.

A **step-size policy** is a function ``policy(base, tau, n) -> step``: the base step, the staleness of each
gradient (an integer array) and the number of workers give the step of each gradient (an array of the same
shape). The replay calls it on whole blocks of the trace, so a policy is vectorised numpy and a new rule is a
few lines::

    def halved_when_stale(base, tau, n):
        return np.where(tau > n, base / 2, base)

A **correction** is a function ``correct(g, w_now, w_stale) -> g'`` applied to each gradient ``g`` computed on
the stale version ``w_stale`` before it is applied to the master's current ``w_now`` (DC-ASGD). Corrections
compose with :func:`chain`, left to right.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import invalid

__all__ = [
    "POLICIES",
    "Correction",
    "StepSize",
    "chain",
    "constant",
    "delay_adaptive",
    "delay_compensation",
    "get_policy",
    "staleness_aware",
]

#: ``policy(base, tau, n) -> step`` (vectorised over ``tau``).
StepSize = Callable[[float, np.ndarray, int], np.ndarray]
#: ``correct(g, w_now, w_stale) -> g'``.
Correction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def constant(base: float, tau: np.ndarray, n: int) -> np.ndarray:
    """``eta = base`` whatever the staleness (plain asynchronous SGD).

    >>> constant(0.1, np.array([0, 5]), 10).tolist()
    [0.1, 0.1]
    """
    return np.full(np.shape(tau), float(base))


def staleness_aware(base: float, tau: np.ndarray, n: int) -> np.ndarray:
    """``eta = base / tau`` (``base`` for ``tau = 0``): the staleness-dependent learning rate of Zhang, Gupta,
    Lian and Liu, *Staleness-aware async-SGD for distributed deep learning*, IJCAI 2016.

    >>> staleness_aware(0.1, np.array([0, 1, 4]), 10).tolist()
    [0.1, 0.1, 0.025]
    """
    return float(base) / np.maximum(np.asarray(tau, dtype=float), 1.0)


def delay_adaptive(base: float, tau: np.ndarray, n: int) -> np.ndarray:
    """``eta = base * min(1, n / tau)``: full steps for delays up to the number of workers, shrinking as
    ``1/tau`` beyond (the delay-adaptive step of Mishchenko, Bach, Even and Woodworth, *Asynchronous SGD beats
    minibatch SGD under arbitrary delays*, NeurIPS 2022).

    >>> delay_adaptive(0.1, np.array([0, 10, 40]), 10).tolist()
    [0.1, 0.1, 0.025]
    """
    tau = np.asarray(tau, dtype=float)
    return float(base) * np.minimum(1.0, n / np.maximum(tau, 1.0))


#: The policies known by name (the CLI's ``--policy``).
POLICIES: dict[str, StepSize] = {
    "constant": constant,
    "staleness-aware": staleness_aware,
    "delay-adaptive": delay_adaptive,
}


def get_policy(policy: str | StepSize) -> StepSize:
    """A policy from its name in :data:`POLICIES`, or the function itself."""
    if callable(policy):
        return policy
    if policy not in POLICIES:
        raise invalid("policy", policy, f"one of {', '.join(POLICIES)} or a function (base, tau, n) -> step")
    return POLICIES[policy]


def delay_compensation(lam: float) -> Correction:
    """DC-ASGD (Zheng et al., *Asynchronous stochastic gradient descent with delay compensation*, ICML 2017):

        g' = g + lam * g * g * (w_now - w_stale)

    a first-order Taylor correction of the stale gradient towards the current point, with the diagonal of
    ``g g^T`` standing in for the Hessian (their constant-``lambda`` variant, DC-ASGD-c). ``lam = 0`` is no
    correction.

    >>> dc = delay_compensation(0.5)
    >>> dc(np.array([2.0]), np.array([1.0]), np.array([0.0])).tolist()
    [4.0]
    """
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not (np.isfinite(lam) and lam >= 0):
        raise invalid("lam", lam, "a finite number >= 0")
    lam = float(lam)

    def correct(g: np.ndarray, w_now: np.ndarray, w_stale: np.ndarray) -> np.ndarray:
        return g + lam * g * g * (w_now - w_stale)

    correct.__qualname__ = f"delay_compensation({lam!r})"
    return correct


def chain(*corrections: Correction) -> Correction:
    """Apply corrections one after the other (the first one first)."""

    def correct(g: np.ndarray, w_now: np.ndarray, w_stale: np.ndarray) -> np.ndarray:
        for c in corrections:
            g = c(g, w_now, w_stale)
        return g

    correct.__qualname__ = f"chain({', '.join(getattr(c, '__qualname__', repr(c)) for c in corrections)})"
    return correct
