"""``stalegrad predict``: the closed-form numbers for one system or a sweep."""

from __future__ import annotations

from typing import Any

import click

from ..errors import invalid
from .options import build_systems, protocol_options, system_options
from .output import emit_json, fmt, print_caveats, print_table


@click.command("predict")
@system_options
@protocol_options
@click.option(
    "--quantile",
    "quantiles",
    type=float,
    multiple=True,
    metavar="Q",
    help="Also the Q-quantile of the staleness (0 < Q < 1; repeat for several).",
)
@click.option("--tail", "tails", type=int, multiple=True, metavar="S", help="Also P(staleness > S) (repeatable).")
@click.option(
    "--drop-at-most",
    type=float,
    default=None,
    metavar="P",
    help="The smallest staleness bound that drops at most a fraction P of the gradients.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (a 'rows' list for a sweep).")
def predict_command(
    quantiles: tuple[float, ...], tails: tuple[int, ...], drop_at_most: float | None, as_json: bool, **options: Any
) -> None:
    """Update rate, the paper's Theorem 2, the exact limit of the mean staleness, and the whole staleness
    distribution (p50, p95, p99, per worker class) where it can be predicted.

    With --staleness-bound S, the fraction of gradients that bound would drop (an upper bound: dropped
    gradients do not count towards K, so the bounded system updates more slowly and drops fewer).

    \b
    stalegrad predict --n 16 --K 10 --tc 1 --compute "shifted_exponential(alpha=1, rate=2/3)"
    stalegrad predict --n 10:20 --K 10 --tc 1 --json
    stalegrad predict --n 8 --K 4 --tc 1 --protocol k-batch-async,k-sync,k-batch-sync
    stalegrad predict --n 16 --K 10 --tc 1 --quantile 0.999 --tail 8 --drop-at-most 0.01
    """
    from ..experiments.vocabulary import shared_row, staleness_law
    from ..theory import predict

    for q in quantiles:
        if not 0.0 < q < 1.0:
            raise invalid("--quantile", q, "a level strictly between 0 and 1")
    for t in tails:
        if t < 0:
            raise invalid("--tail", t, "a staleness >= 0")
    if drop_at_most is not None and not 0.0 <= drop_at_most < 1.0:
        raise invalid("--drop-at-most", drop_at_most, "a fraction from 0 to 1 (1 excluded)")
    systems = build_systems(**options)
    rows: list[dict[str, Any]] = []
    for s in systems:
        p = predict(s)
        row = {**shared_row(s, seed=None, prediction=p), **p.to_dict(), "system": s.to_dict()}
        row.update(staleness_law(s, quantiles=quantiles, tails=tails, drop_at_most=drop_at_most))
        rows.append(row)
    if as_json:
        emit_json(rows[0] if len(rows) == 1 else {"rows": rows})
        return
    print_table(
        "stalegrad predict (limits as t -> infinity)",
        ["protocol", "n", "K", "tc", "update rate /s", "E[tau] paper", "E[tau] exact", "p50", "p95", "p99", "compute"],
        [
            [
                r["protocol"],
                str(r["n"]),
                str(r["K"]),
                fmt(r["tc"], 3),
                fmt(r["update_rate_exact"]),
                fmt(r["staleness_paper"]),
                fmt(r["staleness_exact"]),
                _int(r["staleness_p50"]),
                _int(r["staleness_p95"]),
                _int(r["staleness_p99"]),
                " + ".join(r["system"]["compute"]),
            ]
            for r in rows
        ],
    )
    print_caveats(rows)
    for r in rows:
        if len(r["staleness_classes"]) > 1:
            for c in r["staleness_classes"]:
                click.echo(
                    f"  {r['protocol']} n={r['n']} K={r['K']}: workers {_span(c['workers'])} ({c['model']}): "
                    f"mean {c['mean']:.4f}, p50 {c['p50']}, p95 {c['p95']}, p99 {c['p99']}"
                )
        for key in ("staleness_quantiles", "staleness_tail"):
            for level, value in (r.get(key) or {}).items():
                what = f"quantile {level}" if key == "staleness_quantiles" else f"P(tau > {level})"
                click.echo(f"  {what}: {value if value is not None else '-'}")
        if r.get("dropped_fraction_bound") is not None:
            click.echo(
                f"  a staleness bound of {r['staleness_bound']} drops at most {100 * r['dropped_fraction_bound']:.3g}%"
                " of the gradients (fewer in fact: dropped gradients slow the updates)"
            )
        if r.get("smallest_bound") is not None:
            click.echo(f"  the smallest bound that drops at most {drop_at_most:g}: {r['smallest_bound']}")


def _int(value: int | None) -> str:
    return "-" if value is None else str(value)


def _span(workers: list[int]) -> str:
    return f"{workers[0]}..{workers[-1]}" if workers == list(range(workers[0], workers[-1] + 1)) else str(workers)
