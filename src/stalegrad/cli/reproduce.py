"""``stalegrad reproduce``: the reference paper's figures and tables, written to a folder."""

from __future__ import annotations

import click

from .options import check_output_dir
from .output import emit_json, fmt, print_table, progress_bar

_CHOICES = ["fig1", "fig2", "section4", "fig3", "all", "fig3-mlp"]


@click.command("reproduce")
@click.argument("targets", nargs=-1, type=click.Choice(_CHOICES), metavar="[fig1|fig2|section4|fig3|all|fig3-mlp]...")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default="results",
    show_default=True,
    help="Folder for the CSV, PNG and JSON files.",
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True, help="Root random seed.")
@click.option("--quick", is_flag=True, help="Small runs (seconds), for a smoke test; numbers are less precise.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
def reproduce_command(targets: tuple[str, ...], out: str, seed: int, quick: bool, as_json: bool) -> None:
    """Reproduce the paper's Figure 1, Figure 2, Section 4 comparison and Figure 3 (default: all).
    fig3-mlp (run only when named; needs torch) repeats Figure 3 on a small MLP on the 8x8 digits.

    \b
    stalegrad reproduce all --out results/
    stalegrad reproduce fig3-mlp --out results/
    """
    from ..experiments import reproduce

    check_output_dir("--out", out)
    with progress_bar() as report:
        found = reproduce(list(targets) or ["all"], out, seed=seed, quick=quick, progress=report)
    if as_json:
        emit_json(found)
        return
    if "fig1" in found:
        print_table(
            "Figure 1: K = 10, Tc = 1, X = 1 + Exp(lambda = 2/3); simulation vs limits",
            ["n", "E[tau] sim", "95% CI +-", "exact", "paper", "(sim-exact)/CI", "(paper-exact)/CI"],
            [
                [
                    str(r["n"]),
                    fmt(r["staleness_mean"]),
                    fmt(r["staleness_ci95"]),
                    fmt(r["staleness_exact"]),
                    fmt(r["staleness_paper"]),
                    fmt((r["staleness_mean"] - r["staleness_exact"]) / r["staleness_ci95"], 2),
                    fmt((r["staleness_paper"] - r["staleness_exact"]) / r["staleness_ci95"], 1),
                ]
                for r in found["fig1"]
            ],
        )
        inside = sum(r["exact_in_ci"] for r in found["fig1"])
        click.echo(
            f"exact limit inside the 95% CI at {inside} of {len(found['fig1'])} points (about 1 in 20 misses by "
            f"chance); the paper's limit at {sum(r['paper_in_ci'] for r in found['fig1'])}"
        )
    if "fig2" in found:
        f2 = found["fig2"]
        print_table(
            f"Figure 2: n = 10, K = 5, Tc = 1; transient over {f2['replications']} replications",
            ["tau(1)", "tau(2)", "tau(3)", "mean of updates 26-50", "exact limit", "paper limit"],
            [
                [
                    fmt(f2["first_updates"][0], 3),
                    fmt(f2["first_updates"][1], 3),
                    fmt(f2["first_updates"][2], 3),
                    fmt(f2["mean_updates_26_50"]),
                    fmt(f2["staleness_exact"]),
                    fmt(f2["staleness_paper"]),
                ]
            ],
        )
    if "section4" in found:
        print_table(
            "Section 4: equal update rate and per-update minibatch, n = 10, Tc = 0",
            ["label", "E[tau] sim", "95% CI +-", "exact", "paper", "rate sim", "rate theory"],
            [
                [
                    r["label"],
                    fmt(r["staleness_mean"]),
                    fmt(r["staleness_ci95"]),
                    fmt(r["staleness_exact"]),
                    fmt(r["staleness_paper"]),
                    fmt(r["update_rate"]),
                    fmt(r["update_rate_exact"]),
                ]
                for r in found["section4"]
            ],
        )
    if "fig3" in found:
        f3 = found["fig3"]
        print_table(
            f"Figure 3: SGD on least squares along the two Section 4 timelines, {f3['seeds']} seeds, "
            f"horizon {f3['horizon']:.0f} s",
            ["ordering holds", "time to target: case 2 / case 1", "late error: case 2 / case 1", "case 1 below"],
            [
                [
                    f"{f3['ordering_holds']} of {f3['seeds']} seeds",
                    f"{fmt(f3['time_ratio_geomean'], 2)}x (min {fmt(f3['time_ratio_min'], 2)}x)",
                    f"{fmt(f3['late_error_ratio_geomean'], 2)}x (min {fmt(f3['late_error_ratio_min'], 2)}x)",
                    f">= {100 * f3['fraction_below_min']:.0f}% of the time",
                ]
            ],
        )
    if "fig3-mlp" in found:
        f = found["fig3-mlp"]

        def ratio(name: str) -> str:  # geometric mean over seeds [95% CI]
            ci = f[f"{name}_ci95"]
            return "-" if ci is None else f"{fmt(f[f'{name}_geomean'], 2)}x [{fmt(ci[0], 2)}, {fmt(ci[1], 2)}]"

        print_table(
            f"Figure 3 on an MLP (8x8 digits): {f['seeds']} seeds, step {f['step']:g}, target loss "
            f"{f['target_loss']:.3g}, horizon {f['horizon']:.0f} s; geometric means [95% CI]",
            ["ordering holds", "time to target: case 2 / case 1", "late loss: case 2 / case 1", "test accuracy 1 / 2"],
            [
                [
                    f"{f['ordering_holds']} of {f['seeds']} seeds",
                    ratio("time_ratio")
                    if f["time_ratio_ci95"] is not None
                    else f"target reached: case 1 {f['reached_case1']}, case 2 {f['reached_case2']} of {f['seeds']}",
                    ratio("late_loss_ratio"),
                    f"{fmt(f['test_accuracy_case1_mean'], 3)} / {fmt(f['test_accuracy_case2_mean'], 3)}",
                ]
            ],
        )
    click.echo(f"files written to {out}/ (CSV, PNG with a JSON of its numbers, summary.json)")
