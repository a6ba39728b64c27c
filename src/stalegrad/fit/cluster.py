"""From records to a System: check each worker's series, group the workers, fit each class, fix the delays.

This is the composition behind ``stalegrad fit``; its result, :class:`ClusterFit`, holds the fitted
:class:`~stalegrad.spec.System` (the same value every command takes) and everything needed to justify it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError
from ..spec import PROTOCOLS, System
from ..streams import derive_seed, resolve_seed
from .checks import Finding, check_workers
from .classes import check_level, group_workers
from .laws import SampleFit, check_gof_samples, fit_sample
from .records import Records

__all__ = ["ClusterFit", "WorkerClass", "fit_cluster"]


@dataclass(frozen=True, eq=False)
class WorkerClass:
    """Workers that share a law, and the fit of their pooled times."""

    index: int
    workers: tuple[str, ...]
    fit: SampleFit

    @property
    def law(self) -> Any:
        return self.fit.law.model

    def to_dict(self) -> dict[str, Any]:
        f = self.fit
        law = f.law
        return {
            "class": self.index,
            "workers": list(self.workers),
            "law": law.text,
            "family": law.family,
            "mean": law.mean(),
            "p95": law.quantile(0.95),
            "records": f.sample.n,
            "censored": f.sample.n_censored,
            "aic": f.best.aic,
            "bic": f.best.bic,
            "loglik": f.best.loglik,
            "goodness_of_fit": None if f.gof is None else f.gof.to_dict(),
            "empirical_fallback": f.fallback,
            "candidates": [
                {"family": c.family, "law": c.text, "params": c.params, "loglik": c.loglik, "aic": c.aic, "bic": c.bic}
                for c in f.candidates
            ],
        }


@dataclass(frozen=True, eq=False)
class ClusterFit:
    """A fitted system with its evidence: the classes, the warnings about the i.i.d. assumption, the delays."""

    system: System
    classes: tuple[WorkerClass, ...]
    findings: tuple[Finding, ...]
    records: Records
    level: float
    seed: int
    gof_samples: int
    uplink_records: int
    notes: tuple[str, ...]

    def worker_order(self) -> list[str]:
        """Worker labels in the System's order (worker ``i`` of the System is ``worker_order()[i]``)."""
        return [w for c in self.classes for w in c.workers]

    def warnings(self) -> list[str]:
        """One line per worker and problem found (drift, bursts), and per class whose law was rejected."""
        lines = [f.message for f in self.findings]
        for c in self.classes:
            if c.fit.rejected:
                p = c.fit.gof.p_value if c.fit.gof is not None else math.nan
                what = "the empirical law replaces it" if c.fit.fallback else "it is kept (censored tail unknown)"
                lines.append(
                    f"class {c.index}: every family is rejected (best {c.fit.best.family}, goodness-of-fit "
                    f"p = {p:.3g} <= {self.level}); {what}"
                )
        return lines


def _from_traces(records: Records, key: str) -> Any:
    values = {s.system[key] for s in records.sources if s.system is not None}
    return values.pop() if len(values) == 1 and all(s.system is not None for s in records.sources) else None


def fit_cluster(
    records: Records,
    *,
    level: float = 0.01,
    seed: int | None = None,
    gof_samples: int = 99,
    per_worker: bool = False,
    K: int | None = None,
) -> ClusterFit:
    """Check, group and fit the workers of ``records``, and build the System they describe.

    ``level``: of the grouping tests, the goodness-of-fit tests and the i.i.d. checks. ``per_worker``: one class
    per worker (no grouping). ``K``: gradients per update (default: the Traces' K, else ``n``; the records do not
    say). ``gof_samples``: bootstrap samples of each class's goodness-of-fit test (0: no test).
    """
    level = check_level(level)
    check_gof_samples(gof_samples, level)
    root = resolve_seed(seed)
    samples = records.samples()
    findings = check_workers(samples, level)
    groups = [[w] for w in samples] if per_worker else group_workers(samples, level)
    classes = []
    for k, members in enumerate(groups):
        pooled = samples[members[0]].pooled(*(samples[w] for w in members[1:]))
        try:
            fit = fit_sample(pooled, gof_samples=gof_samples, level=level, rng=derive_seed(root, k))
        except SpecError as exc:
            raise SpecError(f"workers {', '.join(members)}: {exc}") from None
        classes.append(WorkerClass(k, tuple(members), fit))
    n = sum(len(c.workers) for c in classes)
    notes = list(records.notes)
    protocol = _from_traces(records, "protocol") or "k-batch-async"
    if protocol not in PROTOCOLS:
        protocol = "k-batch-async"
    if K is None:
        K = _from_traces(records, "K")
        if K is None:
            K = n
            notes.append(f"K is not in the records: K = n = {n} (give --K here or to the command that reads the file)")
    delays = records.uplink_delays()
    if delays.size:
        uplink = float(np.mean(delays))
        notes.append(
            f"uplink delay fixed at its mean over every worker's {delays.size} records, {uplink:.4g} s (per-worker "
            "and random delays are not fitted yet); the downlink is not in the records and is taken equal to it"
        )
    else:
        uplink = 0.0
        notes.append(
            "no delays in the records (sent and arrive times): tc = 0 (give --tc to the command that reads the file)"
        )
    compute = [c.law for c in classes for _ in c.workers]
    system = System(n=n, K=K, compute=compute, uplink=uplink, downlink=uplink, protocol=protocol)
    return ClusterFit(
        system, tuple(classes), tuple(findings), records, level, root, gof_samples, delays.size, tuple(notes)
    )
