"""k-async with fixed delays, arrival by arrival (stalegrad.sim.waiting): the event loop's Summary, bit for bit
(ties, zero compute times, staleness bounds, worker subsets, refills); the event loop where the order needs it."""

from __future__ import annotations

import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, scaled, shifted_exponential
from stalegrad.sim import simulate_summary
from stalegrad.sim.compiled import event_loop_summary
from stalegrad.sim.events import simulate_events
from stalegrad.sim.waiting import runs_waiting, waiting_summary
from stalegrad.spec import System
from stalegrad.trace import Summary
from streamed import same_as_the_references

models = st.sampled_from(
    [
        deterministic(1.0),
        deterministic(0.5),
        shifted_exponential(1, 2 / 3),
        scipy.stats.expon(scale=1.3),
        Empirical([0.5, 1.0, 1.5]),
        Empirical([0.0, 1.0]),  # zero compute times
        scaled(scipy.stats.lognorm(s=1.0), 0.7),
    ]
)
fixed = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])


@st.composite
def kasync_systems(draw):
    n = draw(st.integers(1, 8))
    K = draw(st.integers(1, n))
    per_worker = draw(st.lists(models, min_size=1, max_size=n))
    subset = draw(st.one_of(st.none(), st.permutations(range(n)).map(lambda p: sorted(p[: max(K, len(p) - 2)]))))
    return System(
        n=n, K=K, compute=[per_worker[i % len(per_worker)] for i in range(n)], uplink=draw(fixed),
        downlink=draw(fixed), protocol="k-async", staleness_bound=draw(st.one_of(st.none(), st.integers(0, 4))),
        workers=subset,
    )  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=kasync_systems(), updates=st.integers(1, 80), seed=st.integers(0, 2**32), data=st.data())
def test_the_waiting_loop_gives_the_event_loops_summary(system, updates, seed, data):
    assert runs_waiting(system)
    got = same_as_the_references(waiting_summary, system, updates, seed, data)
    if got is None:  # a round that starts and arrives at one instant: only with zero compute times and uplink
        assert system.uplink == 0.0 and any(isinstance(m, Empirical) for m in system.compute)


def test_long_runs_with_a_bound_refill_and_grow(paper_model):
    compute = [scaled(paper_model, 0.05)] + [paper_model] * 5  # a fast worker: high staleness, many drops
    for bound in (None, 3):
        system = System(n=6, K=2, compute=compute, uplink=0.25, downlink=0.5, protocol="k-async",
                        staleness_bound=bound)  # fmt: skip
        got = waiting_summary(system, 20_000, seed=5, warmup=2000, batches=16, transient=40)
        assert got is not None and got.same_numbers(
            event_loop_summary(system, 20_000, seed=5, warmup=2000, batches=16, transient=40)
        )
        assert (got.dropped > 0) == (bound is not None)


def test_the_other_protocols_do_not_wait_this_way(paper_model):
    system = System(n=4, K=2, tc=1, compute=paper_model, protocol="k-async")
    assert runs_waiting(system)
    assert not runs_waiting(system.replace(uplink=scipy.stats.expon(scale=0.5)))
    assert not runs_waiting(system.replace(protocol="k-batch-async"))
    assert not runs_waiting(System(n=4, K=1, tc=1, compute=paper_model, protocol="ringmaster", delay_threshold=2))


def test_simulate_summary_hands_a_zero_time_round_to_the_event_loop():
    system = System(n=3, K=2, compute=Empirical([0.0, 1.0]), uplink=0.0, downlink=0.0, protocol="k-async")
    assert waiting_summary(system, 200, seed=1, warmup=0, batches=1, transient=0) is None
    streamed = simulate_summary(system, 200, seed=1, warmup=20, batches=4, transient=5)
    assert streamed.same_numbers(Summary.from_trace(simulate_events(system, 200, seed=1), 20, 4, 5))
