"""The fast simulator: the protocol's rules, the compiled kernel against numpy and a plain-Python referee,
streamed summaries against traces, reproducibility and bounded memory."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.sim import simulate, simulate_summary
from stalegrad.sim.blocks import ComputeStreams
from stalegrad.spec import System
from stalegrad.trace import Summary


def referee(system: System, updates: int, seed: int) -> dict[str, list]:
    """The protocol of DESIGN.md written as plainly as possible (same draws as the engines)."""
    K, up, down = system.K, float(system.uplink), float(system.downlink)
    total = updates * K
    streams = ComputeStreams(system, seed, total)
    rows = []  # (arrive, worker, round, start, sent)
    for i in range(system.n):
        x, t, r = list(streams.draw(i)), 0.0, 0
        # enough rounds: keep drawing until this worker alone could supply every gradient needed
        while len(x) < total + 1:
            x += list(streams.draw(i))
        for r in range(total):
            sent = t + x[r]
            rows.append((sent + up, i, r + 1, t, sent))
            t = sent
    rows.sort()  # by arrival time, then worker, then round
    rows = rows[:total]
    update_times = [rows[u * K - 1][0] for u in range(1, updates + 1)]
    out: dict[str, list] = {k: [] for k in ("worker", "round", "start", "arrive", "version", "update", "staleness")}
    for p, (arrive, i, r, start, _) in enumerate(rows):
        version = sum(1 for t in update_times if t + down < start)  # versions that reached it strictly before start
        update = p // K + 1
        for k, v in zip(out, (i, r, start, arrive, version, update, update - 1 - version), strict=True):
            out[k].append(v)
    return out


models = st.sampled_from(
    [
        deterministic(1.0),
        deterministic(0.5),
        shifted_exponential(1, 2 / 3),
        scipy.stats.expon(scale=1.3),
        scipy.stats.gamma(a=2, scale=0.5),
        Empirical([0.5, 1.0, 1.5]),
    ]
)
delays = st.sampled_from([0.0, 0.1, 0.25, 0.3, 1 / 3, 0.5, 1.0, 2.0])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 9),
    K=st.integers(1, 12),
    up=delays,
    down=delays,
    per_worker=st.lists(models, min_size=1, max_size=9),
    updates=st.integers(1, 40),
    seed=st.integers(0, 2**32),
)
def test_kernel_numpy_and_referee_agree_row_for_row(n, K, up, down, per_worker, updates, seed):
    compute = [per_worker[i % len(per_worker)] for i in range(n)]
    system = System(n=n, K=K, uplink=up, downlink=down, compute=compute)
    fast = simulate(system, updates, seed=seed)
    slow = simulate(system, updates, seed=seed, engine="numpy")
    assert fast.equals(slow)
    ref = referee(system, updates, seed) if updates * K <= 120 else None
    if ref is not None:
        for k, v in ref.items():
            assert fast[k].tolist() == v, k


def test_papers_example_first_updates_have_staleness_0_then_1():
    # n = 10, K = 5, equal compute times: all first gradients arrive together, taken in worker order
    system = System(n=10, K=5, tc=0, compute=deterministic(1.0))
    trace = simulate(system, 3, seed=0)
    assert trace["staleness"][:10].tolist() == [0] * 5 + [1] * 5
    assert trace["worker"][:10].tolist() == list(range(10))


def test_tc_zero_convention_the_triggered_update_is_not_visible_to_the_next_round():
    # one worker, K = 1: update u happens when gradient u arrives, at the same instant round u+1 starts
    trace = simulate(System(n=1, K=1, tc=0, compute=deterministic(1.0)), 5, seed=0)
    assert trace["version"].tolist() == [0, 0, 1, 2, 3]
    assert trace["staleness"].tolist() == [0, 1, 1, 1, 1]


def test_trace_invariants(fig1_system):
    trace = simulate(fig1_system, 3000, seed=5)
    K = fig1_system.K
    assert len(trace) == 3000 * K
    assert np.all(np.diff(trace["arrive"]) >= 0)
    same = np.diff(trace["arrive"]) == 0
    assert np.all(np.diff(trace["worker"])[same] > 0)  # simultaneous arrivals in worker order
    assert np.all(trace["staleness"] >= 0)
    assert np.array_equal(np.bincount(trace["update"])[1:], np.full(3000, K))
    assert np.array_equal(trace.update_times, trace["arrive"][K - 1 :: K])
    assert np.allclose(trace["arrive"] - trace["sent"], fig1_system.uplink)
    for w in range(fig1_system.n):
        rounds = np.sort(trace["round"][trace["worker"] == w])
        assert np.array_equal(rounds, np.arange(1, rounds.size + 1))


def test_same_seed_same_numbers_and_different_seed_different_numbers(fig1_system):
    a = simulate(fig1_system, 500, seed=42)
    assert a.equals(simulate(fig1_system, 500, seed=42))
    assert not a.equals(simulate(fig1_system, 500, seed=43))
    assert a.seed == 42


def test_a_shorter_run_is_a_prefix_of_a_longer_one(fig1_system):
    short = simulate(fig1_system, 1000, seed=7)
    long = simulate(fig1_system, 5000, seed=7)
    assert short.equals(long.head(1000))


@pytest.mark.parametrize(
    ("n", "K", "updates", "warmup", "batches", "transient"),
    [
        (16, 10, 5000, 500, 32, 50),
        (3, 7, 4000, 0, 2, 4000),
        (2, 50, 30_000, 3000, 32, 10),  # the update-time buffer is compacted several times
        (100, 1, 3000, 300, 16, 0),  # staleness above 64: the histogram grows
        (1, 64, 20_000, 19_998, 2, 0),
    ],
)
def test_streamed_summary_equals_the_summary_of_the_trace(n, K, updates, warmup, batches, transient, paper_model):
    system = System(n=n, K=K, tc=1, compute=paper_model)
    trace = simulate(system, updates, seed=3)
    streamed = simulate_summary(system, updates, seed=3, warmup=warmup, batches=batches, transient=transient)
    assert streamed.same_numbers(Summary.from_trace(trace, warmup, batches, transient))
    assert streamed.gradients == updates * K


def test_long_runs_need_no_more_memory(fig1_system):
    def peak(updates):
        simulate_summary(fig1_system, 1000, seed=0)  # compile outside the measurement
        tracemalloc.start()
        simulate_summary(fig1_system, updates, seed=1)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    small, large = peak(500_000), peak(2_000_000)
    assert large < 1.25 * small, (small, large)


def test_progress_is_reported_up_to_the_total(fig1_system):
    seen = []
    simulate_summary(fig1_system, 200_000, seed=1, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (2_000_000, 2_000_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"updates": 0}, "updates must be an integer >= 1, got 0"),
        ({"warmup": 100}, "warmup must be an integer from 0 to updates-1 = 99"),
        ({"batches": 1}, "batches must be an integer from 2"),
        ({"seed": -1}, "seed must be an integer >= 0"),
    ],
)
def test_bad_run_arguments(kwargs, match, fig1_system):
    args = {"updates": 100} | kwargs
    updates = args.pop("updates")
    with pytest.raises(SpecError, match=match):
        simulate_summary(fig1_system, updates, **args)


def test_what_the_fast_path_cannot_run_goes_to_the_event_engine(paper_model):
    system = System(n=2, K=1, compute=paper_model, uplink=scipy.stats.expon(scale=0.5))
    with pytest.raises(SpecError, match="uplink and downlink must be fixed times for the fast simulator"):
        simulate(system, 10, seed=0, engine="numba")
    assert simulate(system, 10, seed=0).meta["engine"] == "compiled"  # the event engine, compiled
    bounded = System(n=2, K=1, compute=paper_model, staleness_bound=3)
    with pytest.raises(SpecError, match="staleness_bound must be None for the fast simulator"):
        simulate(bounded, 10, seed=0, engine="numpy")
    with pytest.raises(SpecError, match="engine must be one of auto, numba, numpy, compiled, events, got 'gpu'"):
        simulate(System(n=2, K=1, compute=paper_model), 10, seed=0, engine="gpu")
