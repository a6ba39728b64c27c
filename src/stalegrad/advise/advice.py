"""The advisor's answer: ranked configurations with predicted time to target, the recommendation with the command
lines that run it, and the theory's worker count; rows in the shared vocabulary (``docs/vocabulary.md``).

The validated rows (the finalists and the naive choice, :mod:`.validation`) come first, with their times on the
validation replications and their paired log ratio to the naive choice; the other survivors of the halving
follow with their times on the halving's replications (``validated`` false)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..spec import System
from ..syntax import describe
from ..theory import predict
from .search import Scored, SearchResult, search
from .theory import noise_scale

__all__ = ["Advice", "advise"]

#: The keys of ``recommended`` taken from its row.
RECOMMENDED = ("protocol", "workers", "K", "b", "step", "policy", "delay_threshold", "cutoffs", "time_to_target")


@dataclass(frozen=True)
class Advice:
    """What :func:`advise` found (see :mod:`stalegrad.advise.search` for how)."""

    cluster: System
    problem: str
    target: float
    result: SearchResult
    noise_ratio: float | None
    seconds: float

    @property
    def recommended(self) -> Scored:
        return self.result.ranked[0]

    def row(self, s: Scored, rank: int | None) -> dict[str, Any]:
        """One configuration in the shared vocabulary, with its time to target (median, 95% interval)."""
        from ..experiments.training import _median_interval  # one rule for intervals of medians

        c = s.candidate
        system = c.system(self.cluster, self.result.batch_laws)
        pred = predict(system)
        finite = [t for t in s.times if math.isfinite(t)]
        lo, hi = _median_interval(s.times) if len(s.times) > 1 else [math.nan, math.nan]
        paired = self.result.paired.get(c)
        return {
            "rank": rank,
            "protocol": c.protocol,
            "n": system.n,
            "K": c.K,
            "tc": system.tc,
            "staleness_bound": None,
            "delay_threshold": c.delay_threshold,
            "cutoffs": None if system.cutoffs is None else list(system.cutoffs),
            "cutoff_quantile": c.cutoff_quantile,
            "seed": self.result.root,
            "workers": list(c.workers),
            "active_workers": list(c.workers),  # the cluster's workers this candidate uses
            "b": c.b,
            "step": c.step,
            "policy": c.policy,
            "time_to_target": _num(s.time_to_target),
            "time_to_target_ci95": [_num(lo), _num(hi)],
            "reached": len(finite),
            "seeds": len(s.times),
            "final_error": _num(float(np.median(s.errors))),
            "staleness_mean": float(np.mean(s.staleness)),
            "staleness_ci95": _ci(s.staleness),
            "staleness_max": None,
            "staleness_p95": float(np.median(s.staleness_p95)),
            "staleness_exact": pred.staleness_exact,
            "staleness_paper": pred.staleness_paper,
            "update_rate": float(np.mean(s.rates)),
            "update_rate_exact": pred.update_rate_exact,
            "wasted_compute": float(np.mean(s.wasted)) if s.wasted else 0.0,
            "diverged": any(s.diverged),
            "validated": self.result.validated(s),
            "log_ratio_naive": _num(paired.mean) if paired else None,
            "log_ratio_naive_ci95": [_num(x) for x in paired.ci95] if paired else None,
        }

    def rows(self) -> list[dict[str, Any]]:
        return [self.row(s, k + 1) for k, s in enumerate(self.result.ranked)]

    def commands(self, problem_option: str) -> dict[str, str | None]:
        """The command lines of the recommendation: ``train`` replays it on the cluster's model; ``run`` runs it
        on Ray with real workers (start it on the chosen workers' machines: the times are yours, not injected)."""
        c = self.recommended.candidate
        size = ["--n", str(len(c.workers)), "--K", str(c.K)]
        protocol = ["--protocol", c.protocol] if c.protocol != "k-batch-async" else []
        if c.delay_threshold is not None:
            protocol += ["--delay-threshold", str(c.delay_threshold)]
        if c.cutoff_quantile is not None:
            cutoffs = c.system(self.cluster, self.result.batch_laws).cutoffs or ()
            # train multiplies the cutoffs by b with the laws (b times a draw), keeps them with laws of b
            per = 1 if self.result.batch_laws is not None else c.b
            protocol += ["--cutoff", ",".join(f"{x / per:.6g}" for x in cutoffs)]
        tail = ["--problem", problem_option, "--b", str(c.b), "--step", f"{c.step:.4g}"]
        policy = ["--policy", c.policy] if c.policy != "constant" else []
        train = ["stalegrad", "train", *size, *self.system_args(c.workers), *protocol, *tail, *policy, "--target",
                 f"{self.target:.4g}"]  # fmt: skip
        run = ["stalegrad", "run", *size, *protocol, *tail]
        # what the real runtime makes: every protocol, with a constant step; mindflayer's cutoffs only on injected
        # compute times (--time-unit), which a run on the chosen machines does not have
        runnable = c.protocol != "mindflayer" and c.policy == "constant"
        return {"train": shlex.join(train), "run": shlex.join(run) if runnable else None}

    def system_args(self, workers: Sequence[int]) -> list[str]:
        """``--compute`` (with counts; ``--compute-batch`` with laws of ``b``) and the delays (``--tc`` when both
        directions are half of it) of the chosen workers."""
        laws = self.result.batch_laws
        texts = (
            [laws[i].text for i in workers]
            if laws is not None
            else [describe(self.cluster.compute[i]) for i in workers]
        )
        groups: list[list[Any]] = []
        for t in texts:
            if groups and groups[-1][1] == t:
                groups[-1][0] += 1
            else:
                groups.append([1, t])
        flag = "--compute-batch" if laws is not None else "--compute"
        args = [x for k, t in groups for x in (flag, t if len(groups) == 1 or k == 1 else f"{k}*{t}")]
        up, down = self.cluster.uplink, self.cluster.downlink
        if isinstance(up, float) and isinstance(down, float) and up == down:
            return [*args, "--tc", f"{up + down:g}"] if up > 0 else args
        if self.cluster.per_worker_delays:  # the chosen workers' own delays, counted like --compute
            from ..delays import describe_delays

            out = list(args)
            for name, of in (("--uplink", self.cluster.uplink_of), ("--downlink", self.cluster.downlink_of)):
                runs = describe_delays(tuple(of(i) for i in workers))
                out += [x for r in (runs if isinstance(runs, list) else [runs]) for x in (name, str(r))]
            return out
        d = self.cluster.to_dict()
        return [*args, "--uplink", str(d["uplink"]), "--downlink", str(d["downlink"])]

    def to_dict(self, problem_option: str) -> dict[str, Any]:
        rec = self.row(self.recommended, 1)
        choice = self.result.theory
        naive = self.row(self.result.naive, None)
        return {
            "rows": self.rows(),
            "recommended": {k: rec[k] for k in RECOMMENDED}
            | {k: rec[k] for k in ("time_to_target_ci95", "log_ratio_naive", "log_ratio_naive_ci95")}
            | {"commands": self.commands(problem_option)},
            "naive": naive,
            "naive_recommended": self.recommended.candidate == self.result.naive.candidate,
            "gain_over_naive": _num(naive["time_to_target"] / rec["time_to_target"])
            if naive["time_to_target"] and rec["time_to_target"]
            else None,
            "theory_workers": None if choice is None else choice.m,
            "theory_worker_order": None if choice is None else list(choice.order),
            "noise_ratio": self.noise_ratio,
            "target": self.target,
            "horizon": self.result.horizon,
            "validation_seeds": len(self.result.validation),
            "configurations_screened": self.result.screened,
            "replays": self.result.replays,
            "seconds": self.seconds,
            "seed": self.result.root,
            "system": self.cluster.to_dict(),
        }


def advise(
    cluster: System,
    problem: Any,
    target: float,
    *,
    noise_ratio: float | None = None,
    progress: Callable[[str], None] | None = None,
    **options: Any,
) -> Advice:
    """Ranked configurations of ``cluster`` for reaching ``target`` on ``problem`` (:func:`search`'s options).

    ``noise_ratio`` (``S = sigma^2 / epsilon``) defaults to the problem's own at its optimum and the target, when
    the problem is a linear model (:func:`~stalegrad.advise.theory.noise_scale`); the theory's worker count is
    then among the subsets tried."""
    import time

    t0 = time.perf_counter()
    if noise_ratio is None:
        scale = noise_scale(problem)
        bs = options.get("bs") or (1,)
        noise_ratio = scale.noise_ratio(target, bs[0]) if scale is not None else None
    result = search(cluster, problem, target, noise_ratio=noise_ratio, progress=progress, **options)
    return Advice(cluster, getattr(problem, "name", repr(problem)), target, result, noise_ratio,
                  time.perf_counter() - t0)  # fmt: skip


def _num(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _ci(values: Sequence[float]) -> float | None:
    if len(values) < 2:
        return None
    import scipy.stats

    return float(scipy.stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values)))
