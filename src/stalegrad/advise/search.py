"""The advisor's search: candidates screened by theory, confirmed by simulation and replay, successive halving.

A candidate is a worker subset (the ``m`` fastest by mean compute time), ``K``, a minibatch ``b``, a base step
and a step-size policy (constant by default; ``delay-adaptive`` and ``staleness-aware`` scale the step by each
gradient's staleness, :mod:`stalegrad.train.policies`). Every candidate is replayed on the same problem with
common random numbers: replication ``r`` uses the timeline seed ``derive_seed(root, r, 0)`` and the minibatch seed
``derive_seed(root, r, 1)`` in every candidate (as ``train`` does), so two candidates differ only by their
configuration, and the steps of one configuration are replayed along the *same* simulated timelines.

1. **The naive choice** -- every worker, k-batch-async with ``K = 1``, the best constant step of the grid -- is
   replayed first (with the subsets at ``K = 1``), with more updates until a step reaches the target; its time to
   target ``T0`` sets the horizon ``H = horizon_factor * T0`` of every other candidate (one that has not reached
   the target by then is slower than the naive choice, and ranks by its error at ``H``). When the naive choice
   never reaches the target (its slow workers' staleness makes every step of the grid diverge), the fastest
   subset that does sets ``T0``.
2. **Theory screens.** Each configuration's update rate (the exact limit, :func:`stalegrad.theory.predict`) sets
   how many updates reach the horizon; the fixed-time theory's optimal worker count ``m*``
   (:func:`~stalegrad.advise.theory.theory_workers`) is among the subset sizes tried.
3. **Successive halving.** Rung 0 replays every (configuration, step) twice (and the steps between the grid's
   around the best); each later rung keeps the best ``1/eta`` and replays them with ``eta`` times the
   replications, up to ``seeds``.
4. **Validation** (:mod:`.validation`). The best ``finalists`` configurations of the last rung (each at its best
   step) and the naive choice (at the step the halving found best for it) are replayed on ``validation`` fresh
   replications (``seeds``, ``seeds + 1``, ...: none the halving used) and compared with the naive choice by the
   paired log ratio of their times to target; a finalist is recommended only when it beats the naive choice
   convincingly. The fresh replications' median time to target, with its 95% interval (order statistics), is
   the prediction.

The compute time of a round with minibatch ``b`` is ``b`` times a draw of the worker's law (as ``train``'s
default ``--scale-compute``), or the worker's law at ``b`` when the cluster has laws of ``b`` (a system file's
``compute_batch``). Ringmaster's thresholds and mindflayer's cutoffs are screened by theory before the replays
(:mod:`.protocols`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..batch_law import BatchLaw
from ..errors import SpecError, invalid
from ..sim import simulate
from ..spec import System
from ..streams import derive_seed, resolve_seed
from ..theory import predict
from ..train.policies import POLICIES
from .candidates import Candidate, Scored, evaluate
from .protocols import CUTOFF_QUANTILES, ringmaster_thresholds
from .theory import WorkerChoice, step_grid, theory_workers
from .validation import Paired, choose

__all__ = ["SEARCHED", "Candidate", "Scored", "evaluate", "search"]

#: Protocols the search can try (each with every K -- for rennala and mindflayer, K is the batch S of fresh
#: gradients -- but ringmaster, which updates on every gradient).
SEARCHED = ("k-batch-async", "k-async", "k-sync", "k-batch-sync", "rennala", "ringmaster", "mindflayer")


@dataclass(frozen=True)
class SearchResult:
    """The ranked configurations -- first the validated ones (the recommendation first, then by their paired log
    ratio to the naive choice, ``paired``), scored on the validation replications; then the rest of the last
    rung, scored on the halving's -- the naive choice (on the validation replications), the last rung as the
    halving ranked it (``halving``), the theory's worker count and the work done."""

    ranked: list[Scored]
    naive: Scored
    horizon: float
    theory: WorkerChoice | None
    screened: int
    replays: int
    root: int
    batch_laws: Sequence[BatchLaw] | None = None
    paired: dict[Candidate, Paired] = field(default_factory=dict)
    halving: list[Scored] = field(default_factory=list)
    validation: range = range(0)

    def validated(self, s: Scored) -> bool:
        """Whether ``s`` was scored on the validation replications."""
        return s.candidate in self.paired


