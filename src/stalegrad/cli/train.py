"""``stalegrad train``: SGD replayed along simulated timelines; error against wall-clock time."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click

from ..errors import SpecError, invalid
from .options import (
    PROBLEM_HELP,
    build_systems,
    check_output_dir,
    check_problem_options,
    load_problem,
    parse_sweep,
    protocol_options,
    system_options,
)
from .output import emit_json, fmt, print_table, progress_bar


@click.command("train")
@click.option(
    "--problem",
    default="linreg",
    show_default=True,
    help=PROBLEM_HELP,
)
@system_options
@protocol_options
@click.option(
    "--trace",
    "traces",
    multiple=True,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="Replay along a saved Trace (.csv or .parquet, from `simulate --trace-out` or `run --out`) instead of "
    "simulating; repeat for several. The system options are then not used.",
)
@click.option("--b", "b", default="1", show_default=True, help="Minibatch per gradient (a value or a list 1,10).")
@click.option(
    "--scale-compute/--no-scale-compute",
    default=True,
    show_default=True,
    help="Compute time of a round is b times a draw from --compute (the paper: time grows linearly with b).",
)
@click.option(
    "--compute-batch",
    "compute_batch",
    multiple=True,
    metavar="LAW",
    help="Compute time at minibatch b: a law whose loc and scale are affine in b, e.g. 'gamma(a=3, loc=0.2 + "
    "0.01*b, scale=0.05 + 0.002*b)' (repeat with counts for classes, '3*...'). Replaces --compute and "
    "--scale-compute. stalegrad fit writes it into the system file from records at several batch sizes, and "
    "--system FILE uses it.",
)
@click.option("--updates", type=click.IntRange(min=1), default=2000, show_default=True, help="Updates to replay.")
@click.option("--step", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True, help="Base step.")
@click.option(
    "--policy",
    default="constant",
    show_default=True,
    help="Step-size policy (or a list): constant, staleness-aware (base/tau), delay-adaptive (base*min(1, n/tau)).",
)
@click.option("--dc", type=click.FloatRange(min=0), default=None, help="Delay compensation (DC-ASGD) lambda.")
@click.option(
    "--aggregate", type=click.Choice(["mean", "sum"]), default="mean", show_default=True, help="Gradients of an update."
)
@click.option("--target", type=float, default=None, help="Target error (default: 1% of the initial error).")
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Replications of every configuration (common random numbers: replication r uses the same timeline "
    "and minibatch seeds in every configuration); medians with 95% intervals, and a band in the plot.",
)
@click.option(
    "--horizon",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Compare every configuration at this wall-clock time (default: the earliest last update of all).",
)
@click.option("--yes", is_flag=True, help="Run even when the estimated work is above the limit (10 minutes).")
@click.option("--dim", type=click.IntRange(min=1), default=20, show_default=True, help="linreg: unknowns.")
@click.option("--samples", type=click.IntRange(min=1), default=2000, show_default=True, help="linreg: data size.")
@click.option("--noise", type=click.FloatRange(min=0), default=0.5, show_default=True, help="linreg: noise sd.")
@click.option("--l2", type=float, default=1e-3, show_default=True, help="logreg: l2 regularisation.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: fresh, printed).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder for train.csv (error against time), train.png and train.json.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def train_command(
    problem: str,
    n: str,
    K: str,
    tc: str,
    uplink: str | tuple[str, ...] | None,  # repeated on the command line: per-worker delays with counts
    downlink: str | tuple[str, ...] | None,
    compute: tuple[str, ...],
    b: str,
    scale_compute: bool,
    compute_batch: tuple[str, ...],
    updates: int,
    step: float,
    policy: str,
    dc: float | None,
    aggregate: str,
    target: float | None,
    seeds: int,
    horizon: float | None,
    yes: bool,
    dim: int,
    samples: int,
    noise: float,
    l2: float,
    seed: int | None,
    out: str | None,
    as_json: bool,
    traces: tuple[str, ...],
    **protocol_options: Any,
) -> None:
    """Replay SGD along simulated timelines: every configuration (the product of n, K, tc, b and --policy)
    gets its error against wall-clock time, the time to reach the target error and the final error.

    \b
    stalegrad train --problem linreg --n 10 --K 10 --b 1 --compute "expon(scale=2)" --out results/train
    stalegrad train --n 10 --K 1,10 --b 1 --policy constant,staleness-aware --updates 5000 --out DIR
    stalegrad train --n 8 --K 1,4 --step 0.05 --seeds 5 --out DIR
    """
    updates_given = click.get_current_context().get_parameter_source("updates") != click.core.ParameterSource.DEFAULT
    from ..experiments import configurations, train_sweep, write_train
    from ..train import delay_compensation, get_policy

    bs = parse_sweep("--b", b, int)
    if min(bs) < 1:
        raise invalid("--b", b, "integers >= 1 (a value or a list)")
    policies = [p.strip() for p in policy.split(",")]
    for p in policies:
        get_policy(p)
    if dc is not None and not math.isfinite(dc):
        raise invalid("--dc", dc, "a finite number >= 0 (the DC-ASGD lambda)")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise invalid("--target", target, "a finite error > 0")
    if horizon is not None and not (math.isfinite(horizon) and horizon > 0):
        raise invalid("--horizon", horizon, "a finite number of seconds > 0")
    check_problem_options(problem, dim=dim, samples=samples, noise=noise, l2=l2)
    batch_laws = _batch_laws(compute_batch, traces)
    if out is not None:
        check_output_dir("--out", out)
    if traces:
        from ..trace_io import read_trace

        if n is not None or K is not None:
            raise SpecError("--trace replays saved traces: leave out --n and --K (the traces record their systems)")
        sources: list[Any] = [(Path(p).name, read_trace(p)) for p in traces]
        for name, trace in sources:
            if updates_given and updates > trace.updates:
                raise invalid("--updates", updates, f"at most the {trace.updates} updates of the trace {name}")
    else:
        if batch_laws and n is not None:  # the systems are checked (mindflayer's cutoffs) with the laws at the least b
            from ..batch_law import per_worker

            for size in parse_sweep("--n", n, int):
                per_worker(batch_laws, size)  # (the counts: an error names --compute-batch)
            compute = _laws_at(batch_laws, min(bs))
        sources = build_systems(n, K, tc, uplink, downlink, compute, **protocol_options)
    prob = load_problem(problem, dim=dim, samples=samples, noise=noise, l2=l2)
    correction = None if dc is None else delay_compensation(dc)
    configs = configurations(
        sources, bs, policies, scale_compute=scale_compute, suffix="" if dc is None else f" dc={dc:g}",
        batch_laws=batch_laws,
    )  # fmt: skip
    _check_work(configs, prob, updates, seeds, yes)
    with progress_bar() as report:
        sweep = train_sweep(
            configs, prob, updates=updates, step=step, correction=correction, aggregate=aggregate, seeds=seeds,
            seed=seed, target=target, horizon=horizon, progress=report,
        )  # fmt: skip
    rows = sweep.rows()
    if out:
        write_train(sweep, out, f"{prob!r}, step {step:g}, seed {sweep.seed}")
    diverged = [r["label"] for r in rows if r["diverged"]]
    if as_json:
        emit_json({"target": sweep.target, "horizon": sweep.horizon, "seed": sweep.seed, "rows": rows})
    else:
        interval = "median over seeds [95% CI]" if seeds > 1 else "one seed"
        print_table(
            f"stalegrad train ({prob!r}, step {step:g}, seed {sweep.seed}; target error {sweep.target:.4g}, "
            f"horizon {sweep.horizon:.4g} s; {interval})",
            ["label", "E[tau]", "max tau", "updates", "time to target", "error at horizon"],
            [
                [
                    r["label"],
                    fmt(r["staleness_mean"], 2),
                    str(r["staleness_max"]),
                    str(r["updates"]),
                    _with_interval(r["time_to_target"], r["time_to_target_ci95"], seeds, "not reached", 1),
                    "diverged" if r["diverged"] else _with_interval(r["final_error"], r["final_error_ci95"], seeds),
                ]
                for r in rows
            ],
        )
        if out:
            click.echo(f"files written to {out}/ (train.csv, train.png with train.json beside)")
    for label in diverged:
        click.echo(f"warning: {label} diverged (error not finite or above 1e6 x its initial error)", err=True)


def _batch_laws(texts: tuple[str, ...], traces: tuple[str, ...]) -> list[Any] | None:
    """--compute-batch parsed; refused beside an explicit --compute or --scale-compute (it replaces both) and
    beside --trace (a saved trace's times are fixed)."""
    if not texts:
        return None
    from ..batch_law import parse_batch_law

    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("compute_batch") not in (None, click.core.ParameterSource.DEFAULT)
    for name in ("compute", "scale_compute"):
        if explicit and ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            flag = "--compute" if name == "compute" else "--scale-compute/--no-scale-compute"
            raise invalid(flag, ctx.params.get(name), "left out when --compute-batch is given (it replaces it)")
    if traces:
        if explicit:
            raise invalid("--compute-batch", texts[0], "left out with --trace (a saved trace's times are fixed)")
        return None
    return [parse_batch_law(t) for t in texts]


def _laws_at(batch_laws: list[Any], b: int) -> tuple[str, ...]:
    """The ``--compute`` texts of the laws of ``b`` at ``b`` (with their counts)."""
    from ..syntax import describe

    counted = len(batch_laws) > 1 or batch_laws[0][0] > 1
    return tuple((f"{count}*" if counted else "") + describe(law.at(b)) for count, law in batch_laws)


def _check_work(configs: list[Any], problem: Any, updates: int, seeds: int, yes: bool) -> None:
    """Refuse, before any work, a sweep estimated above the limit (unless --yes), with the estimate."""
    from ..experiments.training import estimate_seconds
    from ..sim.cost import LIMIT_SECONDS, describe_seconds

    seconds = estimate_seconds(configs, problem, updates, seeds)
    if seconds > LIMIT_SECONDS and not yes:
        raise SpecError(
            f"--updates {updates} over {len(configs)} configurations and {seeds} seeds is an estimated "
            f"{describe_seconds(seconds)} of work, above the limit: lower --updates or add --yes"
        )


def _with_interval(value: float | None, ci: list[float | None], seeds: int, missing: str = "-", digits: int = 4) -> str:
    def one(x: float | None) -> str:
        return missing if x is None else (f"{x:.{digits}f}" if digits < 4 else f"{x:.4g}")

    if seeds == 1 or (value is None and ci[0] is None and ci[1] is None):
        return one(value)
    return f"{one(value)} [{one(ci[0])}, {one(ci[1])}]"
