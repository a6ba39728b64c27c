"""``stalegrad train``: SGD replayed along simulated timelines; error against wall-clock time."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import click

from ..errors import SpecError
from .options import (
    PROBLEM_HELP,
    build_systems,
    emit_json,
    fmt,
    load_problem,
    parse_sweep,
    print_table,
    progress_bar,
    system_options,
)


@click.command("train")
@click.option(
    "--problem",
    default="linreg",
    show_default=True,
    help=PROBLEM_HELP,
)
@system_options
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
    uplink: str | None,
    downlink: str | None,
    compute: tuple[str, ...],
    b: str,
    scale_compute: bool,
    updates: int,
    step: float,
    policy: str,
    dc: float | None,
    aggregate: str,
    target: float | None,
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
    """
    from ..distributions import scaled
    from ..sim import simulate
    from ..streams import derive_seed, resolve_seed
    from ..train import delay_compensation, get_policy, replay

    bs = parse_sweep("--b", b, int)
    if min(bs) < 1:
        raise SpecError(f"--b must be integers >= 1, got {b!r}")
    policies = [p.strip() for p in policy.split(",")]
    for p in policies:
        get_policy(p)
    if traces:
        from ..artefacts import read_trace

        if n is not None or K is not None:
            raise SpecError("--trace replays saved traces: leave out --n and --K (the traces record their systems)")
        sources: list[Any] = [(Path(p).name, read_trace(p)) for p in traces]
    else:
        sources = build_systems(n, K, tc, uplink, downlink, compute, **protocol_options)
    prob = load_problem(problem, dim=dim, samples=samples, noise=noise, l2=l2)
    correction = None if dc is None else delay_compensation(dc)
    root = resolve_seed(seed)
    configs = list(itertools.product(sources, bs, policies))
    results = []
    with progress_bar() as report:
        for k, (source, b_, pol) in enumerate(configs):
            extra = "" if dc is None else f" dc={dc:g}"
            if traces:
                name, trace = source
                system = trace.system
                label = f"{name} b={b_} {pol}{extra}"
            else:
                base = source
                system = base.replace(compute=[scaled(m, b_) for m in base.compute]) if scale_compute else base
                label = f"n={system.n} K={system.K} b={b_} tc={system.tc:g} {pol}{extra}"
                if system.protocol != "k-batch-async" or len({s.protocol for s in sources}) > 1:
                    label = f"{system.protocol} {label}"
                trace = simulate(system, updates, seed=derive_seed(root, k, 0))
            cb = None if report is None else (lambda d, t, what=label: report(what, d, t))
            res = replay(
                trace, prob, b=b_, step=step, policy=pol, correction=correction, aggregate=aggregate,
                seed=derive_seed(root, k, 1), progress=cb,
            )  # fmt: skip
            results.append((label, system, res))
    goal = target if target is not None else 0.01 * float(results[0][2].errors[0])
    rows = []
    for label, _, res in results:
        rows.append(
            {
                "label": label,
                **res.to_dict(),
                "time_to_target": res.time_to(goal),
                "target": goal,
                "root_seed": root,
            }
        )
    if out:
        _write(Path(out), results, rows, root, goal)
    if as_json:
        emit_json({"target": goal, "seed": root, "rows": rows})
        return
    print_table(
        f"stalegrad train ({prob!r}, step {step:g}, seed {root}; target error {goal:.4g})",
        ["label", "E[tau]", "max tau", "updates", "time", "time to target", "final error"],
        [
            [
                r["label"],
                fmt(r["mean_staleness"], 2),
                str(r["max_staleness"]),
                str(r["updates"]),
                fmt(r["time"], 1),
                fmt(r["time_to_target"], 1) if r["time_to_target"] is not None else "not reached",
                f"{r['final_error']:.4g}",
            ]
            for r in rows
        ],
    )
    if out:
        click.echo(f"files written to {out}/ (train.csv, train.png with train.json beside)")


def _write(out: Path, results: list[Any], rows: list[dict[str, Any]], root: int, goal: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..artefacts import metadata, write_csv, write_figure
    from ..plots import error_vs_time

    meta = metadata(root, {label: system for label, system, _ in results}, target_error=goal, rows=rows)
    table = [
        [label, int(u), float(t), float(e)]
        for label, _, res in results
        for u, t, e in zip(res.updates, res.times, res.errors, strict=True)
    ]
    write_csv(out / "train.csv", ["label", "update", "time", "error"], table, meta)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, _, res in results:
        diverged = not res.final_error <= res.errors[0]  # NaN too
        text = f"{label}, mean τ = {res.mean_staleness:.2f}" + (" (diverged)" if diverged else "")
        error_vs_time(res.times, res.errors, label=text, ax=ax)
    ax.axhline(goal, color="gray", ls=":", lw=1, label=f"target {goal:.3g}")
    ax.set_ylim(top=10 * max(float(res.errors[0]) for _, _, res in results))
    ax.legend(fontsize="small")
    write_figure(fig, out / "train.png", meta)
    plt.close(fig)