def search(
    cluster: System,
    problem: Any,
    target: float,
    *,
    workers: Sequence[int] | None = None,
    Ks: Sequence[int] = (1, 2, 4, 8),
    bs: Sequence[int] = (1,),
    steps: Sequence[float] | None = None,
    policies: Sequence[str] = ("constant",),
    protocols: Sequence[str] = ("k-batch-async",),
    noise_ratio: float | None = None,
    budget_workers: int | None = None,
    seeds: int = 8,
    validation: int | None = None,
    finalists: int = 4,
    eta: int = 3,
    horizon_factor: float = 2.0,
    max_updates: int = 1_000_000,
    seed: int | None = None,
    progress: Callable[[str], None] | None = None,
    batch_laws: Sequence[BatchLaw] | None = None,
) -> SearchResult:
    """Search the configurations of ``cluster`` for the fastest to ``target`` on ``problem`` (module docstring).

    ``workers``: the subset sizes to try (default: powers of two, every worker, and the theory's ``m*`` when a
    ``noise_ratio`` is known); ``budget_workers`` caps them. ``seeds``: replications of the last rung;
    ``validation`` (default ``6 * seeds``): the fresh replications of the ``finalists`` best configurations and
    the naive choice that make the final choice (:mod:`.validation`).
    ``protocols``: any of :data:`SEARCHED` (ringmaster with its thresholds ``R``, mindflayer with its cutoffs,
    screened by theory: :mod:`.protocols`). ``batch_laws``: one law of ``b`` per worker
    (:class:`~stalegrad.batch_law.BatchLaw`, a system file's ``compute_batch``): a candidate with minibatch ``b``
    then takes each worker's law at ``b`` instead of ``b`` times a draw."""
    if not (isinstance(target, (int, float)) and math.isfinite(target) and target > 0):
        raise invalid("target", target, "a finite error > 0")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 2:
        raise invalid("seeds", seeds, "an integer >= 2 (the interval needs replications)")
    validation = 6 * seeds if validation is None else validation
    if isinstance(validation, bool) or not isinstance(validation, int) or validation < 2:
        raise invalid("validation", validation, "an integer >= 2 (the paired comparison needs replications)")
    if isinstance(finalists, bool) or not isinstance(finalists, int) or finalists < 1:
        raise invalid("finalists", finalists, "an integer >= 1")
    if batch_laws is not None and len(batch_laws) != cluster.n:
        raise invalid("batch_laws", f"{len(batch_laws)} laws", f"one law of b per worker, n = {cluster.n}")
    for policy in policies:
        if policy not in POLICIES:
            raise invalid("policy", policy, f"one of {', '.join(POLICIES)}")
    for protocol in protocols:
        if protocol not in SEARCHED:
            raise invalid("protocol", protocol, f"one of {', '.join(SEARCHED)}")
    root = resolve_seed(seed)
    say = progress or (lambda _text: None)
    n = cluster.n
    cap = n if budget_workers is None else min(n, budget_workers)
    # the workers' mean compute times at the first minibatch size (with laws of b: at that b, as the candidates)
    means = [law.mean(bs[0]) for law in batch_laws] if batch_laws is not None else list(cluster.means)
    choice = theory_workers(means, noise_ratio) if noise_ratio is not None else None
    order = tuple(int(i) for i in np.argsort(np.asarray(means), kind="stable"))
    sizes = sorted(set(workers) if workers else {*(2**k for k in range(n.bit_length()) if 2**k <= n), n})
    if choice is not None and not workers:
        sizes = sorted({*sizes, choice.m})
    sizes = [m for m in sizes if 1 <= m <= cap] or [cap]
    grid = tuple(steps) if steps else step_grid(problem, 10)

    anchors = [Candidate(tuple(range(n)), 1, bs[0], s) for s in grid]
    anchors += [Candidate(order[:m], 1, bs[0], s) for m in sizes if m < n for s in grid]
    kw: dict[str, Any] = {"horizon": math.nan, "target": target, "root": root, "batch_laws": batch_laws}
    naive, fastest = _horizon(cluster, problem, anchors, target, root, max_updates, say, batch_laws)
    horizon = horizon_factor * (naive.time_to_target if math.isfinite(naive.time_to_target) else fastest)
    kw["horizon"] = horizon

    configs, pruned = _configurations(cluster, means, order, sizes, Ks, bs, protocols, noise_ratio, root, batch_laws)
    pool = [dataclasses.replace(c, step=s, policy=pol) for c in configs for s in grid for pol in policies]
    screened = len(pool) + pruned * len(grid) * len(policies)  # and the steps between, added after rung 0
    scored: dict[Candidate, Scored] = {}
    reps, start, rung = min(2, seeds), 0, 0
    replays = 0
    while True:
        say(f"rung {rung}: {len(pool)} candidates x {reps} replications")
        evaluate(cluster, problem, pool, replications=range(start, reps), scored=scored, **kw)
        replays += len(pool) * (reps - start)
        pool.sort(key=lambda c: scored[c].key)
        if rung == 0:  # the grid halves the step: try the steps between, around each surviving configuration's best
            finer = _between(pool[: max(3, math.ceil(len(pool) / eta))], set(pool))
            evaluate(cluster, problem, finer, replications=range(reps), scored=scored, **kw)
            replays += len(finer) * reps
            pool = sorted([*pool, *finer], key=lambda c: scored[c].key)
        if reps >= seeds:
            break
        keep = max(3, math.ceil(len(pool) / eta))
        pool = pool[:keep]
        start, reps, rung = reps, min(seeds, reps * eta), rung + 1
    halving = [scored[c] for c in pool]
    # validation: the finalists and the naive choice on fresh replications, compared pairwise
    plain = _naive_at_best_step(scored, naive.candidate)
    best = _distinct(pool, finalists)
    fresh = range(seeds, seeds + validation)
    say(f"validation: {len(best)} finalists and the naive choice x {validation} fresh replications")
    checked = evaluate(cluster, problem, list(dict.fromkeys([*best, plain])), replications=fresh, **kw)
    replays += len(checked) * validation
    ranking, paired = choose({c: s.times for c, s in checked.items()}, plain, horizon)
    rest = [s for s in halving if s.candidate not in checked]
    return SearchResult([checked[c] for c in ranking] + rest, checked[plain], horizon, choice, screened, replays,
                        root, batch_laws, paired, halving, fresh)  # fmt: skip


