"""The delays of a fitted system: from the records (``arrive - sent`` uplink, ``received - published`` downlink),
fixed at their mean or, with ``fit_delays``, fitted like compute times; or given (``--model-bytes``,
``--bandwidth``, ``--latency``).

Each direction's per-worker delays are grouped into classes (:func:`.classes.group_workers`, the k-sample
Anderson-Darling test at the fit's level; workers whose delays are each one value are grouped by that value).
Fixed (the default), each class's workers take the class's mean delay; fitted (``fit_delays``), each class is
fitted on its pooled delays (:func:`.laws.fit_sample`) and its workers take that law. When every worker falls in
one class, the System gets one delay per direction (the pooled mean, or the law fitted to every delay pooled);
otherwise per-worker delays (``DelayFit.per_worker``; a worker without delays of its own takes the pooled value).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError
from ..streams import derive_seed
from .choice import SampleFit, fit_sample
from .classes import group_workers
from .laws import MIN_FINISHED, Sample
from .records import Records

__all__ = ["DelayFit", "find_delays"]


@dataclass(frozen=True, eq=False)
class DelayFit:
    """One direction's delay: what the System takes (seconds, or a law), how it was found, and the evidence."""

    direction: str
    value: Any  # float seconds or a frozen law
    how: str
    delays: np.ndarray  # every measured delay, pooled (empty when none was measured)
    pooled: SampleFit | None = None
    classes: tuple[tuple[tuple[str, ...], SampleFit], ...] = ()
    per_worker: dict[str, Any] | None = None  # worker -> its delay, when the workers' delays differ
    means: tuple[tuple[tuple[str, ...], float, int], ...] = ()  # fixed: (workers, mean, records) per class

    def values(self, order: list[str]) -> Any:
        """What the System takes for workers ``order`` (labels in the System's order): one delay, or a list."""
        if self.per_worker is None:
            return self.value
        return [self.per_worker.get(w, self.value) for w in order]

    def like(self, direction: str, how: str, delays: np.ndarray) -> DelayFit:
        """This delay taken for the other direction (not in the records)."""
        return DelayFit(direction, self.value, how, delays, per_worker=self.per_worker)

    def to_dict(self) -> dict[str, Any]:
        from ..syntax import describe

        d: dict[str, Any] = {
            "value": self.value if isinstance(self.value, float) else describe(self.value),
            "how": self.how,
            "records": int(self.delays.size),
            "mean": float(self.delays.mean()) if self.delays.size else None,
            "std": float(self.delays.std()) if self.delays.size > 1 else None,
        }
        if self.pooled is not None:
            d["pooled"] = _fit_dict(self.pooled)
            d["classes"] = [{"workers": list(w), **_fit_dict(f)} for w, f in self.classes]
        if self.means:  # classes fixed at their mean (not fitted)
            d.setdefault("classes", [])
            d["classes"] += [{"workers": list(w), "mean": m, "records": k} for w, m, k in self.means]
        return d


def _fit_dict(fit: SampleFit) -> dict[str, Any]:
    return {
        "law": fit.law.text,
        "family": fit.law.family,
        "mean": fit.law.mean(),
        "p95": fit.law.quantile(0.95),
        "records": fit.sample.n,
        "aic": fit.best.aic,
        "goodness_of_fit": None if fit.gof is None else fit.gof.to_dict(),
    }


def find_delays(
    records: Records,
    *,
    fit: bool = False,
    given: float | None = None,
    level: float = 0.01,
    seed: int = 0,
    gof_samples: int = 99,
) -> tuple[DelayFit, DelayFit, list[str], list[str]]:
    """The uplink and downlink delays, and the notes and warnings to print beside them."""
    notes: list[str] = []
    warnings: list[str] = []
    found = {}
    for k, direction in enumerate(("uplink", "downlink")):
        per_worker = records.delays(direction)
        pooled = np.concatenate(list(per_worker.values())) if per_worker else np.empty(0)
        if given is not None:
            found[direction] = DelayFit(direction, given, "given: latency + model bytes / bandwidth", pooled)
        elif not pooled.size:
            found[direction] = DelayFit(direction, 0.0, "not in the records", pooled)
        elif not fit:
            found[direction] = _means(direction, per_worker, pooled, level)
        else:
            found[direction] = _fitted(direction, per_worker, pooled, level, derive_seed(seed, 100 + k), gof_samples)
    up, down = found["uplink"], found["downlink"]
    if given is not None:
        notes.append(f"delays given: {given:.6g} s per direction (latency + model bytes / bandwidth)")
        if up.delays.size or down.delays.size:
            notes.append("the delays measured in the records are not used (the given ones replace them)")
    elif not up.delays.size and not down.delays.size:
        notes.append(
            "no delays in the records (sent and arrive, or published and received times): tc = 0 (give --tc, or "
            "--model-bytes and --bandwidth, to the command that reads the file)"
        )
    else:
        if down.how == "not in the records":
            down = up.like("downlink", "taken equal to the uplink (not in the records)", down.delays)
        if up.how == "not in the records":
            up = down.like("uplink", "taken equal to the downlink (not in the records)", up.delays)
        for d in (up, down):
            if d.how.startswith("mean, every"):
                notes.append(
                    f"{d.direction} delay fixed at its mean over every worker's {d.delays.size} records, "
                    f"{d.value:.4g} s (--fit-delays fits its law)"
                )
            elif d.how.startswith("mean per class"):
                shown = ", ".join(f"{m:.4g} s ({len(w)} worker{'s' if len(w) != 1 else ''})" for w, m, _ in d.means)
                notes.append(
                    f"{d.direction} delays differ between workers ({len(d.means)} classes): each worker's is fixed "
                    f"at its class's mean, {shown} (--fit-delays fits their laws)"
                )
            elif d.how.startswith("taken"):
                notes.append(f"the {d.direction} is not in the records: {d.how.split(' (')[0]}")
            else:
                notes.append(f"{d.direction} delay: {d.how}")
    return up, down, notes, warnings


