"""The compiled event engine: the reference's Trace row for row (every protocol, random laws and delays, ties,
staleness bounds, cancellation), its meta counts, the streamed Summary, bounded memory and the engine choice."""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from stalegrad.distributions import Empirical, deterministic, scaled, shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.sim import simulate, simulate_summary
from stalegrad.sim.compiled import simulate_compiled, simulate_compiled_summary
from stalegrad.sim.events import simulate_events
from stalegrad.sim.feeds import DELAY_BLOCK, DelayStream, draws_in_sequence
from stalegrad.spec import PROTOCOLS, System
from stalegrad.streams import Draws
from stalegrad.trace import COLUMNS, Summary

#: compute-time laws, with ties (deterministic, empirical) and zero times (empirical with 0: a round that ends as
#: it starts)
models = st.sampled_from(
    [
        deterministic(1.0),
        deterministic(0.5),
        shifted_exponential(1, 2 / 3),
        scipy.stats.expon(scale=1.3),
        scipy.stats.gamma(a=2, scale=0.5),
        scipy.stats.uniform(loc=0.5, scale=1.0),
        Empirical([0.5, 1.0, 1.5]),
        Empirical([0.0, 1.0]),
        scaled(scipy.stats.lognorm(s=1.0), 0.7),
    ]
)
#: delays: fixed (with 0 and ties), and random laws (one draws in sequence, two do not)
delays = st.sampled_from(
    [
        0.0,
        0.25,
        0.5,
        1.0,
        2.0,
        scipy.stats.expon(scale=0.5),
        scipy.stats.uniform(loc=0.0, scale=1.0),
        Empirical([0.0, 0.5, 0.5, 2.0]),
        scipy.stats.truncnorm(a=0, b=3, loc=0, scale=0.5),
        scipy.stats.weibull_min(c=1.5, scale=0.4),
    ]
)


def worker_delays(n):
    """A delay per worker (fixed and random mixed), or one for all of them."""
    return st.one_of(st.lists(delays, min_size=n, max_size=n), delays)


@st.composite
def systems(draw, max_n=8, per_worker_delays=False):
    protocol = draw(st.sampled_from(list(PROTOCOLS)))
    n = draw(st.integers(1, max_n))
    if protocol == "sync":
        K = n
    elif protocol in ("k-async", "k-sync"):
        K = draw(st.integers(1, n))
    else:
        K = draw(st.integers(1, 12))
    bound = draw(st.one_of(st.none(), st.integers(0, 4))) if protocol in ("k-batch-async", "k-async") else None
    per_worker = draw(st.lists(models, min_size=1, max_size=n))
    compute = [per_worker[i % len(per_worker)] for i in range(n)]
    # a subset of the workers (at least K for the protocols that need K distinct ones, exactly K for sync)
    low = K if protocol in ("k-async", "k-sync", "sync") else 1
    count = K if protocol == "sync" else draw(st.integers(low, n))
    subset = draw(st.one_of(st.none(), st.permutations(range(n)).map(lambda p: sorted(p[:count]))))
    extra = {}
    if protocol == "ringmaster":
        K = 1
        extra["delay_threshold"] = draw(st.integers(1, 4))
    if protocol == "mindflayer":
        extra["cutoffs"] = draw(st.lists(st.sampled_from([0.6, 1.0, 1.6, 3.0]), min_size=n, max_size=n))
    try:
        return System(
            n=n,
            K=K,
            compute=compute,
            uplink=draw(worker_delays(n) if per_worker_delays else delays),
            downlink=draw(worker_delays(n) if per_worker_delays else delays),
            protocol=protocol,
            staleness_bound=bound,
            workers=subset,
            **extra,
        )
    except SpecError:  # mindflayer cutoffs that no active worker can meet
        assume(False)


def protocol_options(protocol, K):
    """What ``protocol`` needs beside K: ringmaster's R (and K = 1), mindflayer's cutoffs."""
    if protocol == "ringmaster":
        return {"K": 1, "delay_threshold": 2}
    if protocol == "mindflayer":
        return {"K": K, "cutoffs": 2.0}
    return {"K": K}


def same_meta(a, b):
    keys = ("events", "compute_time", "cancelled_time", "dropped_time", "wasted_compute")
    return {k: a.meta[k] for k in keys} == {k: b.meta[k] for k in keys}


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=systems(), updates=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_the_compiled_engine_gives_the_references_trace(system, updates, seed):
    reference = simulate_events(system, updates, seed=seed)
    compiled = simulate_compiled(system, updates, seed=seed)
    assert compiled.equals(reference)
    assert all(compiled[c].dtype == dtype for c, dtype in COLUMNS.items())
    assert same_meta(compiled, reference), (compiled.meta, reference.meta)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=systems(per_worker_delays=True), updates=st.integers(1, 60), seed=st.integers(0, 2**32))
