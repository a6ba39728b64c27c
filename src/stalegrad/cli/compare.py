"""``stalegrad compare``: several protocols on the same system, one table and one plot."""

from __future__ import annotations

from typing import Any

import click

from ..errors import SpecError
from .options import (
    IMAGE_SUFFIXES,
    build_systems,
    check_output_file,
    emit_json,
    fmt,
    print_caveats,
    print_table,
    progress_bar,
    system_options,
)
from .simulate import check_run_options, run_options


@click.command("compare")
@system_options
@run_options
def compare_command(
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
    """Compare protocols on one system: update rate, staleness, wasted and dropped work.

    --protocol defaults here to all five. Each protocol runs with the same seed.

    \b
    stalegrad compare --n 8 --K 4 --tc 1 --updates 50000 --seed 1 --plot compare.png
    stalegrad compare --n 8 --K 4 --protocol k-batch-async,k-async --staleness-bound 4
    """
    from ..experiments import compare_protocols, for_protocol, plot_protocols
    from ..spec import PROTOCOLS

    source = click.get_current_context().get_parameter_source("protocol")
    protocols = None if source == click.core.ParameterSource.DEFAULT else options["protocol"]
    systems = build_systems(**{**options, "protocol": (protocols or "k-batch-async").split(",")[0]})
    if len(systems) != 1:
        raise SpecError(f"--n, --K and --tc must be single values for compare (one system), got {len(systems)} systems")
    if trace_out is not None:
        raise SpecError("--trace-out saves one system's Trace: use simulate --protocol NAME --trace-out FILE")
    if plot:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    names = tuple(p.strip() for p in protocols.split(",")) if protocols else tuple(PROTOCOLS)
    batches = check_run_options([for_protocol(systems[0], name) for name in names], updates, warmup, batches, yes)
    with progress_bar() as report:
        points, root = compare_protocols(
            systems[0], updates, seed, names, warmup=warmup, batches=batches, progress=report
        )
    rows = [{**p.row(), "root_seed": root} for p in points]
    if plot:
        plot_protocols(points, plot, root)
    if as_json:
        emit_json({"rows": rows})
        return
    print_table(
        f"stalegrad compare (seed {root}; {updates} updates each)",
        [
            "protocol",
            "n",
            "K",
            "rate sim",
            "rate theory",
            "E[tau] sim",
            "E[tau] theory",
            "p95 sim",
            "p95 theory",
            "wasted",
            "dropped",
        ],
        [
            [
                r["protocol"],
                str(r["n"]),
                str(r["K"]),
                fmt(r["update_rate"]),
                fmt(r["update_rate_exact"]),
                fmt(r["staleness_mean"]),
                fmt(r["staleness_exact"]),
                str(r["staleness_p95"]),
                "-" if r["staleness_p95_exact"] is None else str(r["staleness_p95_exact"]),
                f"{100 * r['wasted_compute']:.1f}%",
                f"{100 * r['dropped_fraction']:.1f}%",
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
