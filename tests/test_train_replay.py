"""SGD replayed along a Trace: equal to gradient descent and to synchronous SGD where it must be, each gradient
at the version the trace says, both engines the same, bounded memory, Figure 3's ordering."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from stalegrad.errors import SpecError
from stalegrad.sim import simulate
from stalegrad.spec import System
from stalegrad.trace import COLUMNS, Trace
from stalegrad.train import (
    FunctionProblem,
    LinearRegression,
    LogisticRegression,
    chain,
    delay_compensation,
    replay,
)

ENGINES = ["numba", "python"]


@pytest.fixture(scope="module")
def linreg():
    return LinearRegression(dim=6, samples=300, noise=0.3, seed=2)


@pytest.fixture(scope="module")
def logreg():
    return LogisticRegression()


@pytest.fixture(scope="module")
def stale_trace():
    """n = 7, K = 3, Tc = 1, exponential compute: staleness from 0 to about 10."""
    return simulate(System(n=7, K=3, tc=1.0, compute=scipy.stats.expon(scale=1.0)), updates=400, seed=5)


def synchronous_trace(K: int, updates: int) -> Trace:
    """K gradients per update, all computed on the newest version (staleness 0)."""
    rows = K * updates
    upd = np.repeat(np.arange(1, updates + 1), K)
    cols = {k: np.zeros(rows, dtype=dt) for k, dt in COLUMNS.items()}
    cols["worker"][:] = np.tile(np.arange(K), updates)
    cols["update"][:] = upd
    cols["version"][:] = upd - 1
    cols["round"][:] = upd
    cols["arrive"][:] = upd.astype(float)
    return Trace(cols, np.arange(1, updates + 1, dtype=float), System(n=K, K=K, compute=scipy.stats.expon()))


def full_gd(problem, step: float, updates: int, delay: int) -> tuple[np.ndarray, list[float]]:
    """Gradient descent with full gradients, each evaluated ``delay`` versions back (at w_0 at first)."""
    ws = [problem.init()]
    for u in range(1, updates + 1):
        w = ws[max(u - 1 - delay, 0)]
        ws.append(ws[-1] - step * problem.X.T @ (problem.X @ w - problem.y) / problem.samples)
    return ws[-1], [problem.error(w) for w in ws]


@pytest.mark.parametrize("engine", ENGINES)
def test_one_worker_full_batch_is_gradient_descent_step_by_step(linreg, engine):
    # a worker that waits for each update (staleness 0): plain gradient descent
    sync = synchronous_trace(K=1, updates=60)
    result = replay(sync, linreg, b=linreg.samples, step=0.3, record=60, engine=engine)
    w, errors = full_gd(linreg, 0.3, 60, delay=0)
    assert result.updates.tolist() == list(range(61))
    np.testing.assert_allclose(result.errors, errors, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(result.w, w, rtol=1e-12)
    # the simulated n = 1, K = 1, Tc = 0 system: the worker's next round starts when it sends, before the update
    # its gradient triggers (DESIGN.md; the paper's (n/K)(Tc + mu)/mu = 1), so every gradient after the first is
    # one version old: gradient descent with a delay of one step
    trace = simulate(System(n=1, K=1, tc=0.0, compute=scipy.stats.expon(scale=1.0)), updates=60, seed=1)
    assert trace["staleness"].tolist() == [0] + [1] * 59
    result = replay(trace, linreg, b=linreg.samples, step=0.3, record=60, engine=engine)
    w, errors = full_gd(linreg, 0.3, 60, delay=1)
    np.testing.assert_allclose(result.errors, errors, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(result.w, w, rtol=1e-12)
    np.testing.assert_array_equal(result.times[1:], trace.update_times)


@pytest.mark.parametrize("engine", ENGINES)
def test_zero_staleness_is_synchronous_minibatch_sgd(logreg, engine):
    trace = synchronous_trace(K=4, updates=50)
    result = replay(trace, logreg, b=5, step=0.5, seed=9, record=50, engine=engine)
    rng = np.random.default_rng(np.random.SeedSequence(9))
    w = logreg.init()
    errors = [logreg.error(w)]
    for _ in range(50):
        w = w - 0.5 * np.mean([logreg.gradient(w, 5, rng) for _ in range(4)], axis=0)
        errors.append(logreg.error(w))
    np.testing.assert_allclose(result.errors, errors, rtol=1e-10)
    np.testing.assert_allclose(result.w, w, rtol=1e-10, atol=1e-14)
    assert result.ring == 1  # no stale version is ever kept


def probe(seen: list[int], step: float) -> FunctionProblem:
    """A gradient of -e_0 at every point: each update adds ``step`` to w[0], so w_v[0] = v * step reveals the
    version the gradient was evaluated at (and the gradient records it)."""

    def gradient(w, b, rng):
        seen.append(round(w[0] / step))
        g = np.zeros_like(w)
        g[0] = -1.0
        return g

    return FunctionProblem(gradient, lambda w: float(w @ w), init=np.zeros(2))


def test_each_gradient_is_evaluated_at_the_version_the_trace_says(stale_trace):
    assert stale_trace["staleness"].max() >= 5
    seen: list[int] = []
    result = replay(stale_trace, probe(seen, 0.25), step=0.25)
    assert seen == stale_trace["version"].tolist()
    assert result.w[0] == pytest.approx(0.25 * stale_trace.updates)
    assert result.ring == stale_trace["staleness"].max() + 1
    assert result.gradients == len(stale_trace) and result.dropped == 0


def test_dropped_rows_are_skipped_and_counted(stale_trace):
    cols = {k: v.copy() for k, v in stale_trace.columns.items()}
    drop = np.arange(5, len(stale_trace), 17)  # never all three rows of an update
    cols["update"][drop] = -1
    trace = Trace(cols, stale_trace.update_times, stale_trace.system)
    seen: list[int] = []
    result = replay(trace, probe(seen, 0.5), step=0.5)
    kept = np.ones(len(trace), bool)
    kept[drop] = False
    assert seen == stale_trace["version"][kept].tolist()
    assert result.dropped == drop.size and result.gradients == len(trace) - drop.size


def test_updates_without_gradients_keep_w():
    trace = synchronous_trace(K=1, updates=6)
    cols = {k: v.copy() for k, v in trace.columns.items()}
    cols["update"][[1, 2]] = -1  # updates 2 and 3 apply nothing; later versions are shifted accordingly
    cols["version"][3:] = cols["update"][3:] - 1
    trace = Trace(cols, trace.update_times, trace.system)
    seen: list[int] = []
    result = replay(trace, probe(seen, 1.0), step=1.0, record=6)
    # w[0] counts the updates that applied a gradient: w_2 = w_3 = w_1, so the gradient on version 3 sees 1
    assert seen == [0, 1, 2, 3]
    assert result.w[0] == 4.0 and result.updates[-1] == 6


@pytest.mark.parametrize("problem", ["linreg", "logreg"])
def test_both_engines_draw_the_same_minibatches(stale_trace, problem, request):
    p = request.getfixturevalue(problem)
    one = replay(stale_trace, p, b=3, step=0.05, seed=4, engine="numba")
    two = replay(stale_trace, p, b=3, step=0.05, seed=4, engine="python")
    np.testing.assert_allclose(one.errors, two.errors, rtol=1e-9)
    other = replay(stale_trace, p, b=3, step=0.05, seed=5, engine="numba")
    assert not np.allclose(one.errors[1:], other.errors[1:])
    again = replay(stale_trace, p, b=3, step=0.05, seed=4, engine="numba")
    np.testing.assert_array_equal(one.errors, again.errors)


def test_sum_aggregate_adds_the_gradients(linreg):
    trace = synchronous_trace(K=3, updates=10)
    mean = replay(trace, linreg, b=linreg.samples, step=0.3, aggregate="mean")
    total = replay(trace, linreg, b=linreg.samples, step=0.1, aggregate="sum")
    np.testing.assert_allclose(mean.w, total.w, rtol=1e-12)


def test_policies_change_the_step_of_stale_gradients_only(linreg, stale_trace):
    sync = synchronous_trace(K=2, updates=30)
    for policy in ("staleness-aware", "delay-adaptive"):
        same = replay(sync, linreg, b=4, step=0.1, seed=1, policy=policy)
        np.testing.assert_array_equal(same.errors, replay(sync, linreg, b=4, step=0.1, seed=1).errors)
    seen: list[int] = []
    result = replay(stale_trace, probe(seen, 1.0), step=1.0, policy="staleness-aware", record=400)
    # w[0] grows by the mean of 1/max(tau, 1) over each update's gradients
    tau = np.maximum(stale_trace["staleness"], 1).reshape(-1, 3)
    assert result.w[0] == pytest.approx(np.sum(np.mean(1.0 / tau, axis=1)))


def test_delay_compensation_is_applied_to_stale_gradients(stale_trace):
    calls = []

    def spy(g, w_now, w_stale):
        calls.append((w_now[0], w_stale[0]))
        return g

    seen: list[int] = []
    replay(stale_trace, probe(seen, 1.0), step=1.0, correction=chain(spy, delay_compensation(0.0)))
    now = np.array([c[0] for c in calls])
    stale = np.array([c[1] for c in calls])
    np.testing.assert_array_equal(stale, stale_trace["version"])
    np.testing.assert_array_equal(now, stale_trace["update"] - 1)


def test_delay_compensation_helps_under_large_staleness(linreg):
    trace = simulate(System(n=20, K=1, compute=scipy.stats.expon(scale=1.0)), updates=1500, seed=2)
    plain = replay(trace, linreg, b=linreg.samples, step=0.08, record=10)
    dc = replay(trace, linreg, b=linreg.samples, step=0.08, record=10, correction=delay_compensation(1.0))
    assert dc.meta["engine"] == "python" and dc.meta["correction"] == "delay_compensation(1.0)"
    assert np.isfinite(dc.final_error) and dc.final_error <= plain.final_error


def test_memory_is_the_ring_of_the_largest_staleness_not_the_trace_length(linreg):
    trace = simulate(System(n=10, K=1, compute=scipy.stats.expon(scale=1.0)), updates=20_000, seed=3)
    short = replay(trace.head(200), linreg, b=1)
    long = replay(trace, linreg, b=1)
    assert short.ring == trace.head(200)["staleness"].max() + 1
    assert long.ring == trace["staleness"].max() + 1 < 200
    assert long.updates.size <= 502


def test_recorded_curve_and_time_to_target(linreg, stale_trace):
    result = replay(stale_trace, linreg, b=2, step=0.1, seed=1, record=40)
    assert result.updates[0] == 0 and result.updates[-1] == stale_trace.updates
    assert np.all(np.diff(result.updates) == 10)
    target = result.errors[0] / 100
    t = result.time_to(target)
    assert t is not None and result.error_at([t])[0] <= target
    assert result.time_to(0.0) is None
    assert result.to_dict()["final_error"] == result.final_error


@pytest.mark.parametrize("engine", ENGINES)
def test_stop_below_ends_the_curve_at_the_first_record_at_or_below_it(linreg, stale_trace, engine):
    """The stopped curve is the full curve's prefix up to its first recorded error <= the value, with the same
    parameter there and the gradients applied until then counted; a value never reached stops nothing."""
    kw = {"b": 2, "step": 0.1, "seed": 1, "record": 40, "engine": engine}
    full = replay(stale_trace, linreg, **kw)
    target = full.errors[0] / 20
    k = int(np.flatnonzero(full.errors <= target)[0])
    assert 0 < k < full.errors.size - 1  # the target is reached before the end: the stop saves work
    short = replay(stale_trace, linreg, stop_below=target, **kw)
    assert np.array_equal(short.updates, full.updates[: k + 1]) and np.array_equal(short.errors, full.errors[: k + 1])
    assert short.time_to(target) == full.time_to(target)
    assert math.isclose(linreg.error(short.w), short.errors[-1], rel_tol=1e-12)
    upd = stale_trace["update"]
    assert short.gradients == np.count_nonzero((upd >= 1) & (upd <= short.updates[-1])) < full.gradients
    assert short.meta["stopped_at_update"] == short.updates[-1] and full.meta["stopped_at_update"] is None
    never = replay(stale_trace, linreg, stop_below=0.0, **kw)
    assert np.array_equal(never.errors, full.errors) and never.gradients == full.gradients


def test_stop_below_also_stops_a_diverging_run(linreg, stale_trace):
    """A step far too large: the run stops at the first record past the divergence threshold (same as the full
    run's diverged_at)."""
    full = replay(stale_trace, linreg, b=1, step=50.0, seed=1, record=100)
    assert full.diverged_at is not None
    short = replay(stale_trace, linreg, b=1, step=50.0, seed=1, record=100, stop_below=0.0)
    assert short.diverged_at == full.diverged_at == short.updates[-1] < stale_trace.updates


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stop_below": "low"}, "stop_below must be an error"),
        ({"stop_below": math.nan}, "stop_below must be an error"),
        ({"b": 0}, "b must be an integer >= 1, got 0"),
        ({"step": -1.0}, "step must be a finite number > 0"),
        ({"policy": "fast"}, "policy must be one of constant, staleness-aware, delay-adaptive"),
        ({"policy": lambda base, tau, n: -tau}, "policy must be a function returning one finite step >= 0"),
        ({"aggregate": "max"}, "aggregate must be 'mean' or 'sum'"),
        ({"engine": "gpu"}, "engine must be one of auto, numba, python"),
        ({"record": 0}, "record must be an integer >= 1"),
    ],
)
def test_bad_arguments_name_the_parameter(linreg, stale_trace, kwargs, match):
    with pytest.raises(SpecError, match=match):
        replay(stale_trace, linreg, **{"step": 0.1, **kwargs})