def test_the_compiled_engine_gives_the_references_trace_with_per_worker_delays(system, updates, seed):
    reference = simulate_events(system, updates, seed=seed)
    compiled = simulate_compiled(system, updates, seed=seed)
    assert compiled.equals(reference)
    assert same_meta(compiled, reference), (compiled.meta, reference.meta)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=systems(per_worker_delays=True), updates=st.integers(2, 60), seed=st.integers(0, 2**32), data=st.data())
def test_the_streamed_summary_is_the_summary_of_the_trace(system, updates, seed, data):
    warmup = data.draw(st.integers(0, updates - 1))
    batches = data.draw(st.integers(2, max(2, updates - warmup)))
    transient = data.draw(st.integers(0, updates + 3))
    trace = simulate_events(system, updates, seed=seed)
    streamed = simulate_compiled_summary(
        system, updates, seed=seed, warmup=warmup, batches=batches, transient=min(transient, updates)
    )
    expected = Summary.from_trace(trace, warmup, batches, min(transient, updates))
    assert streamed.same_numbers(expected)
    assert streamed.wasted_compute == expected.wasted_compute


@pytest.mark.parametrize("protocol", list(PROTOCOLS))
@pytest.mark.parametrize("delay", ["fixed", "random"])
def test_longer_runs_agree_with_the_reference(protocol, delay, paper_model):
    # long enough for every buffer to be refilled and grown several times
    K = 6 if protocol == "sync" else 3
    d = 0.5 if delay == "fixed" else scipy.stats.expon(scale=0.5)
    bound = 2 if protocol in ("k-batch-async", "k-async") else None
    system = System(
        n=6, compute=paper_model, uplink=d, downlink=d, protocol=protocol, staleness_bound=bound,
        **protocol_options(protocol, K),
    )  # fmt: skip
    reference = simulate_events(system, 3000, seed=11)
    compiled = simulate_compiled(system, 3000, seed=11)
    assert compiled.equals(reference) and same_meta(compiled, reference)


def test_a_slow_worker_with_many_versions_and_gradients_in_flight(paper_model):
    # one worker 50 times slower; delays far above the compute times: deep per-worker queues, grown several times
    compute = [paper_model] * 5 + [scaled(paper_model, 50.0)]
    for protocol in PROTOCOLS:
        K = 6 if protocol == "sync" else 2
        system = System(
            n=6, compute=compute, uplink=scipy.stats.expon(scale=20.0), downlink=20.0, protocol=protocol,
            **protocol_options(protocol, K),
        )  # fmt: skip
        reference = simulate_events(system, 800, seed=2)
        compiled = simulate_compiled(system, 800, seed=2)
        assert compiled.equals(reference) and same_meta(compiled, reference), protocol


def test_simultaneous_updates_and_zero_compute_times():
    # equal compute times: every gradient arrives together, several updates at one instant; zero compute times:
    # a round that finishes as the version reaches the worker
    for compute in (deterministic(1.0), Empirical([0.0, 0.0, 1.0])):
        for protocol in PROTOCOLS:
            K = 4 if protocol == "sync" else 1
            for down in (0.0, 0.5):
                opts = protocol_options(protocol, K)
                system = System(n=4, compute=compute, uplink=0.0, downlink=down, protocol=protocol, **opts)
                reference = simulate_events(system, 300, seed=5)
                compiled = simulate_compiled(system, 300, seed=5)
                assert compiled.equals(reference) and same_meta(compiled, reference), (compute, protocol, down)


@pytest.mark.parametrize(
    "model",
    [
        scipy.stats.expon(scale=2),
        scipy.stats.gamma(a=0.5),
        scipy.stats.lognorm(s=1.5),
        scipy.stats.norm(loc=5),
        scipy.stats.halfnorm(),
        scipy.stats.uniform(),
        scipy.stats.weibull_min(c=2),
        scipy.stats.pareto(b=3),
        scipy.stats.lomax(c=2),
        Empirical([1.0, 2.0, 7.0]),
        scaled(scipy.stats.expon(), 3.0),
    ],
)
def test_models_said_to_draw_in_sequence_do(model):
    assert draws_in_sequence(model)
    for seed in range(3):
        stream = DelayStream(model, np.random.SeedSequence(seed), "uplink", max_blocks=8)
        chunks = np.concatenate([stream.draw() for _ in range(4)])  # 1 + 2 + 4 + 8 blocks, in 4 calls
        draws = Draws(model, np.random.SeedSequence(seed), "uplink")
        assert chunks.size == 15 * DELAY_BLOCK
        assert chunks.tolist() == [draws.next() for _ in range(chunks.size)]


