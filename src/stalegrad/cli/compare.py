"""``stalegrad compare``: several protocols on the same system, one table and one plot."""

from __future__ import annotations

from typing import Any

import click

from ..errors import SpecError
from .options import IMAGE_SUFFIXES, build_systems, check_output_file, protocol_options, system_options
from .output import emit_json, fmt, print_caveats, print_table, progress_bar
from .simulate import check_run_options, run_options


@click.command("compare")
@system_options
@protocol_options
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

    --protocol defaults here to the five of Dutta et al. (2018); rennala, ringmaster (with --delay-threshold) and
    mindflayer (with --cutoff) join them when listed. Each protocol runs with the same seed.

    \b
    stalegrad compare --n 8 --K 4 --tc 1 --updates 50000 --seed 1 --plot compare.png
    stalegrad compare --n 8 --K 4 --protocol k-batch-async,k-async --staleness-bound 4
    stalegrad compare --n 8 --K 4 --compute "4*expon(scale=1)" --compute "4*expon(scale=10)" --workers fastest:4 \\
        --protocol k-batch-async,rennala,ringmaster,mindflayer --delay-threshold 4 --cutoff 3
    """
    from ..errors import invalid
    from ..experiments import compare_protocols, for_protocol, plot_protocols
    from ..spec import DUTTA_PROTOCOLS, PROTOCOLS

    source = click.get_current_context().get_parameter_source("protocol")
    protocols = None if source == click.core.ParameterSource.DEFAULT else options["protocol"]
    names = tuple(p.strip() for p in protocols.split(",")) if protocols else DUTTA_PROTOCOLS
    for name in names:
        if name not in PROTOCOLS:
            raise invalid("--protocol", name, f"one of {', '.join(PROTOCOLS)} (comma-separated for several)")
    extra = {"delay_threshold": options.pop("delay_threshold"), "cutoffs": options.pop("cutoff")}
    if extra["delay_threshold"] is not None and "ringmaster" not in names:
        raise invalid("--delay-threshold", extra["delay_threshold"], "given with --protocol ringmaster only")
    if extra["cutoffs"] is not None and "mindflayer" not in names:
        raise invalid("--cutoff", extra["cutoffs"], "given with --protocol mindflayer only")
    systems = build_systems(**{**options, "protocol": "k-batch-async"})
    if len(systems) != 1:
        raise SpecError(f"--n, --K and --tc must be single values for compare (one system), got {len(systems)} systems")
    if trace_out is not None:
        raise SpecError("--trace-out saves one system's Trace: use simulate --protocol NAME --trace-out FILE")
    if plot:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    chosen = [for_protocol(systems[0], name, **extra) for name in names]
    batches = check_run_options(chosen, updates, warmup, batches, yes)
    with progress_bar() as report:
        points, root = compare_protocols(
            systems[0], updates, seed, names, **extra, warmup=warmup, batches=batches, progress=report
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
            "workers",
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
                "all" if r["active_workers"] is None else ",".join(map(str, r["active_workers"])),
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
