"""``stalegrad sweep``: the product of options times replications, each point simulated (and replayed to a target
error with --problem) in parallel processes; one Parquet row per point; interrupted, it goes on where it stopped."""

from __future__ import annotations

import itertools
import math
import os
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import SpecError, invalid
from .options import (
    IMAGE_SUFFIXES,
    PROBLEM_HELP,
    build_systems,
    check_output_dir,
    check_output_file,
    load_problem,
    parse_sweep,
    system_options,
)
from .output import emit_json, fmt, print_table

#: The options a sweep can vary (row keys), in the order its table and figure use them.
AXES = ("protocol", "n", "active_workers", "K", "delay_threshold", "cutoffs", "tc", "b", "policy", "step")


@click.command("sweep")
@system_options
@click.option(
    "--workers",
    "workers",
    multiple=True,
    metavar="WHICH",
    help="The workers that compute (the others idle): 'all' (default), 'fastest:M', several counts 'fastest:1,2,4' "
    "or 'fastest:1:8', or indices '0,2,5'; repeat the option for more values to sweep.",
)
@click.option(
    "--delay-threshold",
    "delay_threshold",
    default=None,
    metavar="R",
    help="ringmaster's thresholds R (a value, range or list); the other protocols of the sweep have none.",
)
@click.option(
    "--cutoff",
    "cutoff",
    multiple=True,
    metavar="SECONDS",
    help="mindflayer's cutoffs at b = 1 (a round of minibatch b has b times them): one value for every worker or "
    "one per worker '1,1,2,4'; repeat the option for more values to sweep.",
)
@click.option("--problem", default=None, help=PROBLEM_HELP + " Without it, staleness only (nothing replayed).")
@click.option("--b", "bs", default="1", show_default=True, help="Minibatch sizes (a value, range or list).")
@click.option("--policy", "policies", default="constant", show_default=True, help="Step-size policies (a list).")
@click.option("--step", "steps", default="0.05", show_default=True, help="Base steps (a value or a list).")
@click.option("--target", type=float, default=None, help="Target error (default: 1% of the initial error).")
@click.option("--updates", type=click.IntRange(min=10), default=2000, show_default=True, help="Updates per point.")
@click.option("--seeds", type=click.IntRange(min=1), default=3, show_default=True, help="Replications per point.")
@click.option("--seed", type=click.IntRange(min=0), default=None, help="Root seed (default: fresh, printed).")
@click.option("--jobs", type=click.IntRange(min=1), default=None, help="Processes (default: the CPUs).")
@click.option(
    "--address",
    default=None,
    metavar="auto|HOST:PORT",
    help="Run the points as Ray tasks on this cluster (stalegrad installed on every node) instead of processes.",
)
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder: points/ (one file per point done) and sweep.parquet; run again to go on.")  # fmt: skip
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="A heatmap (PNG) of time to target (staleness without --problem) over two varied options.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def sweep_command(
    workers: tuple[str, ...] | str | None,
    delay_threshold: str | int | None,
    cutoff: tuple[str, ...] | str | None,
    problem: str | None,
    bs: str,
    policies: str,
    steps: str,
    target: float | None,
    updates: int,
    seeds: int,
    seed: int | None,
    jobs: int | None,
    address: str | None,
    out: str,
    plot: str | None,
    as_json: bool,
    **system: Any,
) -> None:
    """Run every combination of the options (--n, --K, --tc, --protocol, --workers, --delay-threshold, --cutoff,
    --b, --policy, --step) --seeds times.

    \b
    stalegrad sweep --n 4,8,16 --K 1,2,4 --tc 1 --problem linreg --step 0.02,0.05 --seeds 4 \\
        --out results/sweep --plot sweep.png
    stalegrad sweep --n 8 --K 1 --compute "4*expon(scale=1)" --compute "4*expon(scale=10)" \\
        --workers fastest:2,4 --workers all --protocol ringmaster --delay-threshold 2,4,8 --out results/ring
    """
    from ..artefacts import metadata
    from ..experiments.sweep import run_sweep, sweep_points, write_sweep
    from ..streams import resolve_seed
    from ..train.policies import POLICIES

    systems = _variants(system, workers, delay_threshold, cutoff)
    b_values = parse_sweep("--b", bs, int)
    if any(b < 1 for b in b_values):
        raise invalid("--b", bs, "integers >= 1")
    step_values = parse_sweep("--step", steps, float)
    if any(not (math.isfinite(s) and s > 0) for s in step_values):
        raise invalid("--step", steps, "finite steps > 0")
    policy_list = [x.strip() for x in policies.split(",") if x.strip()]
    if not policy_list or any(x not in POLICIES for x in policy_list):
        raise invalid("--policy", policies, f"a list of {', '.join(POLICIES)}")
    if target is not None and not (math.isfinite(target) and target > 0):
        raise invalid("--target", target, "a finite error > 0")
    if target is not None and problem is None:
        raise invalid("--target", target, "given with --problem (nothing is replayed without one)")
    if address is not None and not (address == "auto" or _host_port(address)):
        raise invalid("--address", address, "'auto' or HOST:PORT of a Ray cluster")
    if address is not None and jobs is not None:
        raise invalid("--jobs", jobs, "left out with --address (the cluster's CPUs run the points)")
    check_output_dir("--out", out)
    if plot is not None:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    points = sweep_points(systems, b_values, policy_list, step_values, seeds)
    prob = load_problem(problem) if problem is not None else None
    root = resolve_seed(seed)
    if seed is None and not as_json:
        click.echo(f"seed {root} (give --seed {root} to go on after a stop)", err=True)
    processes = jobs or max(1, min(len(points), os.cpu_count() or 1))

    def progress(done: int, total: int) -> None:
        if sys.stderr.isatty():
            click.echo(f"\rpoints {done}/{total}", err=True, nl=done == total)

    try:
        rows, ran = run_sweep(points, out, updates=updates, root=root, target=target, problem=prob, jobs=processes,
                              address=address, progress=progress)  # fmt: skip
    except KeyboardInterrupt:
        from ..experiments.sweep import read_done

        click.echo(
            f"Error: interrupted; {len(read_done(Path(out)))} points are done in '{out}' "
            f"(run the same command with --seed {root} to go on)",
            err=True,
        )
        raise SystemExit(130) from None
    view = _view(rows)
    varied = [k for k in AXES if len({str(r[k]) for r in view}) > 1]
    meta = metadata(root, {f"{k}": s for k, s in enumerate(systems)}, updates=updates, seeds=seeds,
                    problem=problem, varied=varied)  # fmt: skip
    path = write_sweep(rows, out, meta)
    value = "time_to_target" if problem is not None else "staleness_mean"
    if plot:
        from ..artefacts import write_figure
        from ..plots import sweep_figure

        if not varied:
            raise SpecError("--plot needs an option that varies (a list or range in --n, --K, --tc, --b, ...)")
        write_figure(sweep_figure(view, value, varied), plot, meta)
    summary = _summary(view, varied, value)
    if as_json:
        emit_json({"seed": root, "points": len(rows), "ran": ran, "varied": varied, "file": str(path),
                   "configurations": summary, "rows": rows})  # fmt: skip
        return
    print_table(
        f"stalegrad sweep (seed {root}; {len(rows)} points, {ran} run now; medians over {seeds} replications)",
        [*(varied or ["n"]), f"{value.replace('_', ' ')} (median)", "reached" if problem else "E[tau] exact"],
        [[*(str(c[k]) for k in (varied or ["n"])), fmt(c["median"], 4), c["extra"]] for c in summary],
    )
    click.echo(f"rows in {path}")


