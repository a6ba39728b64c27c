"""One vocabulary for every result: the keys that every row of every command carries, with one meaning each.

``predict``, ``simulate``, ``compare``, ``train`` and ``run`` (and every later command) put these keys at the top
level of each row of their ``--json`` output and their CSV files, and the Python result objects' ``row()`` /
``to_dict()`` use the same names. A key that a command cannot know (``predict`` measures nothing) is ``null``.
The table in ``docs/vocabulary.md`` is this dictionary, and a test holds the two together.
"""

from __future__ import annotations

from typing import Any

from ..spec import System

__all__ = ["SHARED_KEYS", "shared_row", "staleness_law"]

#: key -> meaning (the documentation table).
SHARED_KEYS: dict[str, str] = {
    "protocol": "the protocol: k-batch-async (the paper's), k-async, k-sync, k-batch-sync, sync, rennala, "
    "ringmaster, mindflayer",
    "n": "workers",
    "active_workers": "the workers that compute, by index (null: all n; option --workers); the others sit idle",
    "K": "gradients per update",
    "tc": "mean round-trip communication time (uplink + downlink; per-worker delays: the mean over the active workers)",
    "staleness_bound": "the master drops gradients with staleness above it (null: no bound)",
    "delay_threshold": "ringmaster's R: a round whose delay reaches R is stopped, a gradient of delay >= R dropped "
    "(null: other protocols)",
    "seed": "the seed of this row's random numbers (null where nothing is random)",
    "staleness_mean": "measured mean staleness after the warm-up (simulated, replayed or run); null in predict",
    "staleness_ci95": "half-width of the 95% confidence interval of staleness_mean (batch means)",
    "staleness_max": "largest staleness measured",
    "staleness_exact": "the exact limit of the mean staleness (theory; null where no limit is known)",
    "staleness_paper": "the paper's Theorem 2, (n/K)(Tc + mu)/mu (null for other protocols)",
    "update_rate": "measured updates per second (per time unit in a real run) after the warm-up",
    "update_rate_exact": "long-run updates per second from theory (null where no closed form is known)",
    "wasted_compute": "fraction of the compute time spent on work never applied: rounds cancelled, stopped or "
    "abandoned, and gradients dropped (null in predict)",
}


def shared_row(
    system: System,
    *,
    seed: int | None,
    estimate: Any = None,
    prediction: Any = None,
) -> dict[str, Any]:
    """The shared keys of one row: the system's, the measured ones from an :class:`~stalegrad.analysis.Estimate`
    (or ``None``), the theory's from a :class:`~stalegrad.theory.Prediction` (or ``None``)."""
    return {
        "protocol": system.protocol,
        "n": system.n,
        "active_workers": None if system.workers is None else list(system.workers),
        "K": system.K,
        "tc": system.tc,
        "staleness_bound": system.staleness_bound,
        "delay_threshold": system.delay_threshold,
        "seed": seed,
        "staleness_mean": None if estimate is None else estimate.mean,
        "staleness_ci95": None if estimate is None else estimate.ci95,
        "staleness_max": None if estimate is None else estimate.max,
        "staleness_exact": None if prediction is None else prediction.staleness_exact,
        "staleness_paper": None if prediction is None else prediction.staleness_paper,
        "update_rate": None if estimate is None else estimate.update_rate,
        "update_rate_exact": None if prediction is None else prediction.update_rate_exact,
        "wasted_compute": None if estimate is None else estimate.wasted_compute,
    }


def staleness_law(
    system: System,
    *,
    quantiles: tuple[float, ...] = (),
    tails: tuple[int, ...] = (),
    drop_at_most: float | None = None,
) -> dict[str, Any]:
    """The predicted staleness distribution's keys of a row (:func:`stalegrad.theory.staleness_distribution`):
    ``staleness_p50/p95/p99``, ``staleness_pmf`` (index = staleness), per class, asked quantiles and tails, what a
    staleness bound drops; ``null`` with ``staleness_pmf_refusal`` saying why where it cannot be predicted.
    A system with a staleness bound is predicted without it, and the bound's dropped fraction is an upper bound."""
    from ..theory import distribution_refusal, staleness_distribution

    system = system.active_system()  # the idle workers change nothing
    unbounded = system.replace(staleness_bound=None) if system.protocol == "k-batch-async" else system
    refusal = distribution_refusal(unbounded)
    keys: dict[str, Any] = {
        "staleness_p50": None,
        "staleness_p95": None,
        "staleness_p99": None,
        "staleness_pmf": None,
        "staleness_classes": [],
        "staleness_pmf_refusal": None if refusal is None else f"{refusal[0]} must be {refusal[2]}",
    }
    if refusal is not None:
        return keys
    law = staleness_distribution(unbounded)
    d = law.to_dict()

    def quantile(q: float) -> int | None:
        return law.quantile(q) if q <= 1.0 - law.truncation else None

    keys.update(
        staleness_p50=d["staleness_p50"],
        staleness_p95=d["staleness_p95"],
        staleness_p99=d["staleness_p99"],
        staleness_pmf=d["staleness_pmf"],
        staleness_pmf_truncation=law.truncation,
        staleness_pmf_error=law.error_estimate,
        staleness_pmf_method=law.method,
        staleness_classes=[
            {
                "workers": list(c.workers),
                "model": c.model,
                "share": c.share,
                "mean": c.mean,
                **{f"p{round(100 * q)}": _quantile(c.pmf, q) for q in (0.5, 0.95, 0.99)},
            }
            for c in law.per_class
        ],
    )
    if quantiles:
        keys["staleness_quantiles"] = {f"{q:g}": quantile(q) for q in quantiles}
    if tails:
        keys["staleness_tail"] = {str(s): law.tail(s) for s in tails}
    if drop_at_most is not None:
        keys["smallest_bound"] = law.smallest_bound(drop_at_most)
    if system.staleness_bound is not None:  # the law above is the unbounded system's: only the drop is about this one
        keys = {k: v for k, v in keys.items() if k == "smallest_bound"}
        keys.update(
            staleness_p50=None, staleness_p95=None, staleness_p99=None, staleness_pmf=None, staleness_classes=[],
            staleness_pmf_refusal="staleness_bound must be None for the staleness distribution (simulate)",
            dropped_fraction_bound=law.dropped_by_bound(system.staleness_bound),
        )  # fmt: skip
    return keys


def _quantile(pmf: Any, q: float) -> int | None:
    import numpy as np

    cdf = np.cumsum(pmf)
    hit = np.flatnonzero(cdf >= q - 1e-12)
    return int(hit[0]) if hit.size else None
