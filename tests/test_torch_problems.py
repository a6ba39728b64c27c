"""Torch problems: the flat vector, the minibatch draws and the gradient against the numpy problems and finite
differences; determinism, threads, CPU only, metrics; the replay and the command line with a torch model."""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.stats

from stalegrad import System, simulate
from stalegrad.errors import SpecError
from stalegrad.train import LinearRegression, replay

torch = pytest.importorskip("torch")

from stalegrad.train.torch_problems import DIGITS_SPLIT, TorchProblem, cnn_digits, mlp_digits  # noqa: E402


def half_squares(out, y):
    """The loss of LinearRegression: mean of (x.w - y)^2 / 2."""
    return 0.5 * ((out.squeeze(1) - y) ** 2).mean()


def torch_linreg(p: LinearRegression) -> TorchProblem:
    """LinearRegression's problem as a float64 torch model starting at 0, like the numpy one."""
    model = torch.nn.Linear(p.dim, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.zero_()
    return TorchProblem(model, half_squares, torch.from_numpy(p.X), torch.from_numpy(p.y), name="ls")


@pytest.fixture(scope="module")
def mlp():
    return mlp_digits()


def test_same_seed_same_batches_same_gradient_as_the_numpy_problem():
    p = LinearRegression(dim=5, samples=300, seed=3)
    t = torch_linreg(p)
    assert t.dim == p.dim and np.array_equal(t.init(), p.init())
    w = np.random.default_rng(0).standard_normal(p.dim)
    for b in (1, 7, 300, 1000):  # b >= samples: the full gradient, nothing drawn
        r1, r2 = np.random.default_rng(5), np.random.default_rng(5)
        np.testing.assert_allclose(t.gradient(w, b, r1), p.gradient(w, b, r2), rtol=1e-12, atol=1e-12)
        assert r1.bit_generator.state == r2.bit_generator.state
    assert t.loss(w) == pytest.approx(p.loss(w), rel=1e-12) and t.error(w) == t.loss(w)


def test_replay_with_a_torch_model_follows_the_numpy_replay():
    p = LinearRegression(dim=4, samples=200, seed=1)
    trace = simulate(System(n=4, K=2, compute=scipy.stats.expon(scale=1.0)), updates=150, seed=2)
    ours = replay(trace, torch_linreg(p), b=3, step=0.1, seed=7, record=30)
    numpy_ = replay(trace, p, b=3, step=0.1, seed=7, record=30, engine="python")
    np.testing.assert_array_equal(ours.updates, numpy_.updates)
    np.testing.assert_allclose(ours.errors, numpy_.errors + p.loss_opt, rtol=1e-10)
    np.testing.assert_allclose(ours.w, numpy_.w, rtol=1e-10, atol=1e-12)
    assert ours.metrics == {}  # no test set, no metrics


def test_gradient_is_the_derivative_of_the_loss():
    """Full batch (b >= samples) on a float64 MLP: central differences of loss() along random directions."""
    gen = torch.Generator().manual_seed(0)
    X, y = torch.randn(40, 5, generator=gen, dtype=torch.float64), torch.randint(0, 3, (40,), generator=gen)
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(5, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
    p = TorchProblem(model, torch.nn.CrossEntropyLoss(), X, y)
    w = p.init()
    g = p.gradient(w, 40, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    for _ in range(5):
        v = rng.standard_normal(p.dim)
        h = 1e-5
        fd = (p.loss(w + h * v) - p.loss(w - h * v)) / (2 * h)
        assert g @ v == pytest.approx(fd, rel=1e-6, abs=1e-9)


def test_parameters_are_views_of_one_flat_buffer_and_outputs_fresh(mlp):
    w = np.random.default_rng(0).standard_normal(mlp.dim) * 0.1
    g = mlp.gradient(w, 4, np.random.default_rng(1))
    flat = torch.cat([q.detach().reshape(-1) for q in mlp.model.parameters()]).numpy()
    np.testing.assert_array_equal(flat, w.astype(np.float32))  # the model holds w (in its own dtype)
    base, end = mlp._flat.data_ptr(), mlp._flat.data_ptr() + mlp._flat.numel() * mlp._flat.element_size()
    for q in mlp.model.parameters():  # no parameter has storage of its own
        assert base <= q.data_ptr() < end and q.grad is not None and q.grad.data_ptr() >= mlp._gflat.data_ptr()
    g_again = mlp.gradient(w, 4, np.random.default_rng(1))
    assert g.dtype == np.float64 and g is not g_again and np.array_equal(g, g_again)
    g[:] = 0  # the caller owns what it gets
    assert np.array_equal(mlp.gradient(w, 4, np.random.default_rng(1)), g_again)


def test_gradient_into_writes_the_same_numbers_and_draws_the_same_batch(mlp):
    w = np.random.default_rng(2).standard_normal(mlp.dim) * 0.1
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    out = np.full(mlp.dim, np.nan)
    for _ in range(3):  # (each call draws its minibatch: the streams stay in step)
        mlp.gradient_into(w, 8, rng_a, out)
        assert np.array_equal(out, mlp.gradient(w, 8, rng_b))
    assert rng_a.integers(1 << 30) == rng_b.integers(1 << 30)


def test_builtin_models_are_deterministic_and_leave_torchs_generator_alone():
    state = torch.random.get_rng_state()
    a, b, c = mlp_digits(seed=3), mlp_digits(seed=3), mlp_digits(seed=4)
    assert torch.equal(torch.random.get_rng_state(), state)
    assert np.array_equal(a.init(), b.init()) and not np.array_equal(a.init(), c.init())
    assert a.dim == 64 * 64 + 64 + 64 * 64 + 64 + 64 * 10 + 10 == 8970
    w = a.init()
    assert np.array_equal(a.gradient(w, 32, np.random.default_rng(9)), b.gradient(w, 32, np.random.default_rng(9)))
    assert repr(a) == repr(b) != repr(c)
    assert a.samples == DIGITS_SPLIT and a.test is not None and a.test[0].shape == (1797 - DIGITS_SPLIT, 64)


def test_replay_on_the_mlp_learns_and_records_test_accuracy(mlp):
    trace = simulate(System(n=4, K=2, compute=scipy.stats.expon(scale=1.0)), updates=300, seed=1)
    r = replay(trace, mlp, b=8, step=0.2, seed=1, record=20)
    again = replay(trace, mlp, b=8, step=0.2, seed=1, record=20)
    np.testing.assert_array_equal(r.errors, again.errors)  # same seeds, same curve, to the bit
    assert set(r.metrics) == {"test_loss", "test_accuracy"}
    assert all(v.shape == r.errors.shape for v in r.metrics.values())
    # chance is 10%: after 600 gradients of 8 samples the MLP is far above it, and its loss far below ln 10
    assert r.metrics["test_accuracy"][0] < 0.3 and r.metrics["test_accuracy"][-1] > 0.7
    assert r.errors[0] == pytest.approx(np.log(10), rel=0.05) and r.final_error < 0.5 * r.errors[0]
    assert r.to_dict()["test_accuracy"] == r.metrics["test_accuracy"][-1]
    assert r.metric_at("test_accuracy", [0.0, r.times[-1] + 1]).tolist() == [
        r.metrics["test_accuracy"][0],
        r.metrics["test_accuracy"][-1],
    ]


def test_metrics_count_right_answers_and_chunks_do_not_change_the_loss():
    model = torch.nn.Linear(3, 3, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.eye(3))
    X, y = torch.eye(3), torch.tensor([0, 1, 1])
    ce = torch.nn.CrossEntropyLoss()
    whole = TorchProblem(model, ce, X, y, test=(X, y), chunk=3)
    m = whole.metrics(whole.init())
    assert m["test_accuracy"] == pytest.approx(2 / 3)
    assert m["test_loss"] == pytest.approx(float(ce(X, y)), rel=1e-6)
    pieces = TorchProblem(torch.nn.Linear(3, 3, bias=False), ce, X, y, test=(X, y), chunk=2)
    assert pieces.metrics(whole.init()) == pytest.approx(m) and pieces.loss(whole.init()) == pytest.approx(
        m["test_loss"]
    )
    regression = TorchProblem(
        torch.nn.Linear(3, 1), torch.nn.MSELoss(), X, torch.ones(3, 1), test=(X, torch.ones(3, 1))
    )
    assert set(regression.metrics(regression.init())) == {"test_loss"}  # no accuracy without class labels


def test_threads_are_set_for_evaluations(mlp):
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        mlp.loss(mlp.init())
        assert torch.get_num_threads() == 1
        free = TorchProblem(torch.nn.Linear(2, 1), torch.nn.MSELoss(), torch.ones(4, 2), torch.ones(4, 1), threads=None)
        torch.set_num_threads(2)
        free.loss(free.init())
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pickled_problem_keeps_its_flat_buffer(mlp):
    w = mlp.init() + 0.01
    blob = pickle.dumps(mlp)
    data = sum(t.numel() * t.element_size() for t in (mlp.X, mlp.y, *mlp.test))
    assert len(blob) < 1.1 * (data + mlp.dim * (8 + 4)) + 20_000  # w_0, the parameters, the data: each once
    copy = pickle.loads(blob)
    assert np.array_equal(copy.init(), mlp.init()) and repr(copy) == repr(mlp)
    assert np.array_equal(copy.gradient(w, 5, np.random.default_rng(2)), mlp.gradient(w, 5, np.random.default_rng(2)))
    assert copy.loss(w) == mlp.loss(w)


def test_cnn_gradient_shape_and_descent():
    p = cnn_digits()
    assert p.dim == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 512 * 256 + 256 + 256 * 10 + 10 == 138_698
    w = p.init()
    g = p.gradient(w, p.samples, np.random.default_rng(0))  # the full gradient
    assert g.shape == (p.dim,) and np.isfinite(g).all()
    assert p.loss(w - 0.1 * g) < p.loss(w)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"model": "not a module"}, "model must be a torch.nn.Module, got 'str'"),
        ({"y": torch.zeros(5)}, "y must be as many samples as X \\(4\\), got '5 samples'"),
        ({"X": torch.zeros(4, 2, device="meta")}, "X must be a CPU tensor .*, got 'a tensor on meta'"),
        ({"model": torch.nn.Linear(2, 1, device="meta")}, "model must be a module on the CPU"),
        ({"threads": 0}, "threads must be an integer >= 1, or None"),
        ({"test": (torch.zeros(3, 2),)}, "test must be a pair \\(X_test, y_test\\)"),
        ({"X": torch.zeros(0, 2), "y": torch.zeros(0, 1)}, "X must be a tensor with at least one sample"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, match):
    args = {"model": torch.nn.Linear(2, 1), "loss": torch.nn.MSELoss(), "X": torch.zeros(4, 2), "y": torch.zeros(4, 1)}
    with pytest.raises(SpecError, match=match):
        TorchProblem(**{**args, **kwargs})


def test_bad_calls_name_the_parameter(mlp):
    with pytest.raises(SpecError, match="b must be an integer >= 1, got 0"):
        mlp.gradient(mlp.init(), 0, np.random.default_rng(0))
    with pytest.raises(SpecError, match="w must be shape \\(8970,\\)"):
        mlp.loss(np.zeros(3))
    with pytest.raises(SpecError, match="seed must be an integer >= 0, got -1"):
        mlp_digits(seed=-1)


def test_without_torch_the_error_says_how_to_install(monkeypatch):
    from stalegrad.cli.options import builtin_problem, load_problem

    linreg = repr(load_problem("linreg"))
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now fails
    with pytest.raises(
        SpecError, match=re.escape("pip install torch --index-url https://download.pytorch.org/whl/cpu")
    ):
        load_problem("mlp-digits")
    assert builtin_problem(linreg) == "linreg"  # resuming a linreg run never builds a torch problem


def test_importing_the_package_does_not_import_torch():
    code = "import sys, stalegrad.train, stalegrad.cli.options, stalegrad.experiments; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("problem", ["mlp-digits", "my_torch_problem:make"])
def test_train_json_reports_test_accuracy(problem, run_cli, tmp_path):
    module = tmp_path / "my_torch_problem.py"
    module.write_text(
        "import torch\n"
        "from stalegrad.train import TorchProblem\n"
        "def make():\n"
        "    torch.manual_seed(0)\n"
        "    X, y = torch.randn(64, 4), torch.randint(0, 2, (64,))\n"
        "    model = torch.nn.Linear(4, 2)\n"
        "    return TorchProblem(model, torch.nn.CrossEntropyLoss(), X, y, test=(X, y), name='mine')\n"
    )
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = ["train", "--problem", problem, "--n", "4", "--K", "2", "--updates", "40", "--seed", "1", "--json"]
    code, out, err = run_cli(argv, env=env)
    assert code == 0, err
    row = json.loads(out)["rows"][0]
    assert 0 <= row["test_accuracy"] <= 1 and row["test_loss"] > 0 and len(row["test_accuracy_ci95"]) == 2
    assert row["final_error"] > 0  # the training loss: nothing subtracted


def test_fig3_mlp_pilot_rule_and_files(tmp_path):
    """A short fig3-mlp: the pilot never picks a step on which Case 2 diverges; the files and the summary."""
    from stalegrad.experiments.fig3_mlp import FIG3_MLP_TARGET, choose_step, fig3_mlp, write_fig3_mlp
    from stalegrad.experiments.reproduction import EXTRA_TARGETS, TARGETS

    assert "fig3-mlp" in EXTRA_TARGETS and "fig3-mlp" not in TARGETS  # not run by `reproduce all`
    step, pilot = choose_step(60, seed=1, steps=(0.1, 50.0))
    assert step == 0.1 and [p["step"] for p in pilot] == [0.1, 50.0]
    assert pilot[0]["loss_case2"] < pilot[1]["loss_case2"] or not np.isfinite(pilot[1]["loss_case2"])
    result = fig3_mlp(60, 2, seed=1, step=0.1)
    summary = write_fig3_mlp(result, tmp_path, 1, {"fig3_mlp_updates": 60})
    assert {f.name for f in tmp_path.iterdir()} == {"fig3-mlp.csv", "fig3-mlp.png", "fig3-mlp.json"}
    assert summary["seeds"] == 2 and summary["step"] == 0.1 and summary["pilot"] == []
    assert summary["target_loss"] == pytest.approx(FIG3_MLP_TARGET * np.log(10), rel=0.05)
    for row in summary["rows"]:  # the two cases' staleness: about 1 and about 10
        assert 0.5 < row["staleness_case1"] < 1.5 and 5 < row["staleness_case2"] < 11
        assert 0 <= row["test_accuracy_case1"] <= 1 and row["late_loss_ratio"] > 0


def test_reproduce_names_the_extra_target_when_refusing():
    from stalegrad.experiments.reproduction import reproduce

    with pytest.raises(SpecError, match="target must be one of fig1, fig2, section4, fig3 or all, or fig3-mlp"):
        reproduce(["fig7"], "unused")


def test_train_work_estimate_times_the_torch_model(run_cli):
    """The estimate times a torch model's gradient (not the linear models' speed): 4e6 CNN gradients are refused,
    while the same count of linear-regression gradients is not above the limit."""
    argv = ["train", "--n", "4", "--K", "2", "--updates", "2000000", "--seed", "1"]
    code, _, err = run_cli([*argv, "--problem", "cnn-digits"])
    assert code == 2 and "estimated" in err and "above the limit" in err and "--yes" in err, err
    assert len(err.strip().splitlines()) == 1
    from stalegrad.experiments.training import configurations, estimate_seconds
    from stalegrad.train import LinearRegression

    configs = configurations([System(n=4, K=2, compute=scipy.stats.expon(scale=1.0))], [16], ["constant"])
    assert estimate_seconds(configs, LinearRegression(), 2_000_000, 1) < 600
