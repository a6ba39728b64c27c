"""The system being modelled: one master, ``n`` workers, an update after every ``K`` gradients.

A :class:`System` is validated once, when it is built, and is immutable afterwards. Everything else in the
package (theory, simulators, replay, runtime) takes one.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .delays import as_tuple, check_delays, describe_delays, mean_delay, parse_delay_text
from .distributions import ComputeModel, validate_model
from .errors import invalid
from .subsets import resolve_cutoffs, resolve_workers
from .syntax import describe

__all__ = [
    "ASYNC_PROTOCOLS",
    "DUTTA_PROTOCOLS",
    "MAX_WORKERS",
    "PROTOCOLS",
    "STALE_PROTOCOLS",
    "System",
    "require_system",
]

#: The most workers a System may have (a simulated cluster of a million workers runs; a billion does not fit).
MAX_WORKERS = 1_000_000

#: Protocols, with what they do (Dutta et al. 2018, "Slow and stale gradients can win the race").
PROTOCOLS = {
    "k-batch-async": "the paper's: an update after K gradients from any workers; workers never wait",
    "k-async": "an update after K gradients from distinct workers; only those K get the new version and restart",
    "k-sync": "all on the current version; the first K of n gradients make the update; the rest are cancelled",
    "k-batch-sync": "all on the current version; the first K gradients from any workers; the rest are cancelled",
    "sync": "fully synchronous: every worker's gradient on the current version (k-sync with K = n)",
    "rennala": "Rennala SGD (Tyurin & Richtarik 2023): K = S gradients on the current version from any workers; "
    "the rest are cancelled at each update (k-batch-sync, usually on the fastest workers)",
    "ringmaster": "Ringmaster ASGD (Maranjyan, Tyurin & Richtarik 2025): asynchronous SGD (K = 1) with a delay "
    "threshold R: a round whose delay reaches R is stopped and restarted on the newest version",
    "mindflayer": "MindFlayer SGD (Maranjyan, Shaikh Omar & Richtarik 2025): rennala with a cutoff per worker: a "
    "round that runs past its worker's cutoff is abandoned and restarted",
}
#: The protocols of Dutta et al. 2018 (``compare``'s default set).
DUTTA_PROTOCOLS = ("k-batch-async", "k-async", "k-sync", "k-batch-sync", "sync")
#: Protocols whose workers compute on stale versions (a staleness bound applies to them).
ASYNC_PROTOCOLS = ("k-batch-async", "k-async")
#: Protocols whose applied gradients may be stale (ringmaster bounds them by its own threshold R).
STALE_PROTOCOLS = (*ASYNC_PROTOCOLS, "ringmaster")


def _int_param(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < low:
        raise invalid(name, value, f"an integer >= {low}")
    return int(value)


@dataclass(frozen=True, init=False)
class System:
    """A hub-and-spoke system with ``n`` workers and K-batch updates (DESIGN.md, "The system").

    Parameters
    ----------
    n : number of workers (``>= 1``).
    K : gradients per update (``>= 1``; ``K > n`` is allowed).
    compute : one compute-time model for every worker, or a sequence of ``n`` models (scipy.stats-like).
    tc : round-trip communication time; each direction defaults to ``tc / 2``.
    uplink, downlink : per-direction delay (seconds, or a distribution) overriding ``tc / 2``: one for every
        worker, or a sequence of ``n`` (worker ``i`` takes entry ``i``; a sequence of one repeated delay is that
        delay). Stored as the one delay, or as a tuple of ``n``.
    protocol : one of :data:`PROTOCOLS`.
    staleness_bound : for the asynchronous protocols, the master drops (and counts) gradients whose staleness
        would exceed this bound; ``None`` for no bound.
    workers : the workers that compute (the others sit idle): ``None`` or ``"all"``, ``"fastest:M"`` (the ``M``
        fastest by mean compute time, ties by index), ``"0,2,5"`` or a sequence of indices. Stored as the sorted
        tuple of indices, or ``None`` when every worker computes.
    delay_threshold : ringmaster's ``R`` (an integer >= 1; required by ringmaster, ``None`` otherwise).
    cutoffs : mindflayer's cutoff per worker in seconds (one number for all, or ``n``; required by mindflayer).

    >>> from stalegrad.distributions import shifted_exponential
    >>> s = System(n=16, K=10, tc=1, compute=shifted_exponential(alpha=1, rate=2/3))
    >>> s.tc, s.uplink, s.downlink
    (1.0, 0.5, 0.5)
    """

    n: int
    K: int
    compute: tuple[Any, ...]
    uplink: Any
    downlink: Any
    protocol: str
    staleness_bound: int | None
    workers: tuple[int, ...] | None = None
    delay_threshold: int | None = None
    cutoffs: tuple[float, ...] | None = None

    def __init__(
        self,
        n: int,
        K: int,
        compute: ComputeModel | Sequence[ComputeModel],
        tc: float = 0.0,
        uplink: Any = None,
        downlink: Any = None,
        protocol: str = "k-batch-async",
        staleness_bound: int | None = None,
        workers: Any = None,
        delay_threshold: int | None = None,
        cutoffs: Any = None,
    ) -> None:
        n = _int_param("n", n, 1)
        if n > MAX_WORKERS:
            raise invalid("n", n, f"an integer from 1 to {MAX_WORKERS:,} workers")
        K = _int_param("K", K, 1)
        if isinstance(tc, bool) or not isinstance(tc, numbers.Real) or not (math.isfinite(tc) and tc >= 0):
            raise invalid("tc", tc, "a finite number of seconds >= 0")
        if isinstance(compute, (str, bytes)):
            raise invalid("compute", compute, "a distribution or a sequence of n distributions (not text)")
        if isinstance(compute, Sequence):
            models = tuple(compute)
            if len(models) != n:
                raise invalid("compute", f"{len(models)} models", f"one model or exactly n={n} models")
        else:
            models = (compute,) * n
        checked: dict[int, Any] = {}
        for i, model in enumerate(models):
            if id(model) not in checked:
                checked[id(model)] = validate_model(model, f"compute[{i}]")
        if protocol not in PROTOCOLS:
            raise invalid("protocol", protocol, f"one of {', '.join(PROTOCOLS)}")
        active = resolve_workers(workers, [float(m.mean()) for m in models])
        m_active = n if active is None else len(active)
        who = "n" if active is None else "the number of active workers"
        if protocol in ("k-async", "k-sync") and m_active < K:
            raise invalid("K", K, f"at most {who} = {m_active} for {protocol} (K distinct workers per update)")
        if protocol == "sync" and m_active != K:
            raise invalid("K", K, f"{who} = {m_active} for the sync protocol (every worker in every update)")
        if protocol == "ringmaster" and K != 1:
            raise invalid("K", K, "1 for ringmaster (an update on every gradient accepted)")
        if protocol == "ringmaster":
            if delay_threshold is None:
                raise invalid("delay_threshold", None, "an integer R >= 1 for ringmaster (--delay-threshold R)")
            delay_threshold = _int_param("delay_threshold", delay_threshold, 1)
        elif delay_threshold is not None:
            raise invalid("delay_threshold", delay_threshold, f"None for {protocol} (ringmaster's R only)")
        if protocol == "mindflayer":
            if cutoffs is None:
                raise invalid("cutoffs", None, "seconds > 0 for mindflayer (--cutoff SECONDS, one or n values)")
            cutoffs = resolve_cutoffs(cutoffs, n)
            if not any(float(models[i].cdf(cutoffs[i])) > 0 for i in (range(n) if active is None else active)):
                raise invalid(
                    "cutoffs",
                    list(cutoffs),
                    "times that some active worker can finish a round within (P(X_i <= c_i) > 0)",
                )
        elif cutoffs is not None:
            raise invalid("cutoffs", cutoffs, f"None for {protocol} (mindflayer's cutoffs only)")
        if staleness_bound is not None:
            staleness_bound = _int_param("staleness_bound", staleness_bound, 0)
            if protocol not in ASYNC_PROTOCOLS:
                raise invalid(
                    "staleness_bound", staleness_bound, f"None for {protocol} (its gradients are never stale)"
                )
        object.__setattr__(self, "n", n)
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "compute", models)
        object.__setattr__(self, "uplink", check_delays("uplink", tc / 2 if uplink is None else uplink, n))
        object.__setattr__(self, "downlink", check_delays("downlink", tc / 2 if downlink is None else downlink, n))
        object.__setattr__(self, "protocol", protocol)
        object.__setattr__(self, "staleness_bound", staleness_bound)
        object.__setattr__(self, "workers", active)
        object.__setattr__(self, "delay_threshold", delay_threshold)
        object.__setattr__(self, "cutoffs", cutoffs)

    @property
    def drop_bound(self) -> int | None:
        """The largest staleness the master applies: ``staleness_bound``, or ringmaster's ``R - 1``."""
        return self.staleness_bound if self.delay_threshold is None else self.delay_threshold - 1

    @property
    def active(self) -> tuple[int, ...]:
        """The workers that compute, in index order (every worker unless ``workers`` says otherwise)."""
        return tuple(range(self.n)) if self.workers is None else self.workers

    def active_system(self) -> System:
        """The same system without its idle workers: ``n`` = the active workers, renumbered ``0 .. M-1`` in index
        order (theory and the compiled engines work on it; idle workers change nothing but the numbering)."""
        if self.workers is None:
            return self
        keep = self.workers
        return System(
            n=len(keep),
            K=self.K,
            compute=[self.compute[i] for i in keep],
            uplink=[self.uplink_of(i) for i in keep] if isinstance(self.uplink, tuple) else self.uplink,
            downlink=[self.downlink_of(i) for i in keep] if isinstance(self.downlink, tuple) else self.downlink,
            protocol=self.protocol,
            staleness_bound=self.staleness_bound,
            delay_threshold=self.delay_threshold,
            cutoffs=None if self.cutoffs is None else [self.cutoffs[i] for i in keep],
        )

    @property
    def per_worker_delays(self) -> bool:
        """True when the workers' delays differ (``uplink`` or ``downlink`` is a tuple of ``n``)."""
        return isinstance(self.uplink, tuple) or isinstance(self.downlink, tuple)

    def uplink_of(self, i: int) -> Any:
        """Worker ``i``'s uplink delay (seconds, or a distribution)."""
        return self.uplink[i] if isinstance(self.uplink, tuple) else self.uplink

    def downlink_of(self, i: int) -> Any:
        """Worker ``i``'s downlink delay (seconds, or a distribution)."""
        return self.downlink[i] if isinstance(self.downlink, tuple) else self.downlink

    @property
    def tcs(self) -> tuple[float, ...]:
        """Each worker's mean round trip, ``Tc_i = E[U_i] + E[D_i]``."""
        if not self.per_worker_delays:
            return (self.tc,) * self.n
        cache: dict[int, float] = {}

        def mean(d: Any) -> float:
            return d if isinstance(d, float) else cache.setdefault(id(d), float(d.mean()))

        return tuple(mean(self.uplink_of(i)) + mean(self.downlink_of(i)) for i in range(self.n))

    @property
    def tc(self) -> float:
        """Mean round-trip communication time, uplink plus downlink (with per-worker delays: the mean over the
        active workers of their round trips, :attr:`tcs`)."""
        if not self.per_worker_delays:
            return mean_delay(self.uplink) + mean_delay(self.downlink)
        tcs = self.tcs
        return math.fsum(tcs[i] for i in self.active) / len(self.active)

    @property
    def deterministic_delays(self) -> bool:
        """True when both directions take a fixed time (for every worker)."""
        return all(isinstance(d, float) for d in (*as_tuple(self.uplink), *as_tuple(self.downlink)))

    @property
    def means(self) -> tuple[float, ...]:
        """Mean compute time of each worker, ``mu_i``."""
        cache: dict[int, float] = {}
        return tuple(cache.setdefault(id(m), float(m.mean())) for m in self.compute)

    @property
    def identical(self) -> bool:
        """True when every worker has the same compute-time model."""
        first = self.compute[0]
        return all(m is first or describe(m) == describe(first) for m in self.compute)

    def groups(self) -> list[tuple[int, Any]]:
        """Runs of consecutive workers with the same model, as ``(count, model)`` pairs."""
        out: list[tuple[int, Any]] = []
        for m in self.compute:
            if out and (out[-1][1] is m or describe(out[-1][1]) == describe(m)):
                out[-1] = (out[-1][0] + 1, out[-1][1])
            else:
                out.append((1, m))
        return out

    def replace(self, **changes: Any) -> System:
        """A copy with some fields changed (``n`` may change when there is one model, and one delay per direction,
        for all workers; ``tc`` sets both delays to ``tc / 2`` unless ``uplink`` or ``downlink`` is given)."""
        n = changes.get("n", self.n)
        compute = changes.get("compute")
        if compute is None:
            if n != self.n and not self.identical:
                raise invalid("n", n, f"{self.n} (heterogeneous workers: give compute= for the new n)")
            compute = self.compute[0] if self.identical else self.compute
        delays = {}
        for name in ("uplink", "downlink"):
            delays[name] = changes.get(name, getattr(self, name))
            if isinstance(delays[name], tuple) and n != self.n and name not in changes and "tc" not in changes:
                raise invalid("n", n, f"{self.n} (per-worker {name} delays: give {name}= for the new n)")
            if "tc" in changes and name not in changes:
                delays[name] = None  # tc / 2, as in the constructor
        return System(
            n=n,
            K=changes.get("K", self.K),
            compute=compute,
            tc=changes.get("tc", 0.0),
            uplink=delays["uplink"],
            downlink=delays["downlink"],
            protocol=changes.get("protocol", self.protocol),
            staleness_bound=changes.get("staleness_bound", self.staleness_bound),
            workers=changes.get("workers", self.workers),
            delay_threshold=changes.get("delay_threshold", self.delay_threshold),
            cutoffs=changes.get("cutoffs", self.cutoffs),
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> System:
        """Rebuild a System from :meth:`to_dict`'s output (models in the ``--compute`` text form).

        Every problem is a :class:`SpecError`; the worker counts of ``compute`` are checked against ``n`` before
        any list of models is made (a file cannot make it allocate more than ``n`` entries).
        """
        from .errors import SpecError
        from .syntax import parse_model

        if not isinstance(d, dict) or any(k not in d for k in ("n", "K", "compute", "uplink", "downlink")):
            raise SpecError(f"system description must have n, K, compute, uplink and downlink, got {d!r}")
        n = _int_param("n", d["n"], 1)
        if n > MAX_WORKERS:
            raise invalid("n", n, f"an integer from 1 to {MAX_WORKERS:,} in a system description")
        texts = d["compute"]
        if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
            raise invalid("compute", texts, "a list of models in text form, such as ['4*expon(scale=1)']")
        parsed = [parse_model(text) for text in texts]
        if sum(count for count, _ in parsed) != n:
            raise invalid("compute", texts, f"models for exactly n = {n} workers")
        workers = [model for count, model in parsed for _ in range(count)]

        def one(name: str, value: Any) -> tuple[int, Any]:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return 1, float(value)
            if not isinstance(value, str):
                raise invalid(name, value, "a number of seconds or a model in text form")
            return parse_delay_text(name, value)

        def delay(name: str, value: Any) -> Any:
            if not isinstance(value, list):
                count, d = one(name, value)
                if count != 1:
                    raise invalid(name, value, "one delay without a count, or a list of them per worker")
                return d
            parsed = [one(f"{name}[{j}]", v) for j, v in enumerate(value)]
            if sum(count for count, _ in parsed) != n:
                raise invalid(name, value, f"delays for exactly n = {n} workers (counted like compute: '3*0.25')")
            return [d for count, d in parsed for _ in range(count)]

        return cls(
            n=n,
            K=d["K"],
            compute=workers,
            uplink=delay("uplink", d["uplink"]),
            downlink=delay("downlink", d["downlink"]),
            protocol=d.get("protocol", "k-batch-async"),
            staleness_bound=d.get("staleness_bound"),
            workers=d.get("active_workers"),
            delay_threshold=d.get("delay_threshold"),
            cutoffs=d.get("cutoffs"),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description that records everything needed to rebuild the system."""
        return {
            "protocol": self.protocol,
            "staleness_bound": self.staleness_bound,
            "n": self.n,
            "K": self.K,
            "tc": self.tc,
            "uplink": describe_delays(self.uplink),
            "downlink": describe_delays(self.downlink),
            "compute": [f"{c}*{describe(m)}" for c, m in self.groups()],
            "active_workers": None if self.workers is None else list(self.workers),
            "delay_threshold": self.delay_threshold,
            "cutoffs": None if self.cutoffs is None else list(self.cutoffs),
        }

    def __repr__(self) -> str:
        d = self.to_dict()
        return (
            f"System(n={d['n']}, K={d['K']}, uplink={d['uplink']!r}, downlink={d['downlink']!r}, "
            f"compute={' + '.join(d['compute'])!r}, protocol={d['protocol']!r}"
            + "".join(
                f", {k}={d[k]!r}"
                for k in ("staleness_bound", "active_workers", "delay_threshold", "cutoffs")
                if d[k] is not None
            )
            + ")"
        )


def require_system(value: Any, parameter: str = "system") -> System:
    """``value`` itself if it is a :class:`System`, else the one-line :class:`SpecError` naming ``parameter``.

    >>> require_system("x")
    Traceback (most recent call last):
    ...
    stalegrad.errors.SpecError: system must be a stalegrad.System, got 'str'
    """
    if not isinstance(value, System):
        raise invalid(parameter, type(value).__name__, "a stalegrad.System")
    return value
