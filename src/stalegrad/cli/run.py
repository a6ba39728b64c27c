"""``stalegrad run``: real distributed training on Ray under any protocol, measured staleness beside the prediction."""

from __future__ import annotations

import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import click

from .options import (
    IMAGE_SUFFIXES,
    PROBLEM_HELP,
    build_systems,
    check_output_dir,
    check_output_file,
    cluster_options,
    load_problem,
    protocol_options,
    protocols_option,
)
from .output import emit_json, fmt, print_table
from .resume import RunOptions, resumed


@click.command("run")
@cluster_options
@protocols_option
@protocol_options
@click.option("--problem", default="linreg", show_default=True, help=PROBLEM_HELP)
@click.option("--updates", type=click.IntRange(min=1), default=500, show_default=True, help="Updates to make.")
@click.option("--step", type=float, default=0.05, show_default=True, help="Step size of every update.")
@click.option("--b", "b", type=click.IntRange(min=1), default=16, show_default=True, help="Minibatch per gradient.")
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
    "--shared-memory/--object-store",
    default=True,
    show_default=True,
    help="How a w over 16 kB and its gradients travel to and from workers on the master's node: fixed "
    "shared-memory buffers, or Ray's object store (always the path for workers on other nodes).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Write trace.csv, errors.csv and run.json here (and the checkpoints, with --checkpoint-every).",
)
@click.option(
    "--checkpoint-every",
    "checkpoint_every",
    type=click.IntRange(min=0),
    default=None,
    metavar="N",
    help="Checkpoint w, the rounds taken and the trace into --out: at most one checkpoint each time the driver "
    "polls the master (about every 0.1 s), at the newest multiple of N updates reached (with fast updates, "
    "multiples in between are skipped); then one at the last update, and one on Ctrl-C (0: never).",
)
@click.option(
    "--resume",
    type=click.Path(file_okay=False),
    default=None,
    metavar="DIR",
    help="Continue the stopped run checkpointed in DIR, to its --updates (or the new --updates), with its "
    "arguments; the trace goes on with no gap and no duplicate.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write a figure (PNG): the run's staleness distribution beside a simulation of the system it measured, "
    "and its error against time.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def run_command(
    ctx: click.Context,
    n: str | None,
    K: str | None,
    tc: str,
    uplink: str | tuple[str, ...] | None,  # repeated on the command line: per-worker delays with counts
    downlink: str | tuple[str, ...] | None,
    compute: tuple[str, ...],
    protocol: str,
    staleness_bound: int | None,
    workers: str | None,
    delay_threshold: int | None,
    cutoff: str | None,
    problem: str,
    updates: int,
    step: float,
    b: int,
    time_unit: float | None,
    seed: int | None,
    address: str | None,
    restart_workers: bool,
    shared_memory: bool,
    out: str | None,
    checkpoint_every: int | None,
    resume: str | None,
    plot: str | None,
    as_json: bool,
) -> None:
    """Train on Ray with a master and n worker actors under any protocol; print measured staleness beside the
    prediction (k-batch-async: the exact limit from the measured times; other protocols: the theory's or the event
    engine's for the configured system, with the wasted compute).

    \b
    stalegrad run --n 4 --K 2 --problem linreg --updates 500 --tc 1 \\
        --compute "shifted_exponential(alpha=1, rate=0.6667)" --time-unit 0.02 \\
        --out results/run --checkpoint-every 100
    stalegrad run --resume results/run                # after a stop: on to update 500
    stalegrad run --resume results/run --updates 800  # or further
    stalegrad run --n 4 --K 2 --protocol rennala --workers fastest:3 --tc 1 --time-unit 0.02
    """
    from ..errors import SpecError, invalid

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE

    from ..runtime.plan import RUNTIME_PROTOCOLS

    if protocol.strip() not in RUNTIME_PROTOCOLS:
        raise invalid("--protocol", protocol, f"one of {', '.join(RUNTIME_PROTOCOLS)} for a run (one protocol)")
    rules = {
        "protocol": protocol.strip(),
        "staleness_bound": staleness_bound,
        "workers": workers,
        "delay_threshold": delay_threshold,
        "cutoff": cutoff,
    }
    opts = RunOptions(n, K, tc, uplink, downlink, compute, problem, updates, step, b, time_unit, seed, rules)
    if resume is not None:
        opts = resumed(resume, given, opts)
        out = out or resume
    elif n is None or K is None:
        raise SpecError("--n and --K are needed (or --resume DIR, which takes them from its checkpoint)")
    systems = build_systems(opts.n, opts.K, opts.tc, opts.uplink, opts.downlink, opts.compute, **opts.rules)
    if len(systems) != 1:
        raise SpecError(f"--n, --K and --tc must be single values for a run, got {len(systems)} systems")
    system = systems[0]
    if opts.time_unit is None:
        injected = [f"--{name}" for name in ("compute", "tc", "uplink", "downlink") if given(name)]
        if injected:
            raise SpecError(f"{', '.join(injected)} are injected times: they need --time-unit SECONDS > 0")
    if out is not None:
        check_output_dir("--out", out)
    if plot is not None:
        check_output_file("--plot", plot, IMAGE_SUFFIXES)
    if plot is not None and out is not None:
        mine = {(Path(out) / f).resolve() for f in ("trace.csv", "errors.csv", "run.json", "checkpoint.json")}
        if {Path(plot).resolve(), Path(plot).with_suffix(".json").resolve()} & mine:
            raise invalid("--plot", plot, f"a file whose name and .json companion are not among --out's files ({out})")

    from ..runtime.plan import RunPlan

    problem_obj = load_problem(opts.problem)
    plan = RunPlan.build(  # every other check: the library's, named as the options are
        system,
        problem_obj,
        opts.updates,
        time_unit=opts.time_unit,
        lr=opts.step,
        batch=opts.b,
        seed=opts.seed,
        address=address,
        restart_workers=restart_workers,
        shared_memory=shared_memory,
        checkpoint_dir=out if (checkpoint_every or resume) else None,
        checkpoint_every=checkpoint_every,
        resume=resume,
        names=OPTION_NAMES,
    )

    from ..artefacts import metadata, write_json
    from ..experiments.measured import compare
    from ..experiments.vocabulary import shared_row
    from ..runtime import write_run
    from ..runtime.run import carry_out

    seed = plan.seed
    if not as_json:
        click.echo(f"seed {seed}", err=True)
    with _progress(plan.updates) as report, _stdout_to_stderr():
        result = carry_out(plan, report)
    comp = compare(result)
    errors = result.errors
    summary: dict[str, Any] = {
        **shared_row(system, seed=seed),
        **comp.to_dict(),
        "updates": result.trace.updates,
        "gradients": len(result.trace),
        "seconds": result.seconds,
        "time_unit": plan.time_unit,
        "problem": opts.problem,
        "step": plan.lr,
        "b": plan.batch,
        "ray_latency_ms": result.latency,
        "dropped": result.dropped,
        "gradients_received": result.received,  # = gradients + the sum of dropped: none lost, none invented
        "lost": [list(x) for x in result.lost],
        "restarted": [list(x) for x in result.restarted],
        "resumed_from": result.meta["resumed_from"],
        "checkpoint": result.meta["checkpoint"],
        "error_first": float(errors[0, 2]) if errors.size else None,
        "error_last": float(errors[-1, 2]) if errors.size else None,
        **_metrics(problem_obj, result.w),  # test_accuracy, test_loss: a problem with a test set (torch models)
        "system": result.trace.system.to_dict() if plan.time_unit is not None else None,
        "clocks": result.meta["clocks"],
        "master_node": result.meta["master_node"],
    }
    if out:
        write_run(result, out, run=summary)
        systems_meta = {"configured": system} if plan.time_unit is not None else None
        write_json(Path(out) / "run.json", {"metadata": metadata(seed, systems_meta, run=summary), "run": summary})
    if plot:
        from ..experiments import plot_run

        plot_run(result, comp, plot, seed=seed)
    if as_json:
        emit_json(summary)
        return
    time_unit = plan.time_unit
    unit = f"time unit {time_unit} s" if time_unit is not None else "seconds (nothing injected)"
    print_table(
        f"stalegrad run (seed {seed}; {summary['updates']} updates on Ray; times in {unit}; "
        f"first {comp.warmup_updates} updates left out)",
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
                fmt(comp.staleness_mean),
                fmt(comp.staleness_ci95),
                fmt(comp.staleness_exact),
                fmt(100 * comp.staleness_rel_diff, 2),
                fmt(comp.staleness_exact_configured) if comp.staleness_exact_configured is not None else "-",
                fmt(comp.update_rate),
                fmt(comp.update_rate_exact),
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
        + (
            f"; wasted compute {comp.wasted_compute:.4f} (predicted {comp.wasted_compute_predicted:.4f})"
            if comp.wasted_compute_predicted is not None
            else ""
        )
        + (f"; test accuracy {summary['test_accuracy']:.4f}" if "test_accuracy" in summary else "")
    )
    if summary["resumed_from"] is not None:
        click.echo(f"resumed from the checkpoint at update {summary['resumed_from']} (the table covers the whole run)")
    if summary["checkpoint"] is not None:
        click.echo(f"checkpoints in {summary['checkpoint']} (continue with: stalegrad run --resume {out})")
    away = {i: c for i, c in result.meta["clocks"].items() if c["rtt"] > 0}
    if away:
        nodes = len({c["node"] for c in result.meta["clocks"].values()} | {result.meta["master_node"]})
        shown = ", ".join(f"{i}: {1e3 * c['offset']:+.3f} +- {5e2 * c['rtt']:.3f}" for i, c in away.items())
        click.echo(f"{nodes} nodes; workers' clock offsets to the master's (ms, +- half the round trip): {shown}")
    if result.lost:
        click.echo(f"workers lost (worker, at update): {list(result.lost)}; restarted: {list(result.restarted)}")
    click.echo(f"note: {comp.caveat}")


