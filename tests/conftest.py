"""Shared fixtures: the paper's compute-time model and a few systems used across test files."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.spec import System


@pytest.fixture
def paper_model():
    """The paper's compute times: 1 + Exp(lambda = 2/3), mean 2.5."""
    return shifted_exponential(alpha=1, rate=2 / 3)


@pytest.fixture
def fig1_system(paper_model):
    return System(n=16, K=10, tc=1, compute=paper_model)


# ------------------------------------------------------------------------------------- real runs (Ray) helpers


def _check_trace(result, updates, K):
    """What every run's Trace must satisfy: K rows per update, no gradient twice (at most once), every gradient
    received applied or counted (the count identity), the staleness definition."""
    t = result.trace
    assert t.updates == updates and len(t) == updates * K
    assert np.all(np.bincount(t["update"], minlength=updates + 1)[1:] == K)
    assert np.array_equal(t["staleness"], t["update"] - 1 - t["version"]) and t["staleness"].min() >= 0
    keys = t["worker"].astype(np.int64) * 10**9 + t["round"]
    assert np.unique(keys).size == keys.size, "a (worker, round) was applied twice"
    assert result.dropped["duplicate"] == 0 and result.dropped["bad_version"] == 0
    # nothing lost, nothing invented: every gradient that reached the master is a row or a drop counted by reason
    assert len(t) + sum(result.dropped.values()) == result.received, (len(t), result.dropped, result.received)
    assert np.all(t["sent"] >= t["start"]) and np.all(t["arrive"] >= t["sent"])
    assert np.all(np.diff(t.update_times) >= 0)
    for w in np.unique(t["worker"]):
        mine = t["worker"] == w
        order = np.argsort(t["round"][mine])
        assert np.all(np.diff(t["start"][mine][order]) > 0)


@pytest.fixture
def check_trace():
    """``check_trace(result, updates, K)``: what every real run's Trace must satisfy."""
    return _check_trace


def _sgd_along(result, problem, lr, b, seed):
    """SGD along a run's Trace with the minibatch streams its workers drew from (each worker's own, one draw per
    round, rounds in order): ``(error of every version, last w)``. Equal to the run's own when every gradient was
    computed on the version its row names and applied in the update it names."""
    from stalegrad.streams import MINIBATCH, worker_seeds

    t = result.trace
    n, K = t.system.n, t.system.K
    rngs = [np.random.default_rng(worker_seeds(seed, n, i)[MINIBATCH]) for i in range(n)]
    last = [0] * n
    ws = [problem.init()]
    for u in range(1, t.updates + 1):
        batch = np.zeros_like(ws[0])
        for j in np.flatnonzero(t["update"] == u):  # in the order the master took them
            i = int(t["worker"][j])
            assert t["round"][j] == last[i] + 1, "each worker's rounds applied in order, none skipped"
            last[i] += 1
            batch += problem.gradient(ws[t["version"][j]], b, rngs[i])
        ws.append(ws[-1] - (lr / K) * batch)
    return np.array([problem.error(w) for w in ws]), ws[-1]


@pytest.fixture
def sgd_along():
    """``sgd_along(result, problem, lr, b, seed)``: SGD along a real run's Trace with its workers' own streams."""
    return _sgd_along


def _big_quadratic(dim):
    """``0.5 |w - c|^2`` with Gaussian gradient noise: a model too large to travel inside a reply."""
    from stalegrad.train import FunctionProblem

    c = np.linspace(-1.0, 1.0, dim)

    def gradient(w, b, rng):
        return (w - c) + rng.standard_normal(dim) / np.sqrt(b)

    return FunctionProblem(gradient, lambda w: 0.5 * float((w - c) @ (w - c)), init=np.zeros(dim), name="quadratic")


@pytest.fixture
def big_quadratic():
    """``big_quadratic(dim)``: a problem whose ``w`` can be made too large to travel inside a reply."""
    return _big_quadratic


def _cli(args, env=None):
    """Run ``main`` in a fresh interpreter, as the console script does, its output to a pipe (no ``COLUMNS``, which
    pytest sets); return (exit code, stdout, stderr)."""
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.run(
        [sys.executable, "-c", "from stalegrad.cli import main; main()", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**base, **(env or {})},
    )
    return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture
def run_cli():
    """``run_cli(args)``: the command line in a fresh interpreter -> (exit code, stdout, stderr)."""
    return _cli


@pytest.fixture
def cli_here(capsys):
    """``cli_here(args)``: the command line in this process -> (exit code, stdout, stderr). For what fails before
    anything heavy starts (usage errors): no interpreter to start and no import to repeat, a second or two less
    per call than :func:`run_cli`."""
    from stalegrad.cli import main

    def call(args):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            main([str(a) for a in args])
        out, err = capsys.readouterr()
        return exited.value.code, out, err

    return call


@pytest.fixture(scope="module")
def local_ray():
    """A test module's one Ray instance (2 CPUs; module scope: each module that uses it starts its own), shut
    down when the module's tests are done."""
    pytest.importorskip("ray")
    from stalegrad.runtime import start_local, stop_local

    info = start_local(num_cpus=2)
    yield info
    stop_local(info)