def test_bad_traces_and_engines_are_refused(stale_trace):
    seen: list[int] = []
    with pytest.raises(SpecError, match=r"engine must be 'python' for a problem without \.linear_model\(\)"):
        replay(stale_trace, probe(seen, 1.0), engine="numba")
    cols = {k: v.copy() for k, v in stale_trace.columns.items()}
    cols["version"][10] += 1
    with pytest.raises(SpecError, match="staleness = \\(update - 1\\) - version"):
        replay(Trace(cols, stale_trace.update_times, stale_trace.system), probe(seen, 1.0))
    with pytest.raises(SpecError, match="trace must be a stalegrad Trace"):
        replay(stale_trace.columns, probe(seen, 1.0))  # type: ignore[arg-type]


def test_figure3_ordering_holds_for_five_seeds_out_of_five():
    from stalegrad.experiments import fig3

    result = fig3(updates=1000, seeds=5, seed=1)
    summary = result.summary()
    assert summary["ordering_holds"] == 5
    assert summary["time_ratio_min"] > 1.5 and summary["late_error_ratio_min"] > 1.5
    for row in result.rows:  # the staleness the theory predicts for the two cases: 1 and 10
        assert row["staleness_case1"] == pytest.approx(1.0, abs=0.1)
        assert row["staleness_case2"] == pytest.approx(10.0, abs=1.0)
    band = result.bands[0]
    assert band.seeds == 5 and np.all(band.lo <= band.mean) and np.all(band.mean <= band.hi)
