"""Compute time against batch size: the law of b (BatchLaw), its maximum-likelihood fit from records at several
batch sizes, the system file's compute_batch, and train using it when it changes b."""

from __future__ import annotations

import json

import numpy as np
import pytest

from stalegrad.batch_law import BatchLaw, parse_batch_law, per_worker
from stalegrad.errors import SpecError
from stalegrad.experiments import configurations
from stalegrad.fit import Records, fit_cluster, write_system_file
from stalegrad.fit.batch import fit_batch_law
from stalegrad.fit.laws import Sample
from stalegrad.spec import System

SIZES = (16, 32, 64)
GAMMA = BatchLaw("gamma", {"a": 3.0}, (0.2, 0.004), (0.05, 0.002))  # mean 0.35 + 0.01 b
SHIFTED = BatchLaw("expon", {}, (0.3, 0.01), (0.1, 0.002))  # mean 0.4 + 0.012 b


def _records(law: BatchLaw, rng: np.random.Generator, per_size: int = 1000) -> dict[int, Sample]:
    return {b: Sample.of(law.at(b).rvs(size=per_size, random_state=rng)) for b in SIZES}


def _least_squares_se(samples: dict[int, Sample]) -> np.ndarray:
    """Standard errors of (overhead, per_sample) by weighted least squares on the per-size sample means: an
    estimate independent of the fit (the maximum-likelihood one should be about as precise, or more)."""
    b = np.array(sorted(samples), dtype=float)
    var = np.array([samples[int(x)].times.var() / samples[int(x)].n for x in b])
    X = np.column_stack([np.ones(b.size), b])
    return np.sqrt(np.diag(np.linalg.inv(X.T @ (X / var[:, None]))))


def test_the_law_of_b_and_its_text():
    assert GAMMA.overhead == pytest.approx(0.35) and GAMMA.per_sample == pytest.approx(0.01)
    assert float(GAMMA.at(20).mean()) == pytest.approx(GAMMA.mean(20)) == pytest.approx(0.55)
    assert GAMMA.text == "gamma(a=3.0, loc=0.2 + 0.004*b, scale=0.05 + 0.002*b)"
    assert parse_batch_law("2*" + GAMMA.text) == (2, GAMMA)
    assert parse_batch_law("gamma(a=3, loc=(2 + b/25)/10, scale=0.05 + 0.002*b)")[1] == GAMMA
    assert SHIFTED.text == "expon(loc=0.3 + 0.01*b, scale=0.1 + 0.002*b)"  # the shifted exponential
    assert float(SHIFTED.at(10).support()[0]) == pytest.approx(0.4)
    assert len(per_worker([(2, GAMMA), (1, SHIFTED)], 3)) == 3


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gamma(a=2*b, scale=b)", "only loc and scale may depend on b, not a"),
        ("gamma(a=2, loc=b*b, scale=1)", "is not a number or affine in b"),
        ("gamma(a=2, loc=0.1 - 0.01*b, scale=1)", "an overhead and a per-sample part >= 0"),
        ("gamma(a=2, loc=1)", "with a scale"),
        ("0*gamma(a=2, scale=b)", "count must be an integer >= 1"),
        ("gamma(a=-1, scale=b)", "compute-batch"),
        ("gamma(", "must be a law like"),
    ],
)
def test_bad_laws_of_b_are_one_line(text, match):
    with pytest.raises(SpecError, match=match):
        parse_batch_law(text)


@pytest.mark.parametrize(("truth", "family"), [(GAMMA, "gamma"), (SHIFTED, "shifted_expon")])
def test_fit_recovers_overhead_and_per_sample_within_their_standard_errors(truth, family):
    """Synthetic records at 3 batch sizes (1000 each) from a known affine law, 20 seeds. Every estimate is within
    4 of its own standard errors of the truth; those errors are honest (within 30% of the least-squares errors
    of the per-size means, an estimate independent of the fit), and the errors in units of them, z, look
    standard: mean within 3/sqrt(20) of 0 (no bias), spread between 0.6 and 1.5. (Over 40 seeds: z's mean
    within 0.12 of 0, its standard deviation 1.00 to 1.08, 92.5-95% within 1.96.)"""
    z = []
    for seed in range(20):
        samples = _records(truth, np.random.default_rng(seed))
        fit = fit_batch_law(samples, family)
        ls = _least_squares_se(samples)
        for est, se, true, ref in (
            (fit.law.overhead, fit.overhead_se, truth.overhead, ls[0]),
            (fit.law.per_sample, fit.per_sample_se, truth.per_sample, ls[1]),
        ):
            assert 0.7 * ref < se < 1.3 * ref
            z.append((est - true) / se)
        assert fit.law.family == truth.family and fit.sizes == SIZES and fit.records == (1000,) * 3
    z = np.array(z).reshape(-1, 2)
    assert np.abs(z).max() < 4
    assert np.all(np.abs(z.mean(axis=0)) < 3 / np.sqrt(20))
    assert np.all((z.std(axis=0) > 0.6) & (z.std(axis=0) < 1.5))


