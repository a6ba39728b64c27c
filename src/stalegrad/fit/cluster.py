"""From records to a System: check each worker's series, group the workers, fit each class (and, with records at
several batch sizes, its compute time against the batch size), find the delays.

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
from .batch import BatchFit, fit_batch_law
from .checks import Finding, check_workers
from .choice import SampleFit, check_gof_samples, fit_sample
from .classes import check_level, group_workers
from .delays import DelayFit, find_delays
from .laws import Sample
from .records import Records

__all__ = ["ClusterFit", "WorkerClass", "fit_cluster"]


@dataclass(frozen=True, eq=False)
class WorkerClass:
    """Workers that share a law, and the fit of their pooled times."""

    index: int
    workers: tuple[str, ...]
    fit: SampleFit  # at the reference batch size when the records have several
    batch: BatchFit | None = None  # compute time against batch size

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
            "batch": None if self.batch is None else self.batch.to_dict(),
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
    uplink: DelayFit
    downlink: DelayFit
    notes: tuple[str, ...]
    delay_warnings: tuple[str, ...] = ()
    batch_reference: int | None = None  # the batch size of the System's compute laws (records at several sizes)

    def compute_batch(self) -> list[str] | None:
        """The ``compute_batch`` of the system file: per class, ``"COUNT*LAW(b)"``, or ``None`` when a class has
        no batch law."""
        if self.batch_reference is None or any(c.batch is None for c in self.classes):
            return None
        return [f"{len(c.workers)}*{c.batch.law.text}" for c in self.classes]  # type: ignore[union-attr]

    def worker_order(self) -> list[str]:
        """Worker labels in the System's order (worker ``i`` of the System is ``worker_order()[i]``)."""
        return [w for c in self.classes for w in c.workers]

    def warnings(self) -> list[str]:
        """One line per worker and problem found (drift, bursts), and per class whose law was rejected."""
        lines = [f.message for f in self.findings] + list(self.delay_warnings)
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
    fit_delays: bool = False,
    delay: float | None = None,
) -> ClusterFit:
    """Check, group and fit the workers of ``records``, and build the System they describe.

    ``level``: of the grouping tests, the goodness-of-fit tests and the i.i.d. checks. ``per_worker``: one class
    per worker (no grouping). ``K``: gradients per update (default: the Traces' K, else ``n``; the records do not
    say). ``gof_samples``: bootstrap samples of each class's goodness-of-fit test (0: no test). ``fit_delays``:
    fit the delays' laws (default: their mean). ``delay``: a fixed delay per direction that replaces the
    records' (seconds).

    With records at several batch sizes, the workers are grouped and each class's law chosen and tested on the
    records at the *reference* batch size (the most frequent; the largest of equals), which the System's laws
    describe; then each class's compute time against the batch size is fitted on all its records
    (:func:`.batch.fit_batch_law`, in the family chosen).
    """
    level = check_level(level)
    check_gof_samples(gof_samples, level)
    root = resolve_seed(seed)
    notes = list(records.notes)
    reference, base = _reference_batch(records, notes)
    samples = base.samples()
    findings = check_workers(samples, level)
    groups = [[w] for w in samples] if per_worker else group_workers(samples, level)
    classes = []
    for k, members in enumerate(groups):
        pooled = samples[members[0]].pooled(*(samples[w] for w in members[1:]))
        try:
            fit = fit_sample(pooled, gof_samples=gof_samples, level=level, rng=derive_seed(root, k))
            batch = None if reference is None else _batch_fit(records, members, fit.best.family, notes, k)
        except SpecError as exc:
            raise SpecError(f"workers {', '.join(members)}: {exc}") from None
        classes.append(WorkerClass(k, tuple(members), fit, batch))
    n = sum(len(c.workers) for c in classes)
    protocol = _from_traces(records, "protocol") or "k-batch-async"
    if protocol not in PROTOCOLS:
        protocol = "k-batch-async"
    if K is None:
        K = _from_traces(records, "K")
        if K is None:
            K = n
            notes.append(f"K is not in the records: K = n = {n} (give --K here or to the command that reads the file)")
    up, down, delay_notes, delay_warnings = find_delays(
        records, fit=fit_delays, given=delay, level=level, seed=root, gof_samples=gof_samples
    )
    notes += delay_notes
    compute = [c.law for c in classes for _ in c.workers]
    order = [w for c in classes for w in c.workers]
    system = System(n=n, K=K, compute=compute, uplink=up.values(order), downlink=down.values(order), protocol=protocol)
    return ClusterFit(
        system, tuple(classes), tuple(findings), records, level, root, gof_samples, up, down, tuple(notes),
        tuple(delay_warnings), reference,
    )  # fmt: skip


def _reference_batch(records: Records, notes: list[str]) -> tuple[int | None, Records]:
    """The reference batch size and its records (``None`` and every record when fewer than 2 sizes are known)."""
    sizes = records.batch_sizes()
    if sizes.size < 2:
        return None, records
    known = records.batch[np.isfinite(records.batch)]
    counts = np.array([np.sum(known == b) for b in sizes])
    reference = int(sizes[np.flatnonzero(counts == counts.max())[-1]])
    base = records.where(records.batch == reference)
    missing = sorted(set(records.workers()) - set(base.workers()))
    if missing:
        raise SpecError(
            f"records at several batch sizes ({', '.join(str(int(b)) for b in sizes)}): every worker needs records "
            f"at the reference size {reference} (the most frequent), and {', '.join(missing[:5])} has none"
        )
    unknown = int(np.sum(~np.isfinite(records.batch)))
    notes.append(
        f"records at batch sizes {', '.join(str(int(b)) for b in sizes)}: the laws are those at b = {reference} "
        f"(the most frequent); compute time against b is fitted on every record with a batch size"
        + (f" ({unknown} without one are left out of it)" if unknown else "")
    )
    return reference, base


def _batch_fit(records: Records, members: list[str], family: str, notes: list[str], k: int) -> BatchFit | None:
    mine = np.isin(records.worker, members) & np.isfinite(records.batch)
    by_size: dict[int, Sample] = {}
    for b in np.unique(records.batch[mine]):
        at = mine & (records.batch == b)
        by_size[int(b)] = Sample(records.duration[at], records.censored[at])
    by_size = {b: s for b, s in by_size.items() if s.finished.size >= 10}
    if len(by_size) < 2:
        notes.append(f"class {k}: fewer than 2 batch sizes with 10 finished records each; no law against b")
        return None
    return fit_batch_law(by_size, family)
