"""``stalegrad advise``: the configuration of a cluster that reaches a target error soonest, ranked, with the
command lines that run it."""

from __future__ import annotations

import math
import sys
from typing import Any

import click

from ..errors import SpecError, invalid
from .options import (
    IMAGE_SUFFIXES,
    PROBLEM_HELP,
    build_systems,
    check_output_file,
    cluster_options,
    load_problem,
    parse_sweep,
)
from .output import emit_json, fmt, print_table


@click.command("advise")
@cluster_options
@click.option("--problem", default=None, help=PROBLEM_HELP + " Without it, the theory-only answer (--noise-ratio).")
@click.option("--target", type=float, default=None, help="Target error (default: 1% of the initial error).")
@click.option(
    "--noise-ratio",
    "noise_ratio",
    type=float,
    default=None,
    metavar="S",
    help="sigma^2/epsilon of the fixed-time theory (default: the problem's own at its optimum and the target, for "
    "linreg and logreg).",
)
@click.option("--budget-workers", "budget_workers", type=click.IntRange(min=1), default=None, metavar="M",
              help="Use at most M workers.")  # fmt: skip
@click.option(
    "--workers",
    "sizes",
    default=None,
    metavar="M,...",
    help="Worker counts to try (the fastest M). Default: powers of two, all, and the theory's m*.",
)
@click.option("--b", "bs", default="1", show_default=True, help="Minibatch sizes to try (a value or a list 1,4).")
@click.option(
    "--compute-batch",
    "compute_batch",
    multiple=True,
    metavar="LAW",
    help="Compute time at minibatch b: a law whose loc and scale are affine in b (as train's; repeat with counts "
    "for classes). A system file's compute_batch fills it: a candidate with minibatch b then takes each worker's "
    "law at b, not b times a draw of --compute.",
)
@click.option(
    "--steps",
    default=None,
    metavar="LIST",
    help="Constant steps to try (a list). Default: 10 halvings from 2/L (linear problems) or from 1.",
)
@click.option(
    "--policy",
    "policies",
    default="constant",
    show_default=True,
    help="Step-size policies to try (a list): constant, staleness-aware, delay-adaptive.",
)
@click.option(
    "--protocols",
    default="k-batch-async",
    show_default=True,
    help="Protocols to try (a list): k-batch-async, k-async, k-sync, k-batch-sync, rennala (K: its batch S), "
    "ringmaster (K = 1, with its delay threshold R searched) and mindflayer (rennala with cutoffs: each worker's "
    "quantile 0.5, 0.75, 0.9 or 0.99, the one of the highest update rate).",
)
@click.option("--seeds", type=click.IntRange(min=2), default=8, show_default=True,
              help="Replications of the finalists (the interval of the time to target).")  # fmt: skip
@click.option("--validation", type=click.IntRange(min=2), default=None, metavar="R",
              help="Fresh replications of the finalists and the naive choice that make the final choice (default: "
              "6 times --seeds: a gain of 5-10% is within the noise of fewer).")  # fmt: skip
@click.option("--max-updates", "max_updates", type=click.IntRange(min=100), default=1_000_000, show_default=True,
              help="Updates the naive choice may take to reach the target.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Random seed (default: fresh, printed).")
