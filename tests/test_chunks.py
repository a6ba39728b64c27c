"""k-batch-async without a staleness bound, in chunks (stalegrad.sim.chunks): the event loop's Summary, bit for bit,
with fixed, random and per-worker delays, ties, zero times, subsets, rows and windows that grow; the routing."""

from __future__ import annotations

import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, scaled, shifted_exponential
from stalegrad.sim import simulate_summary
from stalegrad.sim.chunks import ChunkRun, chunks_summary, runs_in_chunks
from stalegrad.sim.compiled import event_loop_summary
from stalegrad.spec import System
from streamed import same_as_the_references

models = st.sampled_from(
    [
        deterministic(1.0),
        shifted_exponential(1, 2 / 3),
        scipy.stats.expon(scale=1.3),
        Empirical([0.5, 1.0, 1.5]),
        Empirical([0.0, 1.0]),  # zero compute times
        scaled(scipy.stats.lognorm(s=1.0), 0.7),
    ]
)
# delays: fixed, random (continuous, with ties and zeros, heavy-tailed: rounds arrive far out of order)
delays = st.sampled_from(
    [
        0.0,
        0.5,
        2.0,
        scipy.stats.expon(scale=0.5),
        Empirical([0.0, 0.5, 1.0]),
        Empirical([0.0, 3.0]),
        scipy.stats.lognorm(s=1.5, scale=0.5),
    ]
)


@st.composite
def batch_async_systems(draw):
    n = draw(st.integers(1, 8))
    K = draw(st.integers(1, 2 * n))
    per_worker = draw(st.lists(models, min_size=1, max_size=n))
    subset = draw(st.one_of(st.none(), st.permutations(range(n)).map(lambda p: sorted(p[: max(1, len(p) - 2)]))))

    def direction():
        per = draw(st.booleans())
        return tuple(draw(delays) for _ in range(n)) if per and n > 1 else draw(delays)

    return System(
        n=n, K=K, compute=[per_worker[i % len(per_worker)] for i in range(n)], uplink=direction(),
        downlink=direction(), workers=subset,
    )  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=batch_async_systems(), updates=st.integers(1, 80), seed=st.integers(0, 2**32), data=st.data())
def test_the_chunked_loop_gives_the_event_loops_summary(system, updates, seed, data):
    assert runs_in_chunks(system)
    got = same_as_the_references(chunks_summary, system, updates, seed, data)
    assert got is not None and got.wasted_compute == 0.0


def growth(system, updates, seed):
    """The chunked run's Summary and the statuses its kernel returned (what had to grow)."""
    run = ChunkRun(system, updates, seed, updates // 10, 16, 40)
    statuses: list[int] = []
    call = run.call
    run.call = lambda: statuses.append(call()) or statuses[-1]  # type: ignore[method-assign]
    run.run(None)
    return run.summary(updates // 10), set(statuses)


def test_rows_grow_when_rounds_arrive_far_out_of_order(paper_model):
    # a worker 500x faster than its uplink delays (lognormal): some 1600 of its rounds in flight at a time, more
    # than its row first holds
    compute = [scaled(paper_model, 0.002)] + [paper_model] * 3
    system = System(n=4, K=3, compute=compute, uplink=scipy.stats.lognorm(s=1.0, scale=5.0), downlink=0.25)
    got, statuses = growth(system, 20_000, 3)
    from stalegrad.sim._chunks_kernel import GROW_ROW

    assert GROW_ROW in statuses
    assert got.same_numbers(event_loop_summary(system, 20_000, seed=3, warmup=2000, batches=16, transient=40))


def test_update_times_are_dropped_and_grown_and_the_histogram_grows(paper_model):
    # one worker 300x slower: its rounds use versions hundreds of updates old, so the window of update times must
    # keep them (it grows) while the others' are dropped; its staleness outgrows the first histogram
    compute = [scaled(paper_model, 300.0)] + [paper_model] * 7
    system = System(n=8, K=1, compute=compute, uplink=scipy.stats.expon(scale=0.5),
                    downlink=scipy.stats.expon(scale=0.5))  # fmt: skip
    got, statuses = growth(system, 30_000, 11)
    from stalegrad.sim._chunks_kernel import GROW_HIST, GROW_T

    assert {GROW_T, GROW_HIST} <= statuses
    assert got.max_staleness > 1000
    assert got.same_numbers(event_loop_summary(system, 30_000, seed=11, warmup=3000, batches=16, transient=40))


def test_a_long_paper_run_with_random_delays(paper_model):
    system = System(n=16, K=10, tc=1, compute=paper_model).replace(
        uplink=scipy.stats.expon(scale=0.5), downlink=scipy.stats.expon(scale=0.5)
    )
    got = chunks_summary(system, 30_000, seed=2, warmup=3000, batches=32, transient=50)
    assert got.same_numbers(event_loop_summary(system, 30_000, seed=2, warmup=3000, batches=32, transient=50))


def test_routing_and_progress(paper_model):
    system = System(n=4, K=2, tc=1, compute=paper_model, uplink=scipy.stats.expon(scale=0.5))
    assert runs_in_chunks(system)
    assert not runs_in_chunks(system.replace(staleness_bound=2))
    for protocol in ("k-async", "k-sync", "k-batch-sync", "sync", "rennala"):
        assert not runs_in_chunks(system.replace(protocol=protocol, K=4 if protocol == "sync" else 2))
    assert not runs_in_chunks(system.replace(protocol="mindflayer", cutoffs=3.0))
    assert not runs_in_chunks(system.replace(protocol="ringmaster", K=1, delay_threshold=2))
    calls: list[tuple[int, int]] = []
    streamed = simulate_summary(system, 50_000, seed=4, warmup=100, batches=4, transient=5,
                                progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert streamed.same_numbers(event_loop_summary(system, 50_000, seed=4, warmup=100, batches=4, transient=5))
    assert len(calls) > 1 and calls[-1] == (100_000, 100_000)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_many_workers_take_the_generic_tree(paper_model):
    # 300 workers: a loser tree of 512 leaves (the merge's generic loop, not an unrolled one)
    system = System(n=300, K=7, compute=paper_model, uplink=scipy.stats.expon(scale=0.5),
                    downlink=scipy.stats.expon(scale=0.5))  # fmt: skip
    got = chunks_summary(system, 3000, seed=8, warmup=300, batches=8, transient=10)
    assert got.same_numbers(event_loop_summary(system, 3000, seed=8, warmup=300, batches=8, transient=10))