def _metrics(problem: Any, w: Any) -> dict[str, float]:
    """The problem's own metrics of the final ``w`` (``test_accuracy`` and ``test_loss`` with a test set)."""
    metrics = getattr(problem, "metrics", None)
    return {k: float(v) for k, v in metrics(w).items()} if callable(metrics) else {}


#: How :class:`~stalegrad.runtime.plan.RunPlan` names the parameters in its messages: as options.
OPTION_NAMES = {
    "n": "--n",
    "K": "--K",
    "tc": "--tc",
    "uplink": "--uplink",
    "downlink": "--downlink",
    "compute": "--compute",
    "protocol": "--protocol",
    "staleness_bound": "--staleness-bound",
    "workers": "--workers",
    "delay_threshold": "--delay-threshold",
    "cutoffs": "--cutoff",
    "problem": "--problem",
    "updates": "--updates",
    "lr": "--step",
    "batch": "--b",
    "time_unit": "--time-unit",
    "seed": "--seed",
    "address": "--address",
    "checkpoint_dir": "--out DIR",
    "checkpoint_every": "--checkpoint-every",
    "resume": "--resume DIR",
}


@contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """While the run lasts, what is printed on stdout goes to stderr: Ray prints some of its messages there (a
    worker's death, the actors' output), and stdout holds the results only (``--json`` parses). Both Python's
    ``sys.stdout`` and file descriptor 1, which the processes Ray starts inherit."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
        os.dup2(2, 1)
    except OSError:  # no file descriptor 1: Python's stdout only
        saved = -1
    try:
        with redirect_stdout(_WithoutDeathNotices(sys.stderr)):
            yield
    finally:
        sys.stderr.flush()
        if saved >= 0:
            os.dup2(saved, 1)
            os.close(saved)


class _WithoutDeathNotices(io.TextIOBase):
    """Ray's stdout during a run, line by line to ``target``, less Ray's notices of a dead actor process (``A worker
    died or was killed...``, many lines' worth): the run reports a lost worker, or the master's death, itself."""

    def __init__(self, target: Any) -> None:
        self.target = target
        self.line = ""

    def write(self, text: str) -> int:
        self.line += text
        *lines, self.line = self.line.split("\n")
        for line in lines:
            if "A worker died or was killed while executing" not in line:
                self.target.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()


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
            rate = f"{status['updates'] / elapsed:.1f}"  # of this session (a resumed run starts above 0)
            bar.update(task, completed=status["version"], rate=rate, tau=f"{tau:.3f}")

        yield report


for _param in run_command.params:  # --n and --K come from the checkpoint with --resume (checked in the command)
    if _param.name in ("n", "K"):
        _param.required = False
