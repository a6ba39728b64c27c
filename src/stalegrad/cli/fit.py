"""``stalegrad fit``: measured compute times in, a system file out (every command reads it with ``--system``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .link_options import link_delay, link_options
from .output import emit_json, fmt, print_table


@click.command("fit")
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option(
    "--columns",
    default=None,
    metavar="FIELD=COLUMN,...",
    help="Which column holds what: worker, duration (or start and end), censored (1 when the work was cancelled "
    "or cut off), round, sent and arrive (the uplink delay), published and received (the downlink delay), batch "
    "(several sizes: compute time against it). Fields not given are looked up under their own name. stalegrad's "
    "own Traces and PyTorch profiler traces (.json) are recognised and need none.",
)
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Write the system file (.json) here.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a PNG: per class, the empirical and fitted CDFs and a Q-Q panel (and a JSON of its metadata).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the system file's content as one JSON object.")
@click.option(
    "--level",
    type=float,
    default=0.01,
    show_default=True,
    help="Significance level of the grouping, goodness-of-fit and i.i.d. tests (0.001 to 0.25).",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the goodness-of-fit bootstrap.")
@click.option(
    "--K", "K", type=click.IntRange(min=1), default=None, help="Gradients per update (default: the Traces', else n)."
)
@click.option("--per-worker", is_flag=True, help="Fit every worker on its own (no grouping into classes).")
@click.option(
    "--gof-samples",
    type=click.IntRange(min=0),
    default=99,
    show_default=True,
    help="Bootstrap samples of each class's goodness-of-fit test (0: no test; at least 1/level - 1).",
)
@click.option(
    "--fit-delays",
    is_flag=True,
    help="Fit the delays' laws (per worker, grouped, like compute times) instead of fixing them at their mean.",
)
@link_options
def fit_command(
    logs: tuple[str, ...],
    columns: str | None,
    out: str | None,
    plot: str | None,
    as_json: bool,
    level: float,
    seed: int | None,
    K: int | None,
    per_worker: bool,
    gof_samples: int,
    fit_delays: bool,
    model_bytes: str | None,
    bandwidth: str | None,
    latency: str | None,
) -> None:
    """Fit each worker's compute-time law to measured records and write the system they describe.

    Workers that share a law are grouped into classes (k-sample Anderson-Darling), each class is fitted by
    maximum likelihood (exponential, shifted exponential, gamma, lognormal, Weibull; censored records count as
    lower bounds) and its law chosen by AIC; each worker's series is checked for drift and bursts. Records at
    several batch sizes also give each class's compute time against the batch size. Inputs: tables (CSV,
    Parquet, JSON lines), stalegrad's Traces, PyTorch profiler traces (one Chrome-trace JSON per rank).

    \b
    stalegrad fit trace.csv --out cluster.json --plot fit.png
    stalegrad fit steps.parquet --columns worker=rank,duration=step_time,censored=cancelled --out cluster.json
    stalegrad fit rank0.pt.trace.json rank1.pt.trace.json --model-bytes 4e8 --bandwidth 1.25e9 --out c.json
    stalegrad predict --system cluster.json --K 4
    """
    from ..errors import invalid
    from ..fit import fit_cluster, parse_columns, read_records
    from ..fit.choice import check_gof_samples
    from ..fit.classes import check_level

    check_level(level, "--level")
    check_gof_samples(gof_samples, level, "--gof-samples")
    delay = link_delay(model_bytes, bandwidth, latency)
    if delay is not None and fit_delays:
        link = "--model-bytes" if model_bytes is not None else "--latency"
        raise invalid("--fit-delays", "given", f"left out when {link} is given (both set the delays; give one)")
    mapping = parse_columns(columns)
    if out is not None and not out.endswith(".json"):
        raise invalid("--out", out, "a file name ending in .json")
    if plot is not None:
        if not plot.endswith(".png"):
            raise invalid("--plot", plot, "a file name ending in .png")
        if out is not None and Path(plot).with_suffix(".json").resolve() == Path(out).resolve():
            meta = Path(plot).with_suffix(".json").name
            raise invalid("--plot", plot, f"a name whose metadata file ({meta}) is not --out")
    records = read_records(logs, mapping)
    cluster = fit_cluster(
        records, level=level, seed=seed, gof_samples=gof_samples, per_worker=per_worker, K=K,
        fit_delays=fit_delays, delay=delay,
    )  # fmt: skip
    _write(cluster, out, plot)
    if as_json:
        from ..fit.system_file import document

        emit_json(document(cluster))
        return
    _print(cluster, out)


def _write(cluster: Any, out: str | None, plot: str | None) -> None:
    if out is not None:
        from ..fit.system_file import write_system_file

        write_system_file(out, cluster)
    if plot is not None:
        from ..artefacts import metadata, write_figure
        from ..fit.figures import fit_figure

        title = f"stalegrad fit: {len(cluster.records)} records, seed {cluster.seed}"
        fig = fit_figure(cluster.classes, title=title, reference=cluster.batch_reference)
        inputs = [s.path for s in cluster.records.sources]
        write_figure(fig, plot, metadata(cluster.seed, {"fitted": cluster.system}, inputs=inputs))


def _short(law: Any) -> str:
    """The law with 4 significant digits (the system file has 6)."""
    if law.family == "empirical":
        return f"empirical ({len(law.model.values)} quantiles)"
    return _short_text(law.text)


def _short_text(text: str) -> str:
    import re

    return re.sub(r"\d+\.\d+(e[-+]?\d+)?", lambda m: f"{float(m.group()):.4g}", text)


def _print(cluster: Any, out: str | None) -> None:
    kinds: dict[int, dict[str, int]] = {}
    where = {w: c.index for c in cluster.classes for w in c.workers}
    for f in cluster.findings:
        counts = kinds.setdefault(where[f.worker], {})
        counts[f.kind] = counts.get(f.kind, 0) + 1
    rows = []
    for c in cluster.classes:
        f = c.fit
        flags = [f"{k} {v}" for k, v in kinds.get(c.index, {}).items()]
        if f.rejected:
            flags.append("rejected" + (", empirical" if f.fallback else ""))
        rows.append(
            [
                str(c.index),
                str(len(c.workers)),
                str(f.sample.n),
                str(f.sample.n_censored),
                _short(f.law),
                fmt(f.law.mean(), 3),
                fmt(f.law.quantile(0.95), 3),
                fmt(f.best.aic, 1),
                "-" if f.gof is None else fmt(f.gof.p_value, 2),
                ", ".join(flags) or "-",
            ]
        )
    s = cluster.system
    print_table(
        f"stalegrad fit (n = {s.n}, K = {s.K}, {len(cluster.records)} records; level {cluster.level}, "
        f"seed {cluster.seed})",
        ["class", "workers", "records", "censored", "compute", "mean", "p95", "AIC", "GoF p", "warnings"],
        rows,
    )
    for c in cluster.classes:
        click.echo(f"class {c.index}: {', '.join(c.workers)}")
    for c in cluster.classes:
        if c.batch is not None:
            law = c.batch.law
            click.echo(
                f"class {c.index} against batch size b (law at b = {cluster.batch_reference} above): mean "
                f"{law.overhead:.4g} (SE {c.batch.overhead_se:.2g}) + b * {law.per_sample:.4g} "
                f"(SE {c.batch.per_sample_se:.2g}) s; {_short_text(law.text)}"
            )
    for line in cluster.warnings():
        click.echo(f"warning: {line}")
    for note in cluster.notes:
        click.echo(f"note: {note}")
    if out is not None:
        click.echo(f"system file: {out} (stalegrad predict --system {out})")