def test_fit_needs_two_batch_sizes():
    rng = np.random.default_rng(0)
    with pytest.raises(SpecError, match="needs records at 2 batch sizes or more"):
        fit_batch_law({16: Sample.of(GAMMA.at(16).rvs(size=50, random_state=rng))}, "gamma")


def _cluster_records(rng: np.random.Generator, per_size: int = 300) -> Records:
    """Four workers in two classes (the second twice as slow), at batch sizes 16, 32, 64 (64 the most frequent)."""
    slow = BatchLaw("gamma", {"a": 3.0}, (0.4, 0.008), (0.1, 0.004))
    worker, duration, batch = [], [], []
    for w in range(4):
        for b, count in zip(SIZES, (per_size, per_size, 2 * per_size), strict=True):
            worker += [f"w{w}"] * count
            duration += list((GAMMA if w < 2 else slow).at(b).rvs(size=count, random_state=rng))
            batch += [b] * count
    return Records.from_arrays(worker, duration, batch=batch)


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    cluster = fit_cluster(_cluster_records(np.random.default_rng(7)), gof_samples=0, seed=1, K=2)
    path = tmp_path_factory.mktemp("batch") / "cluster.json"
    write_system_file(path, cluster)
    return cluster, path


def test_fit_cluster_writes_the_law_of_b_per_class(batched):
    cluster, path = batched
    assert cluster.batch_reference == 64 and [c.workers for c in cluster.classes] == [("w0", "w1"), ("w2", "w3")]
    fast, slow = (c.batch for c in cluster.classes)
    assert (
        abs(fast.law.overhead - 0.35) < 4 * fast.overhead_se
        and abs(fast.law.per_sample - 0.01) < 4 * fast.per_sample_se
    )
    assert (
        abs(slow.law.overhead - 0.70) < 4 * slow.overhead_se
        and abs(slow.law.per_sample - 0.02) < 4 * slow.per_sample_se
    )
    doc = json.loads(path.read_text())
    assert doc["version"] >= 2 and doc["batch_reference"] == 64
    assert doc["compute_batch"] == [f"2*{fast.law.text}", f"2*{slow.law.text}"]
    assert doc["classes"][0]["batch"]["overhead_se"] == pytest.approx(fast.overhead_se)
    assert any("the laws are those at b = 64" in note for note in cluster.notes)
    # the System's laws are those at the reference batch size
    assert cluster.system.compute[0].mean() == pytest.approx(fast.law.mean(64), rel=0.03)


def test_a_worker_without_records_at_the_reference_size_is_an_error():
    records = Records.from_arrays(["a"] * 20 + ["b"] * 10, np.linspace(1, 2, 30), batch=[8] * 20 + [16] * 10)
    with pytest.raises(SpecError, match=r"reference size 8 .* and b has none"):
        fit_cluster(records, gof_samples=0)


def test_configurations_take_the_law_at_each_b_not_b_times_the_draw():
    system = System(n=3, K=1, compute=SHIFTED.at(1))
    configs = configurations([system], [1, 50], ["constant"], batch_laws=[(2, GAMMA), (1, SHIFTED)])
    for c in configs:
        means = [float(m.mean()) for m in c.system.compute]
        assert means == pytest.approx([GAMMA.mean(c.b)] * 2 + [SHIFTED.mean(c.b)])
    scaled = configurations([System(n=1, K=1, compute=GAMMA.at(1))], [50], ["constant"])[0]
    assert float(scaled.system.compute[0].mean()) == pytest.approx(50 * GAMMA.mean(1))  # the old rule: 50 x the draw


def test_train_uses_the_system_files_law_of_b(batched, run_cli):
    cluster, path = batched
    code, stdout, err = run_cli(
        ["train", "--system", path, "--b", "16,64", "--updates", "200", "--seed", "1", "--json"]
    )
    assert code == 0, err
    rows = json.loads(stdout)["rows"]
    for row, b in zip(rows, (16, 64), strict=True):
        assert row["b"] == b
        laws = [c.batch.law for c in cluster.classes]
        assert row["system"]["compute"] == [f"2*{describe_at(law, b)}" for law in laws]