def _naive_at_best_step(scored: dict[Candidate, Scored], anchor: Candidate) -> Candidate:
    """The naive configuration at the step the halving ranked best for it (among its steps with the most
    replications), or at the anchors' step when the halving did not try it (``budget_workers`` below ``n``)."""
    mine = [s for c, s in scored.items() if c.config == anchor.config and c.policy == anchor.policy]
    if not mine:
        return anchor
    most = max(len(s.times) for s in mine)
    return min((s for s in mine if len(s.times) == most), key=lambda s: s.key).candidate


def _distinct(pool: list[Candidate], count: int) -> list[Candidate]:
    """The first ``count`` configurations of the ranked ``pool`` (with their policy), each at its best step: the
    steps of one configuration share its timelines, so they share their luck too."""
    out: dict[Any, Candidate] = {}
    for c in pool:
        out.setdefault((c.config, c.policy), c)
        if len(out) == count:
            break
    return list(out.values())


def _configurations(
    cluster: System,
    worker_means: Sequence[float],
    order: tuple[int, ...],
    sizes: Sequence[int],
    Ks: Sequence[int],
    bs: Sequence[int],
    protocols: Sequence[str],
    noise_ratio: float | None,
    root: int,
    batch_laws: Sequence[BatchLaw] | None,
) -> tuple[list[Candidate], int]:
    """The configurations to replay (without a step) and how many the theory set aside: ringmaster (``K = 1``)
    with the thresholds of :func:`.protocols.ringmaster_thresholds` on each subset; mindflayer with the cutoff
    quantile of the highest update rate per subset, ``S`` and ``b``; ``K`` above the workers used is left out for
    k-async and k-sync (``K`` distinct workers per update)."""
    out: list[Candidate] = []
    pruned = 0
    means = np.asarray(worker_means, dtype=float)
    for proto, m, b in itertools.product(protocols, sizes, bs):
        workers = order[:m]
        if proto == "ringmaster":
            used = [float(x) for x in means[list(workers)]]
            kept = ringmaster_thresholds(used, noise_ratio)
            pruned += len(ringmaster_thresholds(used, None)) - len(kept)
            out += [Candidate(workers, 1, b, 0.0, proto, delay_threshold=R) for R in kept]
            continue
        for K in Ks:
            if proto in ("k-async", "k-sync") and m < K:
                continue
            if proto == "mindflayer":
                trials = [Candidate(workers, K, b, 0.0, proto, cutoff_quantile=q) for q in CUTOFF_QUANTILES]
                out.append(max(trials, key=lambda c: (_rate(c, cluster, root, batch_laws), c.cutoff_quantile)))
                pruned += len(trials) - 1
            else:
                out.append(Candidate(workers, K, b, 0.0, proto))
    return out, pruned