@click.option("--plot", type=click.Path(dir_okay=False), default=None,
              help="A Pareto figure (PNG): time to target against workers used.")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def advise_command(
    n: str | None,
    K: str | None,
    tc: str,
    uplink: str | tuple[str, ...] | None,  # repeated on the command line: per-worker delays with counts
    downlink: str | tuple[str, ...] | None,
    compute: tuple[str, ...],
    problem: str | None,
    target: float | None,
    noise_ratio: float | None,
    budget_workers: int | None,
    sizes: str | None,
    bs: str,
    compute_batch: tuple[str, ...],
    steps: str | None,
    policies: str,
    protocols: str,
    seeds: int,
    validation: int | None,
    max_updates: int,
    seed: int | None,
    plot: str | None,
    as_json: bool,
) -> None:
    """Which workers, K, minibatch and step reach --target soonest on this cluster: every configuration screened
    by theory, the best confirmed by simulation and replay with common random numbers.

    \b
    stalegrad advise --system cluster.json --problem linreg --plot advice.png
    stalegrad advise --n 8 --compute "2*expon(scale=1)" --compute "6*expon(scale=10)" --problem logreg
    stalegrad advise --n 8 --compute "2*expon(scale=1)" --compute "6*expon(scale=10)" --noise-ratio 4
    """
    if n is None:
        raise SpecError("--n is needed (or --system FILE)")
    Ks = parse_sweep("--K", K, int) if K is not None else [1, 2, 4, 8]
    if any(k < 1 for k in Ks):
        raise invalid("--K", K, "integers >= 1")
    cluster = build_systems(n, "1", tc, uplink, downlink, compute)
    if len(cluster) != 1:
        raise SpecError(f"--n and --tc must be single values for advise (one cluster), got {len(cluster)} systems")
    system = cluster[0]
    b_values = parse_sweep("--b", bs, int)
    if any(b < 1 for b in b_values):
        raise invalid("--b", bs, "integers >= 1")
    batch_laws = _batch_laws(compute_batch, system.n)
    tried = parse_sweep("--workers", sizes, int) if sizes else None
    if tried and any(not 1 <= m <= system.n for m in tried):
        raise invalid("--workers", sizes, f"worker counts from 1 to {system.n}")
    step_list = parse_sweep("--steps", steps, float) if steps else None
    if step_list and any(not (math.isfinite(s) and s > 0) for s in step_list):
        raise invalid("--steps", steps, "finite steps > 0")
    from ..train.policies import POLICIES

    policy_list = [x.strip() for x in policies.split(",") if x.strip()]
    if not policy_list or any(x not in POLICIES for x in policy_list):
        raise invalid("--policy", policies, f"a list of {', '.join(POLICIES)}")
    from ..advise.search import SEARCHED

    protocol_list = [x.strip() for x in protocols.split(",") if x.strip()]
    if not protocol_list or any(x not in SEARCHED for x in protocol_list):
        raise invalid("--protocols", protocols, f"a list of {', '.join(SEARCHED)}")
    if noise_ratio is not None and not (math.isfinite(noise_ratio) and noise_ratio >= 0):
        raise invalid("--noise-ratio", noise_ratio, "a finite number >= 0")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise invalid("--target", target, "a finite error > 0")
    if plot is not None:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    if problem is None:
        if noise_ratio is None:
            raise SpecError("--problem or --noise-ratio is needed (the noise ratio alone gives the theory's answer)")
        _theory_only(system, noise_ratio, budget_workers, as_json)
        return

    from ..advise import advise
    from ..streams import resolve_seed

    prob = load_problem(problem)
    goal = target if target is not None else 0.01 * float(prob.error(prob.init()))
    root = resolve_seed(seed)
    if seed is None and not as_json:
        click.echo(f"seed {root}", err=True)

    def say(text: str) -> None:  # progress on a terminal only (as every command's progress bar)
        if sys.stderr.isatty():
            click.echo(text, err=True)

    advice = advise(
        system, prob, goal, noise_ratio=noise_ratio, progress=say, workers=tried, Ks=Ks, bs=b_values,
        steps=step_list, policies=policy_list, protocols=protocol_list, budget_workers=budget_workers, seeds=seeds,
        validation=validation, max_updates=max_updates, seed=root, batch_laws=batch_laws,
    )  # fmt: skip
    result = advice.to_dict(problem)
    if plot:
        from ..advise.figure import plot_advice

        plot_advice(advice, plot)
    if as_json:
        emit_json(result)
        return
    rows = [r for r in result["rows"] if r["validated"]]  # the others' times are the halving's (optimistic)
    print_table(
        f"stalegrad advise (seed {root}; target {goal:.4g}; {result['configurations_screened']} configurations "
        f"screened, {result['replays']} replays, {advice.seconds:.1f} s)",
        [
            "rank",
            "protocol",
            "workers",
            "K",
            "R / q",
            "b",
            "step",
            "policy",
            "time to target",
            "95% interval",
            "vs naive",
            "E[tau]",
            "p95 tau",
            "rate",
            "wasted",
        ],
        [_cells(r) for r in rows] + [_cells(result["naive"], "naive")],
    )
    more = len(result["rows"]) - len(rows)
    click.echo(
        f"rows 1-{len(rows)}: the finalists and the naive choice, replayed again on {result['validation_seeds']} fresh "
        "replications ('vs naive': time / the naive choice's, geometric mean over them and 95% interval); the naive "
        "choice is recommended unless one beats it convincingly (the whole interval below 1); an interval up to "
        "'unreached': too many replications missed the target by the horizon for an upper bound"
        + (f"; --json also lists the halving's {more} other survivors" if more else "")
    )
    rec = result["recommended"]
    gain = result["gain_over_naive"]
    own = f", R = {rec['delay_threshold']}" if rec["delay_threshold"] is not None else ""
    if rec["cutoffs"] is not None:
        own = f", cutoffs {_fmt_list(rec['cutoffs'])} s"
    if result["naive_recommended"]:
        click.echo("no configuration beat the naive choice convincingly on the fresh replications:")
    click.echo(
        f"recommended: {rec['protocol']} on {_who(rec['workers'], system.n)}, "
        f"K = {rec['K']}{own}, b = {rec['b']}, "
        f"step {rec['step']:.4g} ({rec['policy']}): time to target {fmt(rec['time_to_target'], 2)}"
        + (
            f", {gain:.2f}x the naive choice (every worker, K = 1, its best step)"
            if gain and not result["naive_recommended"]
            else ""
        )
    )
    if result["theory_workers"] is not None:
        click.echo(
            f"fixed-time theory (Tyurin & Richtárik 2023): m* = {result['theory_workers']} workers for noise ratio "
            f"S = {result['noise_ratio']:.3g}"
        )
    click.echo(f"  train: {rec['commands']['train']}")
    run = rec["commands"]["run"]
    click.echo(
        f"  run:   {run}" if run else "  run:   (the real runtime makes k-batch-async with a constant step only)"
    )


