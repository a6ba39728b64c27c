"""Ringmaster with fixed delays, with fewer events (stalegrad.sim.ring): the event loop's Summary, bit for bit (ties,
zero times, stops that restart an idle worker, subsets, queues that grow); the event loop where the order needs it."""

from __future__ import annotations

import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, scaled
from stalegrad.sim import simulate_summary
from stalegrad.sim.compiled import event_loop_summary
from stalegrad.sim.events import simulate_events
from stalegrad.sim.ring import RingRun, ring_summary, runs_ring
from stalegrad.spec import System
from stalegrad.trace import Summary
from streamed import same_as_the_references

models = st.sampled_from(
    [
        deterministic(1.0),
        deterministic(0.5),
        scipy.stats.expon(scale=1.3),
        Empirical([0.5, 1.0, 1.5]),
        Empirical([0.0, 1.0]),  # zero compute times
        scaled(scipy.stats.lognorm(s=1.0), 0.7),
    ]
)
fixed = st.sampled_from([0.0, 0.25, 0.5, 1.0, 3.0])


@st.composite
def ringmaster_systems(draw):
    n = draw(st.integers(1, 8))
    per_worker = draw(st.lists(models, min_size=1, max_size=n))
    subset = draw(st.one_of(st.none(), st.permutations(range(n)).map(lambda p: sorted(p[: max(1, len(p) - 2)]))))
    return System(
        n=n, K=1, compute=[per_worker[i % len(per_worker)] for i in range(n)], uplink=draw(fixed),
        downlink=draw(fixed), protocol="ringmaster", delay_threshold=draw(st.integers(1, 5)), workers=subset,
    )  # fmt: skip


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=ringmaster_systems(), updates=st.integers(1, 80), seed=st.integers(0, 2**32), data=st.data())
def test_the_ring_loop_gives_the_event_loops_summary(system, updates, seed, data):
    assert runs_ring(system)
    got = same_as_the_references(ring_summary, system, updates, seed, data)
    if got is None:  # a round that starts and arrives at one instant: only with zero compute times and uplink
        assert system.uplink == 0.0 and any(isinstance(m, Empirical) for m in system.compute)


def test_long_runs_stop_drop_and_grow_the_queues(paper_model, monkeypatch):
    # a worker 20x faster with a long uplink: several of its gradients in flight after stops; queues of 2 places
    # at first, so that they grow
    monkeypatch.setattr(RingRun, "QUEUE", 2)
    compute = [scaled(paper_model, 0.05)] + [paper_model] * 5
    system = System(n=6, K=1, compute=compute, uplink=3.0, downlink=0.5, protocol="ringmaster", delay_threshold=3)
    run = RingRun(system, 20_000, 5, 2000, 16, 40)
    statuses: list[int] = []
    call = run.call
    run.call = lambda: statuses.append(call()) or statuses[-1]  # type: ignore[method-assign]
    run.run(None)
    got = run.summary(2000)
    from stalegrad.sim._ring_kernel import GROW_QUEUE

    assert GROW_QUEUE in statuses
    expected = event_loop_summary(system, 20_000, seed=5, warmup=2000, batches=16, transient=40)
    assert got.same_numbers(expected) and got.wasted_compute == expected.wasted_compute
    assert got.dropped > 0 and got.wasted_compute > 0.1


def test_routing_and_the_zero_time_fallback(paper_model):
    system = System(n=4, K=1, tc=1, compute=paper_model, protocol="ringmaster", delay_threshold=2)
    assert runs_ring(system)
    assert not runs_ring(system.replace(uplink=scipy.stats.expon(scale=0.5)))
    assert not runs_ring(system.replace(protocol="k-async", delay_threshold=None))
    zero = System(n=3, K=1, compute=Empirical([0.0, 1.0]), uplink=0.0, downlink=0.0, protocol="ringmaster",
                  delay_threshold=1)  # fmt: skip
    assert ring_summary(zero, 200, seed=1, warmup=0, batches=1, transient=0) is None
    streamed = simulate_summary(zero, 200, seed=1, warmup=20, batches=4, transient=5)
    assert streamed.same_numbers(Summary.from_trace(simulate_events(zero, 200, seed=1), 20, 4, 5))
    calls: list[tuple[int, int]] = []
    streamed = simulate_summary(system, 200_000, seed=4, warmup=100, batches=4, transient=5,
                                progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    expected = event_loop_summary(system, 200_000, seed=4, warmup=100, batches=4, transient=5)
    assert streamed.same_numbers(expected) and streamed.wasted_compute == expected.wasted_compute
    assert len(calls) > 1 and calls[-1] == (200_000, 200_000)


def test_many_workers(paper_model):
    system = System(n=300, K=1, tc=1, compute=paper_model, protocol="ringmaster", delay_threshold=40)
    got = ring_summary(system, 20_000, seed=8, warmup=2000, batches=8, transient=10)
    expected = event_loop_summary(system, 20_000, seed=8, warmup=2000, batches=8, transient=10)
    assert got is not None and got.same_numbers(expected) and got.wasted_compute == expected.wasted_compute