def describe_at(law: BatchLaw, b: int) -> str:
    from stalegrad.syntax import describe

    return describe(law.at(b))


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--compute-batch", "gamma(a=2, scale=b)", "--compute", "expon(scale=1)"], "--compute must be left out"),
        (["--compute-batch", "gamma(a=2, scale=b)", "--no-scale-compute"], "--scale-compute/--no-scale-compute"),
        (["--compute-batch", "3*gamma(a=2, scale=b)"], "counts must be laws for exactly n = 4 workers"),
        (["--compute-batch", "gamma(a=b, scale=b)"], "only loc and scale may depend on b"),
    ],
)
def test_bad_compute_batch_is_one_error_line(cli_here, args, match):
    code, _, err = cli_here(["train", "--n", "4", "--K", "2", *args])
    assert code == 2 and err.startswith("Error:") and match in err and err.count("\n") == 1


def test_compute_given_beside_the_system_file_drops_its_law_of_b(batched, cli_here):
    from stalegrad.fit.system_file import option_values

    _, path = batched
    options = {"n": None, "K": None, "compute": (), "compute_batch": ()}
    assert option_values(path, options, set())["compute_batch"] == tuple(json.loads(path.read_text())["compute_batch"])
    assert "compute_batch" not in option_values(path, dict(options, compute=("4*expon(scale=1)",)), {"compute"})


def test_one_class_law_of_b_follows_any_n(tmp_path, cli_here):
    rng = np.random.default_rng(9)
    worker = np.repeat(["a", "b"], 600)
    batch = np.tile(np.repeat([16, 64], 300), 2)
    duration = np.concatenate([GAMMA.at(int(b)).rvs(random_state=rng, size=1) for b in batch])
    cluster = fit_cluster(Records.from_arrays(worker, duration, batch=batch), gof_samples=0, seed=1)
    assert len(cluster.classes) == 1 and cluster.compute_batch()[0].startswith("2*gamma(")
    path = tmp_path / "one.json"
    write_system_file(path, cluster)
    code, stdout, err = cli_here(["train", "--system", path, "--n", "3", "--b", "8", "--updates", "50", "--json"])
    assert code == 0, err
    (row,) = json.loads(stdout)["rows"]
    assert row["n"] == 3 and row["system"]["compute"] == [f"3*{describe_at(cluster.classes[0].batch.law, 8)}"]


def test_the_fit_figure_draws_compute_time_against_b(batched, tmp_path):
    """With a law of b, each class's row gains a third panel: per batch size the measured mean, median and p95, the
    fitted curves, and the paper's scaling from the reference size."""
    import matplotlib

    matplotlib.use("Agg")
    from stalegrad.fit.figures import fit_figure

    cluster, _ = batched
    fig = fit_figure(cluster.classes, reference=cluster.batch_reference)
    axes = fig.get_axes()
    assert len(axes) == 6
    panel = axes[2]
    assert panel.get_xlabel() == "batch size b"
    labels = [t.get_text() for t in panel.get_legend().get_texts()]
    assert "fitted mean" in labels and "b x mean at b = 64" in labels
    fitted = next(line for line in panel.get_lines() if line.get_label() == "fitted mean")
    b, mean = fitted.get_data()
    law = cluster.classes[0].batch.law
    assert np.allclose(mean, law.overhead + np.asarray(b) * law.per_sample)
    # the measured means sit on the fitted line within their intervals (4 SE)
    for size, sample in cluster.classes[0].batch.samples.items():
        se = sample.times.std(ddof=1) / np.sqrt(sample.n)
        assert abs(sample.times.mean() - law.mean(size)) < 4 * se
    fig.savefig(tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 0


def test_mindflayer_cutoffs_are_checked_against_the_law_of_b_not_the_default_law(run_cli):
    """Millisecond compute laws: a cutoff of 20 ms is one a worker can meet under the law of b (the default law, the
    paper's 1 + Exp, never finishes under 1 s); a cutoff no round can meet is still refused."""
    law = "expon(loc=0.001 + 0.0001*b, scale=0.002 + 0.0001*b)"
    base = ["train", "--n", "2", "--K", "1", "--protocol", "mindflayer", "--compute-batch", law, "--b", "4"]
    code, stdout, err = run_cli([*base, "--cutoff", "0.02", "--updates", "50", "--json"])
    assert code == 0, err
    assert json.loads(stdout)["rows"][0]["system"]["cutoffs"] == [0.02, 0.02]
    code, _, err = run_cli([*base, "--cutoff", "0.0005", "--updates", "50"])
    assert code == 2 and err.startswith("Error: cutoffs must be times") and err.count("\n") == 1