def _batch_laws(texts: tuple[str, ...], n: int) -> list[Any] | None:
    """--compute-batch: one law of b per worker (refused beside an explicit --compute, which it replaces)."""
    if not texts:
        return None
    from click.core import ParameterSource

    from ..batch_law import parse_batch_law, per_worker

    ctx = click.get_current_context()
    explicit = ctx.get_parameter_source("compute_batch") not in (None, ParameterSource.DEFAULT)
    if explicit and ctx.get_parameter_source("compute") not in (None, ParameterSource.DEFAULT):
        raise invalid("--compute", ctx.params.get("compute"), "left out when --compute-batch is given (it replaces it)")
    return per_worker([parse_batch_law(t) for t in texts], n)


def _fmt_list(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def _own(r: dict[str, Any]) -> str:
    """Ringmaster's threshold R, or mindflayer's cutoff quantile q (each worker's cutoff), else -."""
    if r.get("delay_threshold") is not None:
        return f"R = {r['delay_threshold']}"
    return f"q = {r['cutoff_quantile']:g}" if r.get("cutoff_quantile") is not None else "-"


def _cells(r: dict[str, Any], rank: str | None = None) -> list[str]:
    lo, hi = r["time_to_target_ci95"]
    return [
        rank or str(r["rank"]),
        r["protocol"],
        str(r["n"]),
        str(r["K"]),
        _own(r),
        str(r["b"]),
        f"{r['step']:.4g}",
        r["policy"],
        fmt(r["time_to_target"], 2),
        f"{fmt(lo, 2)} - {fmt(hi, 2) if hi is not None or lo is None else 'unreached'}",
        _vs_naive(r),
        fmt(r["staleness_mean"], 2),
        fmt(r["staleness_p95"], 1),
        fmt(r["update_rate"], 3),
        f"{100 * r['wasted_compute']:.0f}%",
    ]


def _vs_naive(r: dict[str, Any]) -> str:
    """The geometric mean of the time-to-target ratio to the naive choice on the validation replications, with
    its 95% interval (``-``: not validated)."""
    if r.get("log_ratio_naive") is None:
        return "-"
    lo, hi = (math.exp(x) if x is not None else math.nan for x in r["log_ratio_naive_ci95"])
    return f"{math.exp(r['log_ratio_naive']):.2f} ({lo:.2f}-{hi:.2f})"


def _theory_only(system: Any, noise_ratio: float, budget_workers: int | None, as_json: bool) -> None:
    """``--noise-ratio`` without ``--problem``: the fixed-time theory's worker count and its time per m."""
    from ..advise import theory_workers

    means = list(system.means)
    choice = theory_workers(means, noise_ratio)
    cap = budget_workers or system.n
    m = min(range(1, cap + 1), key=lambda k: (choice.times[k - 1], k))
    result = {
        "theory_workers": m,
        "theory_worker_order": list(choice.order[:m]),
        "noise_ratio": noise_ratio,
        "theory_times": list(choice.times),
        "recommended": None,
        "system": system.to_dict(),
    }
    if as_json:
        emit_json(result)
        return
    print_table(
        f"fixed-time theory (Tyurin & Richtárik 2023), noise ratio S = {noise_ratio:g}: t(m) = (m + S) / "
        "sum of 1/mu over the m fastest",
        ["m", "slowest used (mean)", "t(m)", ""],
        [
            [str(k), f"{means[choice.order[k - 1]]:.4g}", f"{t:.4g}", "<- m*" if k == m else ""]
            for k, t in enumerate(choice.times[:cap], start=1)
        ],
    )
    click.echo(f"use the {m} fastest workers {list(choice.order[:m])} (give --problem to confirm by replay)")


def _who(workers: list[int], n: int) -> str:
    """The workers a recommendation uses, in words: all of them, or the fastest few (listed)."""
    return f"all {n} workers" if len(workers) == n else f"the {len(workers)} fastest workers {workers}"
