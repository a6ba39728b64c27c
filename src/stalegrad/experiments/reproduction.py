"""``reproduce``: run the paper's experiments and write their files (CSV, PNG and JSON, each with its metadata)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..artefacts import metadata, write_csv, write_figure, write_json
from ..errors import invalid
from ..streams import resolve_seed
from .paper import FIG3_PROBLEM, FIG3_STEP, FIG3_TARGET, Fig3, fig1, fig2, fig3, section4
from .points import Report

__all__ = ["SIZES", "TARGETS", "reproduce"]

#: What ``reproduce`` knows, in the order ``all`` runs them.
TARGETS = ("fig1", "fig2", "section4", "fig3")
#: Targets run only when named (not by ``all``): beyond the paper, and slower. fig3-mlp needs torch.
EXTRA_TARGETS = ("fig3-mlp",)


#: Run sizes: the full reproduction and a quick one (for smoke tests).
SIZES = {
    False: {
        "fig1_updates": 1_000_000,
        "fig2_replications": 5000,
        "section4_updates": 1_000_000,
        "fig3_updates": 1000,
        "fig3_seeds": 5,
        "fig3_mlp_updates": 2000,
        "fig3_mlp_seeds": 5,
    },
    True: {
        "fig1_updates": 20_000,
        "fig2_replications": 100,
        "section4_updates": 10_000,
        "fig3_updates": 300,
        "fig3_seeds": 3,
        "fig3_mlp_updates": 150,
        "fig3_mlp_seeds": 2,
    },
}

_POINT_COLUMNS = [
    "label",
    "protocol",
    "n",
    "K",
    "tc",
    "seed",
    "staleness_mean",
    "staleness_ci95",
    "staleness_paper",
    "staleness_exact",
    "exact_in_ci",
    "paper_in_ci",
    "update_rate",
    "update_rate_exact",
    "staleness_p95",
    "staleness_max",
    "warmup_updates",
    "updates",
    "gradients",
    "seconds",
]


def reproduce(
    targets: Sequence[str],
    out: str | Path,
    *,
    seed: int | None = 1,
    quick: bool = False,
    progress: Report | None = None,
) -> dict[str, Any]:
    """Run the named targets (``fig1``, ``fig2``, ``section4``, ``fig3``, ``all`` of these, or ``fig3-mlp``),
    write their files into ``out``, and return what was found (also written as ``out/summary.json``)."""
    wanted: list[str] = []
    for t in targets:
        for name in TARGETS if t == "all" else [t]:
            if name not in TARGETS + EXTRA_TARGETS:
                raise invalid("target", t, f"one of {', '.join(TARGETS)} or all, or {', '.join(EXTRA_TARGETS)}")
            if name not in wanted:
                wanted.append(name)
    if "fig3-mlp" in wanted:  # before any work: torch is an optional extra
        from ..train.torch_problems import require_torch

        require_torch()
    seed = resolve_seed(seed)
    sizes = SIZES[quick]
    out = Path(out)
    from ..plots import figure, residuals_vs_n, staleness_vs_n, transient_curve

    found: dict[str, Any] = {"seed": seed, "quick": quick}
    if "fig1" in wanted:
        points = fig1(sizes["fig1_updates"], seed, progress=progress)
        rows = [p.row() for p in points]
        meta = metadata(seed, {"n=10": points[0].system}, target="fig1", sizes=sizes, note="n varies 10..20")
        write_csv(out / "fig1.csv", _POINT_COLUMNS, [[r[c] for c in _POINT_COLUMNS] for r in rows], meta)
        fig, (ax, ax2) = figure(2, 1, figsize=(6.4, 6.4), sharex=True, height_ratios=(2, 1))
        columns = [
            [r["n"] for r in rows],
            [r["staleness_mean"] for r in rows],
            [r["staleness_ci95"] for r in rows],
            [r["staleness_paper"] for r in rows],
            [r["staleness_exact"] for r in rows],
        ]
        staleness_vs_n(*columns, title="K = 10, Tc = 1, X = 1 + Exp(2/3)", ax=ax)
        residuals_vs_n(*columns, ax=ax2)
        ax.set_xlabel("")
        write_figure(fig, out / "fig1.png", {**meta, "rows": rows})
        found["fig1"] = rows
    if "fig2" in wanted:
        system, tr, pred = fig2(sizes["fig2_replications"], 50, seed, progress=progress)
        meta = metadata(seed, {"fig2": system}, target="fig2", sizes=sizes)
        write_csv(
            out / "fig2.csv",
            ["update", "staleness_mean", "staleness_ci95", "staleness_paper", "staleness_exact"],
            [
                [u + 1, m, c, pred.staleness_paper, pred.staleness_exact]
                for u, (m, c) in enumerate(zip(tr.mean, tr.ci95, strict=True))
            ],
            meta,
        )
        fig, ax = figure()
        transient_curve(
            tr,
            paper=pred.staleness_paper,
            exact=pred.staleness_exact,
            title="n = 10, K = 5, Tc = 1, X = 1 + Exp(rate 2/3) (the paper's)",
            ax=ax,
        )
        write_figure(fig, out / "fig2.png", {**meta, "transient": tr.to_dict(), "theory": pred.to_dict()})
        late = tr.mean[25:]
        found["fig2"] = {
            "replications": tr.replications,
            "first_updates": tr.mean[:3].tolist(),
            "mean_updates_26_50": float(late.mean()),
            "staleness_paper": pred.staleness_paper,
            "staleness_exact": pred.staleness_exact,
        }
    if "section4" in wanted:
        points = section4(sizes["section4_updates"], seed, progress=progress)
        rows = [p.row() for p in points]
        meta = metadata(seed, {p.label: p.system for p in points}, target="section4", sizes=sizes)
        write_csv(out / "section4.csv", _POINT_COLUMNS, [[r[c] for c in _POINT_COLUMNS] for r in rows], meta)
        found["section4"] = rows
    if "fig3" in wanted:
        found["fig3"] = _write_fig3(fig3(sizes["fig3_updates"], sizes["fig3_seeds"], seed, progress), out, seed, sizes)
    if "fig3-mlp" in wanted:
        from .fig3_mlp import fig3_mlp, write_fig3_mlp

        result = fig3_mlp(sizes["fig3_mlp_updates"], sizes["fig3_mlp_seeds"], seed, progress=progress)
        found["fig3-mlp"] = write_fig3_mlp(result, out, seed, sizes)
    write_json(out / "summary.json", {"metadata": metadata(seed, target=wanted), **found})
    return found


def _write_fig3(result: Fig3, out: Path, seed: int, sizes: dict[str, Any]) -> dict[str, Any]:
    from ..plots import error_vs_time, figure

    summary = result.summary()
    meta = metadata(seed, dict(zip(result.labels, result.systems, strict=True)), target="fig3", sizes=sizes, **summary)
    header, columns = ["time"], [result.bands[0].grid]
    for k, b in enumerate(result.bands, start=1):
        header += [f"case{k}_error_geomean", f"case{k}_error_lo95", f"case{k}_error_hi95"]
        columns += [b.mean, b.lo, b.hi]
        header += [f"case{k}_error_seed{r}" for r in range(b.seeds)]
        columns += list(b.errors)
    write_csv(out / "fig3.csv", header, np.column_stack(columns).tolist(), meta)
    fig, ax = figure()
    for k, (label, b, color) in enumerate(zip(result.labels, result.bands, ("tab:blue", "tab:red"), strict=False)):
        tau = np.mean([r[f"staleness_case{k + 1}"] for r in result.rows])
        error_vs_time(b.grid, b.mean, lo=b.lo, hi=b.hi, label=f"{label}, mean τ = {tau:.2f}", color=color, ax=ax)
    ax.axhline(result.target, color="gray", ls=":", lw=1, label=f"target ({FIG3_TARGET:g} x initial error)")
    # end the axis soon after the curves settle: three times the later of the two times to target
    reached = [
        float(b.grid[np.argmax(b.mean <= result.target)]) for b in result.bands if (b.mean <= result.target).any()
    ]
    if len(reached) == len(result.bands):
        ax.set_xlim(0, min(float(result.bands[0].grid[-1]), 3.0 * max(reached)))
    ax.plot([], [], " ", label=f"bands: 95% CI of the geometric mean over {result.bands[0].seeds} seeds")
    p = FIG3_PROBLEM
    ax.set_title(
        f"least squares d = {p['dim']}, {p['samples']} samples, noise {p['noise']}, step {FIG3_STEP}; "
        f"n = 10, Tc = 0, exponential compute times (mean 2 s per sample); {result.bands[0].seeds} seeds",
        fontsize="small",
    )
    ax.legend(fontsize="small")
    write_figure(
        fig,
        out / "fig3.png",
        {**meta, "bands": {lab: b.to_dict() for lab, b in zip(result.labels, result.bands, strict=True)}},
    )
    return summary
