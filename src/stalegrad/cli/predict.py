"""``stalegrad predict``: the closed-form numbers for one system or a sweep."""

from __future__ import annotations

from typing import Any

import click

from .options import build_systems, emit_json, fmt, print_caveats, print_table, system_options


@click.command("predict")
@system_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a 'rows' list for a sweep).")
def predict_command(
    n: str, K: str, tc: str, uplink: float | None, downlink: float | None, compute: tuple[str, ...], as_json: bool
) -> None:
    """Update rate, the paper's Theorem 2 and the exact limit of the mean staleness.

    \b
    stalegrad predict --n 16 --K 10 --tc 1 --compute "shifted_exponential(alpha=1, rate=2/3)"
    stalegrad predict --n 10:20 --K 10 --tc 1 --json
    """
    from ..theory import predict

    systems = build_systems(n, K, tc, uplink, downlink, compute)
    rows: list[dict[str, Any]] = []
    for s in systems:
        p = predict(s)
        rows.append({"system": s.to_dict(), "n": s.n, "K": s.K, "tc": s.tc, **p.to_dict()})
    if as_json:
        emit_json(rows[0] if len(rows) == 1 else {"rows": rows})
        return
    print_table(
        "stalegrad predict (K-batch-async; limits as t -> infinity)",
        ["n", "K", "tc", "update rate /s", "E[tau] paper", "E[tau] exact", "paper - exact", "compute"],
        [
            [
                str(r["n"]),
                str(r["K"]),
                fmt(r["tc"], 3),
                fmt(r["update_rate"]),
                fmt(r["staleness_paper"]),
                fmt(r["staleness_exact"]),
                fmt(r["gap"]),
                " + ".join(r["system"]["compute"]),
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
