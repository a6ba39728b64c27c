"""``stalegrad compare``: several protocols on the same system, one table and one plot."""

from __future__ import annotations

from typing import Any

import click

from .options import emit_json, fmt, print_caveats, print_table, system_options
from .simulate import run_options, simulate_rows


@click.command("compare")
@system_options
@run_options
def compare_command(
    updates: int,
    seed: int | None,
    warmup: int | None,
    batches: int,
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
    from ..errors import SpecError
    from ..experiments import plot_protocols
    from ..streams import resolve_seed
    from .options import parse_sweep

    source = click.get_current_context().get_parameter_source("protocol")
    if source == click.core.ParameterSource.DEFAULT:
        options["protocol"] = "k-batch-async,k-async,k-sync,k-batch-sync,sync"
    for name in ("n", "K", "tc"):
        if len(parse_sweep(f"--{name}", options[name], float)) != 1:
            raise SpecError(f"--{name} must be a single value for compare (one system), got {options[name]!r}")
    if trace_out is not None:
        raise SpecError("--trace-out saves one system's Trace: use simulate --protocol NAME --trace-out FILE")
    root = resolve_seed(seed)
    rows, points = [], []
    for proto in options["protocol"].split(","):
        for_proto = dict(options, protocol=proto.strip())
        if proto.strip() == "sync":
            for_proto["K"] = options["n"]  # the sync protocol takes every worker's gradient
        r, p, _ = simulate_rows(for_proto, updates, root, warmup, batches)
        rows += r
        points += p
    if plot:
        plot_protocols(points, plot, root)
    if as_json:
        emit_json({"rows": rows})
        return
    print_table(
        f"stalegrad compare (seed {root}; {updates} updates each)",
        ["protocol", "n", "K", "rate sim", "rate theory", "E[tau] sim", "E[tau] theory", "p95", "wasted", "dropped"],
        [
            [
                r["protocol"],
                str(r["n"]),
                str(r["K"]),
                fmt(r["update_rate"]),
                fmt(r["update_rate_theory"]),
                fmt(r["staleness_mean"]),
                fmt(r["staleness_exact"]),
                str(r["staleness_p95"]),
                f"{100 * r['wasted_fraction']:.1f}%",
                f"{100 * r['dropped_fraction']:.1f}%",
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
