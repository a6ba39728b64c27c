"""One vocabulary for every result: the keys that every row of every command carries, with one meaning each.

``predict``, ``simulate``, ``compare``, ``train`` and ``run`` (and every later command) put these keys at the top
level of each row of their ``--json`` output and their CSV files, and the Python result objects' ``row()`` /
``to_dict()`` use the same names. A key that a command cannot know (``predict`` measures nothing) is ``null``.
The table in ``docs/vocabulary.md`` is this dictionary, and a test holds the two together.
"""

from __future__ import annotations

from typing import Any

from ..spec import System

__all__ = ["SHARED_KEYS", "shared_row"]

#: key -> meaning (the documentation table).
SHARED_KEYS: dict[str, str] = {
    "protocol": "the protocol: k-batch-async (the paper's), k-async, k-sync, k-batch-sync, sync",
    "n": "workers",
    "K": "gradients per update",
    "tc": "mean round-trip communication time (uplink + downlink)",
    "staleness_bound": "the master drops gradients with staleness above it (null: no bound)",
    "seed": "the seed of this row's random numbers (null where nothing is random)",
    "staleness_mean": "measured mean staleness after the warm-up (simulated, replayed or run); null in predict",
    "staleness_ci95": "half-width of the 95% confidence interval of staleness_mean (batch means)",
    "staleness_max": "largest staleness measured",
    "staleness_exact": "the exact limit of the mean staleness (theory; null where no limit is known)",
    "staleness_paper": "the paper's Theorem 2, (n/K)(Tc + mu)/mu (null for other protocols)",
    "update_rate": "measured updates per second (per time unit in a real run) after the warm-up",
    "update_rate_exact": "long-run updates per second from theory (null where no closed form is known)",
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
        "K": system.K,
        "tc": system.tc,
        "staleness_bound": system.staleness_bound,
        "seed": seed,
        "staleness_mean": None if estimate is None else estimate.mean,
        "staleness_ci95": None if estimate is None else estimate.ci95,
        "staleness_max": None if estimate is None else estimate.max,
        "staleness_exact": None if prediction is None else prediction.staleness_exact,
        "staleness_paper": None if prediction is None else prediction.staleness_paper,
        "update_rate": None if estimate is None else estimate.update_rate,
        "update_rate_exact": None if prediction is None else prediction.update_rate_exact,
    }