def _rate(candidate: Candidate, cluster: System, root: int, batch_laws: Sequence[BatchLaw] | None) -> float:
    """The candidate's update rate: the exact one where theory has it, else measured on a simulation of 2000
    updates (replication 0's timeline seed)."""
    system = candidate.system(cluster, batch_laws)
    rate = predict(system).update_rate_exact
    if rate is not None and math.isfinite(rate):
        return float(rate)
    trace = simulate(system, 2000, seed=derive_seed(root, 0, 0))
    return trace.updates / float(trace.update_times[-1])


def _between(best: list[Candidate], seen: set[Candidate]) -> list[Candidate]:
    """For each configuration among ``best``, its best step times 2^(+-1/2) (those not tried yet)."""
    out: list[Candidate] = []
    done: set[Any] = set()
    for c in best:
        if c.config in done:
            continue
        done.add(c.config)
        for factor in (2**-0.5, 2**0.5):
            new = dataclasses.replace(c, step=c.step * factor)
            if new not in seen and new not in out:
                out.append(new)
    return out


def _horizon(
    cluster: System,
    problem: Any,
    anchors: list[Candidate],
    target: float,
    root: int,
    max_updates: int,
    say: Callable[[str], None],
    batch_laws: Sequence[BatchLaw] | None = None,
) -> tuple[Scored, float]:
    """The naive choice's score and the time the fastest anchor needs: the anchors (every worker at K = 1 first,
    then the subsets at K = 1, each with every step of the grid) are replayed once with a horizon that grows until
    one reaches the target."""
    naive = [c for c in anchors if c.workers == anchors[0].workers]
    rate = predict(naive[0].system(cluster, batch_laws)).update_rate_exact
    updates = 1000
    while True:
        horizon = updates / rate
        say(f"horizon {horizon:.4g}: {len(anchors)} anchors (K = 1, every step)")
        scored = evaluate(cluster, problem, anchors, replications=range(1), horizon=horizon, target=target, root=root,
                          batch_laws=batch_laws)  # fmt: skip
        best = min(scored.values(), key=lambda s: s.key)
        if math.isfinite(best.time_to_target):
            return min((scored[c] for c in naive), key=lambda s: s.key), best.time_to_target
        if updates >= max_updates:
            raise SpecError(
                f"target {target:g} is not reached at K = 1 by any worker subset with any step of the grid in "
                f"{updates} updates of every worker: give a larger --target, other --steps or a larger --max-updates"
            )
        updates = min(max_updates, updates * 4)