def _variants(
    options: dict[str, Any],
    workers: tuple[str, ...] | str | None,
    delay_threshold: str | int | None,
    cutoff: tuple[str, ...] | str | None,
) -> list[Any]:
    """The systems of the sweep: those of the system options, each with every --workers value, ringmaster's with
    every --delay-threshold and mindflayer's with every --cutoff (a system file gives one value of each)."""
    worker_values = _worker_values((workers,) if isinstance(workers, str) else workers)
    thresholds = None if delay_threshold is None else parse_sweep("--delay-threshold", str(delay_threshold), int)
    if thresholds is not None and any(R < 1 for R in thresholds):
        raise invalid("--delay-threshold", delay_threshold, "integers R >= 1 (a value, range or list)")
    cutoffs = [cutoff] if isinstance(cutoff, str) else list(cutoff or ())
    base = build_systems(**options, delay_threshold=thresholds[0] if thresholds else None,
                         cutoff=cutoffs[0] if cutoffs else None)  # fmt: skip
    out = []
    for s in base:
        for which, R, c in itertools.product(
            worker_values,
            thresholds if s.protocol == "ringmaster" and thresholds else [s.delay_threshold],
            cutoffs if s.protocol == "mindflayer" and cutoffs else [s.cutoffs],
        ):
            out.append(s.replace(workers=which, delay_threshold=R, cutoffs=c))
    return out


def _worker_values(texts: tuple[str, ...] | None) -> list[Any]:
    """--workers values: 'fastest:1,2,4' and 'fastest:1:8' are several (one per count); others one each."""
    if not texts:
        return [None]
    out: list[Any] = []
    for text in texts:
        head, _, counts = text.strip().partition(":")
        if head == "fastest" and ("," in counts or ":" in counts):
            out += [f"fastest:{m}" for m in parse_sweep("--workers fastest", counts, int)]
        else:
            out.append(text.strip())
    return out


def _view(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows whose list values (active workers, cutoffs) are text, for the table and the figure."""

    def cell(key: str, value: Any) -> Any:
        if value is None and key in ("active_workers", "delay_threshold", "cutoffs"):
            return "all" if key == "active_workers" else "-"
        if key == "cutoffs" and len(set(value)) == 1:
            return f"{value[0]:g}"  # one for every worker
        return ",".join(f"{x:g}" for x in value) if isinstance(value, list) else value

    return [{k: cell(k, v) for k, v in r.items()} for r in rows]


def _host_port(text: str) -> bool:
    host, _, port = text.rpartition(":")
    return bool(host.strip()) and port.isdigit() and 0 < int(port) < 65536


def _summary(rows: list[dict[str, Any]], varied: list[str], value: str) -> list[dict[str, Any]]:
    """Per configuration (the varied options), the median of ``value`` over replications."""
    import numpy as np

    keys = varied or ["n"]
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, members in groups.items():
        values = [math.inf if m.get(value) is None else float(m[value]) for m in members]  # never reached: last
        finite = [v for v in values if math.isfinite(v)]
        middle = float(np.median(values))
        median = middle if math.isfinite(middle) else None
        extra = f"{len(finite)}/{len(values)}" if value == "time_to_target" else fmt(members[0]["staleness_exact"], 4)
        out.append({**dict(zip(keys, key, strict=True)), "median": median, "extra": extra})
    return out