def test_a_bad_delay_is_reported_when_the_run_reaches_it_and_not_before():
    class Sometimes:
        """Delays of 0.1, except one negative draw at position ``bad`` of the stream."""

        def __init__(self, bad):
            self.bad, self.drawn = bad, 0

        def rvs(self, size, random_state):
            x = np.full(size, 0.1)
            if self.drawn <= self.bad < self.drawn + size:
                x[self.bad - self.drawn] = -1.0
            self.drawn += size
            return x

        def mean(self):
            return 0.1

        def cdf(self, x):
            return np.asarray(x) >= 0.1

        def support(self):
            return (0.0, np.inf)

    for bad, updates in ((700, 200), (100, 200)):
        system = System(n=1, K=1, compute=deterministic(1.0), uplink=Sometimes(bad), downlink=0.5)
        outcomes = []
        for run in (simulate_events, simulate_compiled):
            system = System(n=1, K=1, compute=deterministic(1.0), uplink=Sometimes(bad), downlink=0.5)
            try:
                outcomes.append(len(run(system, updates, seed=0)))
            except SpecError as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1]
        assert isinstance(outcomes[0], int if bad == 700 else str), outcomes


def test_auto_picks_the_fast_path_or_the_compiled_engine(paper_model):
    papers = System(n=4, K=2, tc=1, compute=paper_model)
    assert simulate(papers, 20, seed=0).meta["engine"] == "fast"
    for system in (
        papers.replace(protocol="k-sync"),
        papers.replace(uplink=scipy.stats.expon(scale=0.5)),
        papers.replace(staleness_bound=1),
    ):
        trace = simulate(system, 20, seed=0)
        assert trace.meta["engine"] == "compiled"
        assert trace.equals(simulate(system, 20, seed=0, engine="events"))
    assert "compile_seconds" in trace.meta and trace.meta["seconds"] >= 0


def test_simulate_summary_streams_every_protocol(paper_model):
    for protocol in PROTOCOLS:
        K = 4 if protocol == "sync" else 2
        system = System(n=4, tc=1, compute=paper_model, protocol=protocol, **protocol_options(protocol, K))
        streamed = simulate_summary(system, 500, seed=3, warmup=50, batches=10, transient=20)
        trace = simulate(system, 500, seed=3, engine="events")
        assert streamed.same_numbers(Summary.from_trace(trace, 50, 10, 20)), protocol


def test_progress_is_reported_up_to_the_total(paper_model):
    seen = []
    system = System(n=6, K=3, tc=1.0, compute=paper_model, protocol="k-sync")
    simulate_compiled(system, 200_000, seed=1, progress=lambda done, total: seen.append((done, total)))
    assert len(seen) > 2 and seen[-1] == (600_000, 600_000)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@pytest.mark.parametrize("protocol", ["k-batch-async", "k-sync", "ringmaster", "mindflayer"])
def test_long_streamed_runs_need_no_more_memory(protocol, paper_model):
    system = System(
        n=6, compute=paper_model, uplink=scipy.stats.expon(scale=0.5), downlink=0.5, protocol=protocol,
        **protocol_options(protocol, 3),
    )  # fmt: skip

    def peak(updates):
        tracemalloc.start()
        simulate_summary(system, updates, seed=1)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    simulate_summary(system, 1000, seed=0)  # compile outside the measurement
    small, large = peak(600_000 // system.K), peak(2_400_000 // system.K)  # gradients: the same for every K
    assert large < 1.25 * small, (small, large)


def test_bench_quick_runs_and_prints_every_protocol(tmp_path):
    out = tmp_path / "engines.json"
    bench = Path(__file__).resolve().parents[1] / "bench" / "bench_engines.py"
    proc = subprocess.run(
        [sys.executable, str(bench), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert data["quick"] is True and len(data["protocols"]) == 10
    for name, row in data["protocols"].items():
        assert row["gradients_per_second_streamed"] > 0 and row["speedup_vs_reference"] > 0, name
        assert f"{name} " in proc.stdout and ("PASS" in proc.stdout or "MISS" in proc.stdout)
    assert all(m["ratio"] > 0 for m in data["memory"].values())
