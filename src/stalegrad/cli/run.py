"""``stalegrad run``: real asynchronous K-batch training on Ray, measured staleness beside the exact prediction."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from .options import build_systems, emit_json, fmt, print_table, system_options

#: Problems by name (each built with its default, fixed data seed, so that runs and replays share the data).
PROBLEMS = ("linreg",)


def make_problem(name: str) -> Any:
    from ..train.problems import LinearRegression

    if name == "linreg":
        return LinearRegression()
    raise click.BadParameter(f"must be one of {', '.join(PROBLEMS)}, got {name!r}", param_hint="--problem")


@click.command("run")
@system_options
@click.option("--problem", type=click.Choice(PROBLEMS), default="linreg", show_default=True, help="What to train.")
@click.option("--updates", type=click.IntRange(min=1), default=500, show_default=True, help="Updates to make.")
@click.option("--lr", type=float, default=0.05, show_default=True, help="Step size of every update.")
@click.option("--batch", type=click.IntRange(min=1), default=16, show_default=True, help="Minibatch per gradient.")
@click.option(
    "--time-unit",
    "time_unit",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Inject the compute times and delays of --compute/--tc/--uplink/--downlink, one time unit lasting this "
    "many seconds (emulates a cluster with stragglers on one machine). Default: inject nothing.",
)
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Seed of the injected times and minibatches.")
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT",
    help="Join an existing Ray cluster (default: start a local instance, loopback only, no dashboard).",
)
@click.option("--restart-workers", is_flag=True, help="Restart a worker that dies (it resumes above its last round).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write trace.csv, errors.csv and run.json here.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def run_command(
    ctx: click.Context,
    n: str,
    K: str,
    tc: str,
    uplink: str | None,
    downlink: str | None,
    compute: tuple[str, ...],
    protocol: str,
    staleness_bound: int | None,
    problem: str,
    updates: int,
    lr: float,
    batch: int,
    time_unit: float | None,
    seed: int | None,
    address: str | None,
    restart_workers: bool,
    out: str | None,
    as_json: bool,
) -> None:
    """Train on Ray with a master and n worker actors; print measured staleness beside the exact prediction
    from the measured times.

    \b
    stalegrad run --n 4 --K 2 --problem linreg --updates 500 --tc 1 \\
        --compute "shifted_exponential(alpha=1, rate=0.6667)" --time-unit 0.02 --out results/run
    """
    from ..errors import SpecError, invalid

    if protocol != "k-batch-async" or staleness_bound is not None:
        raise SpecError(
            f"--protocol must be k-batch-async for a real run (the runtime implements the paper's protocol), "
            f"got {protocol!r}" + ("" if staleness_bound is None else f" with --staleness-bound {staleness_bound}")
        )
    systems = build_systems(n, K, tc, uplink, downlink, compute)
    if len(systems) != 1:
        raise SpecError(f"--n, --K and --tc must be single values for a run, got {len(systems)} systems")
    system = systems[0]
    if time_unit is None:
        given = [
            f"--{name}"
            for name in ("compute", "tc", "uplink", "downlink")
            if ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        ]
        if given:
            raise SpecError(f"{', '.join(given)} are injected times: they need --time-unit SECONDS > 0")
    elif not (math.isfinite(time_unit) and time_unit > 0):
        raise invalid("--time-unit", time_unit, "a number of seconds > 0")
    if not (math.isfinite(lr) and lr > 0):
        raise invalid("--lr", lr, "a finite number > 0")
    if address is not None and not address.strip():
        raise invalid("--address", address, "'auto' or HOST:PORT")

    from ..artefacts import metadata, write_csv, write_json
    from ..runtime import compare, run
    from ..sim.streams import resolve_seed

    seed = resolve_seed(seed)
    if not as_json:
        click.echo(f"seed {seed}", err=True)
    with _progress(updates) as report:
        result = run(
            system,
            make_problem(problem),
            updates,
            time_unit=time_unit,
            lr=lr,
            batch=batch,
            seed=seed,
            address=address,
            restart_workers=restart_workers,
            progress=report,
        )
    comp = compare(result)
    errors = result.errors
    summary: dict[str, Any] = {
        "n": system.n,
        "K": system.K,
        "updates": result.trace.updates,
        "gradients": len(result.trace),
        "seconds": result.seconds,
        "time_unit": time_unit,
        "seed": seed,
        "problem": problem,
        "lr": lr,
        "batch": batch,
        **comp.to_dict(),
        "ray_latency_ms": result.latency,
        "dropped": result.dropped,
        "lost": [list(x) for x in result.lost],
        "restarted": [list(x) for x in result.restarted],
        "error_first": float(errors[0, 2]) if errors.size else None,
        "error_last": float(errors[-1, 2]) if errors.size else None,
        "system": result.trace.system.to_dict() if time_unit is not None else None,
    }
    if out:
        folder = Path(out)
        meta = metadata(seed, {"configured": system} if time_unit is not None else None, run=summary)
        cols = result.trace.columns
        names = list(cols)
        write_csv(folder / "trace.csv", names, zip(*(cols[k].tolist() for k in names), strict=True), meta)
        write_csv(folder / "errors.csv", ["version", "time", "error"], errors.tolist(), meta)
        write_json(folder / "run.json", {"metadata": meta, "run": summary})
    if as_json:
        emit_json(summary)
        return
    unit = f"time unit {time_unit} s" if time_unit is not None else "seconds (nothing injected)"
    print_table(
        f"stalegrad run (seed {seed}; {summary['updates']} updates on Ray; times in {unit}; "
        f"first {comp.warmup} updates left out)",
        [
            "n",
            "K",
            "E[tau] run",
            "95% CI +-",
            "exact (measured)",
            "diff %",
            "exact (configured)",
            "rate run",
            "rate theory",
            "uplink",
            "downlink",
            "seconds",
        ],
        [
            [
                str(system.n),
                str(system.K),
                fmt(comp.measured),
                fmt(comp.ci95),
                fmt(comp.predicted),
                fmt(100 * comp.rel_diff, 2),
                fmt(comp.configured) if comp.configured is not None else "-",
                fmt(comp.update_rate),
                fmt(comp.update_rate_predicted),
                fmt(comp.uplink, 3),
                fmt(comp.downlink, 3),
                fmt(result.seconds, 1),
            ]
        ],
    )
    lat = result.latency
    click.echo(
        f"Ray call latency {lat['call_ms_median']:.2f} ms (median; p90 {lat['call_ms_p90']:.2f}), put+get "
        f"{lat['put_get_ms_median']:.2f} ms; error {summary['error_first']:.4g} -> {summary['error_last']:.4g}; "
        f"dropped {result.dropped}"
    )
    if result.lost:
        click.echo(f"workers lost (worker, at update): {list(result.lost)}; restarted: {list(result.restarted)}")
    click.echo(f"note: {comp.caveat}")


@contextmanager
def _progress(total: int) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """A progress bar on stderr (when it is a terminal): updates, updates/s, running mean staleness."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("updates {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("{task.fields[rate]} updates/s  mean staleness {task.fields[tau]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("run", total=total, rate="-", tau="-")
        began: list[float] = []

        def report(status: dict[str, Any]) -> None:
            if not began:  # the clock starts with the run, not with Ray
                began.append(time.time())
            elapsed = max(time.time() - began[0], 1e-9)
            tau = status["staleness_sum"] / status["gradients"] if status["gradients"] else math.nan
            bar.update(task, completed=status["updates"], rate=f"{status['updates'] / elapsed:.1f}", tau=f"{tau:.3f}")

        yield report