def _fitted(
    direction: str, per_worker: dict[str, np.ndarray], pooled: np.ndarray, level: float, seed: int, gof: int
) -> DelayFit:
    """Each worker's delays grouped and fitted; the System gets each class's law for its workers, or the pooled law
    when there is one class (a fixed or zero delay when every delay is one value, or the mean when some are 0 or
    too few to fit)."""
    if np.ptp(pooled) <= 1e-6 * float(np.max(pooled)):  # one value, up to the rounding of the clock readings
        return DelayFit(direction, float(np.mean(pooled)), "fixed: every measured delay is this value", pooled)
    if all(np.ptp(d) <= 1e-6 * max(float(np.max(d)), 1e-300) for d in per_worker.values()):
        return _means(direction, per_worker, pooled, level)  # each worker's delay is one value: nothing to fit
    if pooled.min() <= 0 or pooled.size < MIN_FINISHED:
        why = "some delays are 0" if pooled.min() <= 0 else f"fewer than {MIN_FINISHED} delays"
        return DelayFit(direction, float(pooled.mean()), f"mean, every worker pooled (not fitted: {why})", pooled)
    everyone = Sample.of(pooled)
    try:
        whole = fit_sample(everyone, gof_samples=gof, level=level, rng=seed)
    except SpecError as exc:
        return DelayFit(direction, float(pooled.mean()), f"mean, every worker pooled (not fitted: {exc})", pooled)
    samples = {w: Sample.of(d) for w, d in per_worker.items() if d.size >= MIN_FINISHED}
    groups = group_workers(samples, level) if len(samples) > 1 else [list(samples)]
    classes = []
    fixed: list[tuple[tuple[str, ...], float, int]] = []  # classes whose delays are one value: not fitted
    for j, members in enumerate(g for g in groups if g):
        sample = samples[members[0]].pooled(*(samples[w] for w in members[1:]))
        if np.ptp(sample.times) <= 1e-6 * float(np.max(sample.times)):
            fixed.append((tuple(members), float(np.mean(sample.times)), sample.n))
            continue
        try:
            classes.append((tuple(members), fit_sample(sample, gof_samples=gof, level=level, rng=derive_seed(seed, j))))
        except SpecError:
            fixed.append((tuple(members), float(np.mean(sample.times)), sample.n))
    if len(classes) <= 1 and not fixed:
        how = f"fitted: {whole.law.text}, every worker pooled ({len(classes)} class{'es' if len(classes) != 1 else ''})"
        return DelayFit(direction, whole.law.model, how, pooled, whole, tuple(classes))
    parts = [f"{f.law.text} ({len(w)} worker{'s' if len(w) != 1 else ''})" for w, f in classes]
    parts += [f"fixed {m:.4g} s ({len(w)} worker{'s' if len(w) != 1 else ''})" for w, m, _ in fixed]
    how = f"fitted per class of workers ({len(classes) + len(fixed)} classes): {'; '.join(parts)}"
    values: dict[str, Any] = {w: float(np.mean(d)) for w, d in per_worker.items()}  # too few delays: their mean
    values |= {w: f.law.model for members, f in classes for w in members}
    values |= {w: m for members, m, _ in fixed for w in members}
    return DelayFit(direction, whole.law.model, how, pooled, whole, tuple(classes), values, tuple(fixed))


def _means(direction: str, per_worker: dict[str, np.ndarray], pooled: np.ndarray, level: float) -> DelayFit:
    """Each class of workers' delays fixed at the class's mean (one value when every worker is in one class)."""
    groups = _delay_classes(per_worker, level)
    if len(groups) <= 1:
        return DelayFit(direction, float(pooled.mean()), "mean, every worker pooled", pooled)
    means = []
    values: dict[str, Any] = {}
    for members in groups:
        mine = np.concatenate([per_worker[w] for w in members])
        means.append((tuple(members), float(mine.mean()), int(mine.size)))
        values |= dict.fromkeys(members, float(mine.mean()))
    how = f"mean per class of workers ({len(groups)} classes)"
    return DelayFit(direction, float(pooled.mean()), how, pooled, per_worker=values, means=tuple(means))


def _delay_classes(per_worker: dict[str, np.ndarray], level: float) -> list[list[str]]:
    """Workers whose delays share a law: grouped by value when each worker's delays are one value (fixed delays,
    up to the clock's rounding), else by the k-sample Anderson-Darling test (:func:`.classes.group_workers`)."""
    workers = list(per_worker)
    if len(workers) < 2:
        return [workers]
    if all(np.ptp(d) <= 1e-6 * max(float(np.max(d)), 1e-300) for d in per_worker.values()):
        by_value: dict[float, list[str]] = {}
        for w in workers:
            value = float(np.mean(per_worker[w]))
            key = next((k for k in by_value if abs(k - value) <= 1e-6 * max(abs(k), abs(value))), value)
            by_value.setdefault(key, []).append(w)
        return sorted(by_value.values(), key=lambda ws: float(np.mean(per_worker[ws[0]])))
    samples = {w: Sample(np.asarray(d, dtype=float), np.zeros(d.size, dtype=bool)) for w, d in per_worker.items()}
    try:
        return group_workers(samples, level)
    except (ValueError, SpecError):  # too few delays for the test: each worker its own class
        return [[w] for w in workers]
