"""``stalegrad simulate``: exact simulation of the system's timing, with theory beside."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from ..errors import SpecError, invalid
from .options import IMAGE_SUFFIXES, build_systems, check_output_file, protocol_options, system_options
from .output import emit_json, fmt, print_caveats, print_table, progress_bar


def run_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """--updates, --seed, --warmup, --batches, --plot, --json (shared with ``compare``)."""
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a 'rows' list for a sweep).")(f)
    f = click.option(
        "--trace-out",
        type=click.Path(dir_okay=False),
        default=None,
        help="Also save every gradient (the Trace) to this .csv or .parquet file (one system only); "
        "`stalegrad train --trace FILE` replays SGD along it.",
    )(f)
    f = click.option(
        "--plot",
        type=click.Path(dir_okay=False),
        default=None,
        help="Write a PNG (.png; and a JSON of its numbers beside it).",
    )(f)
    f = click.option(
        "--batches",
        type=click.IntRange(min=2),
        default=None,
        help="Batch means for the 95% confidence interval (default 32, fewer for a short run).",
    )(f)
    f = click.option(
        "--yes",
        is_flag=True,
        help="Run even when the estimated work is above the limit (10 minutes, or a Trace over 8 GiB).",
    )(f)
    f = click.option(
        "--warmup",
        type=click.IntRange(min=0),
        default=None,
        help="Updates left out of the steady-state estimate (default: a tenth of the run).",
    )(f)
    f = click.option(
        "--seed",
        type=click.IntRange(min=0),
        default=None,
        help="Random seed (default: fresh entropy, printed so the run can be repeated).",
    )(f)
    f = click.option(
        "--updates",
        type=click.IntRange(min=1),
        default=200_000,
        show_default=True,
        help="Updates to simulate (each takes K gradients).",
    )(f)
    return f


def check_run_options(
    systems: list[Any], updates: int, warmup: int | None, batches: int | None, yes: bool, keep_trace: bool = False
) -> int:
    """Refuse, before any work, a run that cannot be estimated or cannot finish; return the batches to use."""
    from ..sim.cost import estimate

    warm = updates // 10 if warmup is None else warmup
    if warm >= updates - 1:
        raise invalid("--warmup", warm, f"less than --updates - 1 = {updates - 1} (two updates must remain)")
    if batches is None:
        batches = min(32, updates - warm)
    elif batches > updates - warm:
        raise invalid("--batches", batches, f"at most the {updates - warm} updates after the warm-up")
    for system in systems:
        why = estimate(system, updates, keep_trace=keep_trace).too_large()
        if why and not yes:
            raise SpecError(
                f"--updates {updates} with K = {system.K} is {why}, above the limit: lower --updates or add --yes"
            )
    return batches


def simulate_rows(
    options: dict[str, Any],
    updates: int,
    seed: int | None,
    warmup: int | None,
    batches: int | None,
    trace_out: str | None = None,
    yes: bool = False,
) -> tuple[list[dict[str, Any]], list[Any], int]:
    """Simulate every system of the options' sweep; return the result rows, the points and the root seed."""
    from ..experiments import simulate_points

    systems = build_systems(**options)
    if trace_out is not None and len(systems) != 1:
        raise SpecError(f"--trace-out saves one system's Trace, but the options describe {len(systems)} systems")
    if trace_out is not None:
        check_output_file("--trace-out", trace_out, (".csv", ".parquet"))
    batches = check_run_options(systems, updates, warmup, batches, yes, keep_trace=trace_out is not None)
    with progress_bar() as report:
        points, root = simulate_points(
            systems, updates, seed, warmup=warmup, batches=batches, keep_trace=bool(trace_out), progress=report
        )
    if trace_out is not None and points[0].trace is not None:
        from ..trace_io import write_trace

        write_trace(points[0].trace, trace_out)
    rows = [{**p.row(), "root_seed": root} for p in points]
    return rows, points, root


@click.command("simulate")
@system_options
@protocol_options
@run_options
def simulate_command(
    updates: int,
    seed: int | None,
    warmup: int | None,
    batches: int | None,
    yes: bool,
    plot: str | None,
    trace_out: str | None,
    as_json: bool,
    **options: Any,
) -> None:
    """Simulate the system and estimate its steady-state staleness (95% CI), with the theory beside.

    The paper's protocol with fixed delays runs on the fast simulator; other protocols, random delays and a
    staleness bound run on the event engine.

    \b
    stalegrad simulate --n 16 --K 10 --tc 1 --updates 200000 --seed 1 --json
    stalegrad simulate --n 6 --K 3 --compute "3*expon(scale=1)" --compute "3*expon(scale=3)"
    stalegrad simulate --n 8 --K 4 --uplink 0.5 --downlink "expon(scale=0.5)" --plot hist.png
    stalegrad simulate --n 8 --K 4 --compute "4*expon(scale=1)" --compute "4*expon(scale=10)" \\
        --protocol rennala --workers fastest:4
    stalegrad simulate --n 8 --K 1 --protocol ringmaster --delay-threshold 4
    """
    from ..experiments import plot_points

    if plot:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    rows, points, root = simulate_rows(options, updates, seed, warmup, batches, trace_out, yes)
    if plot:
        plot_points(points, plot, root)
    if as_json:
        emit_json(rows[0] if len(rows) == 1 else {"rows": rows})
        return
    print_table(
        f"stalegrad simulate (seed {root}; {updates} updates each, first {rows[0]['warmup_updates']} left out)",
        [
            "protocol",
            "n",
            "K",
            "tc",
            "E[tau] sim",
            "95% CI +-",
            "E[tau] exact",
            "E[tau] paper",
            "p95",
            "max",
            "rate sim",
            "rate theory",
            "wasted",
            "seconds",
        ],
        [
            [
                r["protocol"],
                str(r["n"]),
                str(r["K"]),
                fmt(r["tc"], 3),
                fmt(r["staleness_mean"]),
                fmt(r["staleness_ci95"]),
                fmt(r["staleness_exact"]),
                fmt(r["staleness_paper"]),
                str(r["staleness_p95"]),
                str(r["staleness_max"]),
                fmt(r["update_rate"]),
                fmt(r["update_rate_exact"]),
                f"{100 * r['wasted_compute']:.1f}%",
                fmt(r["seconds"], 2),
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
