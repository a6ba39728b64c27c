"""The synchronous family with fixed delays, epoch by epoch (stalegrad.sim.epochs): the event loops' Summary, bit for
bit, for every protocol it takes (ties, zero compute times, cutoffs, worker subsets, refills mid-epoch)."""

from __future__ import annotations

import pytest
import scipy.stats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, scaled, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.sim import simulate_summary
from stalegrad.sim.compiled import event_loop_summary, simulate_compiled_summary
from stalegrad.sim.epochs import epochs_summary, runs_in_epochs
from stalegrad.sim.events import simulate_events
from stalegrad.spec import PROTOCOLS, System
from stalegrad.trace import Summary

EPOCH_PROTOCOLS = ["k-sync", "sync", "k-batch-sync", "rennala", "mindflayer"]

models = st.sampled_from(
    [
        deterministic(1.0),
        deterministic(0.5),
        shifted_exponential(1, 2 / 3),
        scipy.stats.expon(scale=1.3),
        scipy.stats.uniform(loc=0.5, scale=1.0),
        Empirical([0.5, 1.0, 1.5]),
        Empirical([0.0, 1.0]),  # zero compute times: rounds that end as they start
        scaled(scipy.stats.lognorm(s=1.0), 0.7),
    ]
)
fixed = st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0])


@st.composite
def epoch_systems(draw):
    protocol = draw(st.sampled_from(EPOCH_PROTOCOLS))
    n = draw(st.integers(1, 8))
    K = n if protocol == "sync" else draw(st.integers(1, n if protocol == "k-sync" else 12))
    per_worker = draw(st.lists(models, min_size=1, max_size=n))
    low = K if protocol in ("k-sync", "sync") else 1
    count = K if protocol == "sync" else draw(st.integers(low, n))
    subset = draw(st.one_of(st.none(), st.permutations(range(n)).map(lambda p: sorted(p[:count]))))
    extra = {}
    if protocol == "mindflayer":
        extra["cutoffs"] = draw(st.lists(st.sampled_from([0.6, 1.0, 1.6, 3.0]), min_size=n, max_size=n))
    try:
        return System(
            n=n, K=K, compute=[per_worker[i % len(per_worker)] for i in range(n)], uplink=draw(fixed),
            downlink=draw(fixed), protocol=protocol, workers=subset, **extra,
        )  # fmt: skip
    except SpecError:  # mindflayer cutoffs that no active worker can meet
        assume(False)


def agree(system, updates, seed, warmup, batches, transient):
    epochs = epochs_summary(system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient)
    events = event_loop_summary(system, updates, seed=seed, warmup=warmup, batches=batches, transient=transient)
    assert epochs.same_numbers(events)
    assert epochs.wasted_compute == events.wasted_compute
    return epochs


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=epoch_systems(), updates=st.integers(1, 80), seed=st.integers(0, 2**32), data=st.data())
def test_the_epochs_give_the_event_loops_summary(system, updates, seed, data):
    assert runs_in_epochs(system)
    warmup = data.draw(st.integers(0, updates - 1))
    batches = data.draw(st.integers(1, max(1, updates - warmup)))
    transient = data.draw(st.integers(0, updates))
    epochs = agree(system, updates, seed, warmup, batches, transient)
    expected = Summary.from_trace(simulate_events(system, updates, seed=seed), warmup, batches, transient)
    assert epochs.same_numbers(expected)
    assert epochs.wasted_compute == expected.wasted_compute


@pytest.mark.parametrize("protocol", EPOCH_PROTOCOLS)
def test_long_runs_refill_mid_epoch_and_grow(protocol, paper_model):
    # a fast worker beside slow ones, a long downlink: many rounds after each update (late arrivals grow their
    # buffer), and epochs that run out of compute times in the middle (refills keep the rest)
    n = 5
    K = n if protocol == "sync" else 3
    compute = [scaled(paper_model, 0.01)] + [paper_model] * (n - 1)
    extra = {"cutoffs": [0.02] + [3.0] * (n - 1)} if protocol == "mindflayer" else {}
    system = System(n=n, K=K, compute=compute, uplink=0.25, downlink=2.0, protocol=protocol, **extra)
    agree(system, 4000, 7, 400, 16, 30)


def test_which_systems_run_in_epochs(paper_model):
    for protocol in PROTOCOLS:
        extra = {"K": 1, "delay_threshold": 2} if protocol == "ringmaster" else {"K": 2}
        if protocol == "sync":
            extra["K"] = 4
        if protocol == "mindflayer":
            extra["cutoffs"] = 2.0
        system = System(n=4, tc=1, compute=paper_model, protocol=protocol, **extra)
        assert runs_in_epochs(system) == (protocol in EPOCH_PROTOCOLS), protocol
        if protocol in EPOCH_PROTOCOLS:  # random or per-worker delays go event by event
            assert not runs_in_epochs(system.replace(uplink=scipy.stats.expon(scale=0.5)))
            assert not runs_in_epochs(system.replace(downlink=[0.1, 0.1, 0.2, 0.2]))


def test_simulate_summary_uses_the_epochs_with_progress(paper_model):
    system = System(n=6, K=3, tc=1.0, compute=paper_model, protocol="k-batch-sync")
    seen = []
    streamed = simulate_summary(system, 100_000, seed=2, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 2 and seen[-1] == (300_000, 300_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    direct = simulate_compiled_summary(system, 100_000, seed=2, warmup=streamed.warmup, batches=len(
        streamed.batch_sum), transient=len(streamed.transient_sum))  # fmt: skip
    assert streamed.same_numbers(direct)
    assert streamed.same_numbers(event_loop_summary(system, 100_000, seed=2, warmup=streamed.warmup,
                                                    batches=len(streamed.batch_sum),
                                                    transient=len(streamed.transient_sum)))  # fmt: skip


def test_a_worker_that_never_meets_its_cutoff(paper_model):
    # worker 0 computes 1 s a round against a cutoff of 0.6 s: it abandons every round, forever (events of their own
    # after every 16 abandons); worker 1 abandons often (its cutoff below its mean)
    system = System(n=4, K=2, tc=0.5, compute=[deterministic(1.0), paper_model, paper_model, paper_model],
                    protocol="mindflayer", cutoffs=[0.6, 2.0, 4.0, 4.0])  # fmt: skip
    got = epochs_summary(system, 3000, seed=3, warmup=300, batches=8, transient=10)
    expected = event_loop_summary(system, 3000, seed=3, warmup=300, batches=8, transient=10)
    assert got.same_numbers(expected) and got.wasted_compute == expected.wasted_compute
    assert got.worker_count[0] == 0 and got.wasted_compute > 0.25
