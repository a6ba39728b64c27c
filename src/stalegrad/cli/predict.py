"""``stalegrad predict``: the closed-form numbers for one system or a sweep."""

from __future__ import annotations

from typing import Any

import click

from .options import build_systems, emit_json, fmt, print_caveats, print_table, system_options


@click.command("predict")
@system_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a 'rows' list for a sweep).")
def predict_command(as_json: bool, **options: Any) -> None:
    """Update rate, the paper's Theorem 2 and the exact limit of the mean staleness.

    \b
    stalegrad predict --n 16 --K 10 --tc 1 --compute "shifted_exponential(alpha=1, rate=2/3)"
    stalegrad predict --n 10:20 --K 10 --tc 1 --json
    stalegrad predict --n 8 --K 4 --tc 1 --protocol k-batch-async,k-sync,k-batch-sync
    """
    from ..experiments.vocabulary import shared_row
    from ..theory import predict

    systems = build_systems(**options)
    rows: list[dict[str, Any]] = []
    for s in systems:
        p = predict(s)
        rows.append({**shared_row(s, seed=None, prediction=p), **p.to_dict(), "system": s.to_dict()})
    if as_json:
        emit_json(rows[0] if len(rows) == 1 else {"rows": rows})
        return
    print_table(
        "stalegrad predict (limits as t -> infinity)",
        ["protocol", "n", "K", "tc", "update rate /s", "E[tau] paper", "E[tau] exact", "paper - exact", "compute"],
        [
            [
                r["protocol"],
                str(r["n"]),
                str(r["K"]),
                fmt(r["tc"], 3),
                fmt(r["update_rate_exact"]),
                fmt(r["staleness_paper"]),
                fmt(r["staleness_exact"]),
                fmt(r["staleness_gap"]),
                " + ".join(r["system"]["compute"]),
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
