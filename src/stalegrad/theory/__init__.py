"""Closed-form theory: update rates, the paper's Theorem 2, the exact limit of the mean staleness, and the renewal
function it needs. Pure functions of a :class:`~stalegrad.spec.System`; nothing here runs an engine.

* :mod:`.limits` -- the K-batch-async staleness limits and :func:`predict`;
* :mod:`.rates` -- the other protocols' update rates (Dutta et al. 2018);
* :mod:`.optimal` -- the optimal-time protocols' rates (rennala, mindflayer, ringmaster);
* :mod:`.renewal` -- the renewal function ``m(t)`` of any compute-time law;
* :mod:`.pmf` -- the whole stationary staleness distribution of k-batch-async (with :mod:`.arrivals`, the law of
  the arrivals ahead of a gradient, and :mod:`.counts`, the renewal-count laws it is made of).
"""

from __future__ import annotations

from .limits import (
    Prediction,
    caveat,
    is_lattice,
    predict,
    staleness_exact,
    staleness_exact_per_worker,
    staleness_paper,
    update_rate,
)
from .optimal import collect_time, mean_collect_time, rennala_bound, ringmaster_regime
from .pmf import ClassStaleness, StalenessDistribution, distribution_refusal, staleness_distribution
from .rates import is_exponential, order_statistic_mean, protocol_update_rate
from .renewal import renewal_function

__all__ = [
    "ClassStaleness",
    "Prediction",
    "StalenessDistribution",
    "caveat",
    "collect_time",
    "distribution_refusal",
    "is_exponential",
    "is_lattice",
    "mean_collect_time",
    "order_statistic_mean",
    "predict",
    "protocol_update_rate",
    "renewal_function",
    "rennala_bound",
    "ringmaster_regime",
    "staleness_distribution",
    "staleness_exact",
    "staleness_exact_per_worker",
    "staleness_paper",
    "update_rate",
]
