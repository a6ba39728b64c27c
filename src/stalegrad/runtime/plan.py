"""The plan of a real run: every argument of :func:`~stalegrad.runtime.run`, checked once, before Ray starts.

:meth:`RunPlan.build` validates the arguments (and the checkpoint to resume, if any) and resolves what they leave
open -- the seed, the checkpoint folder and period of a resumed run -- into a frozen :class:`RunPlan`; the driver
(:mod:`stalegrad.runtime.driver`) only carries it out. Every mistake is one :class:`~stalegrad.errors.SpecError`
naming the parameter, the value and what is allowed; ``names`` lets a caller name the parameters its own way (the
command line: its options), so that the checks live here and nowhere else.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError, invalid
from ..spec import System
from .checkpoint import Checkpoint
from .protocol import RULES

#: The protocols a real run carries out.
RUNTIME_PROTOCOLS = tuple(RULES)

__all__ = ["RUNTIME_PROTOCOLS", "RunPlan"]


@dataclass(frozen=True, eq=False)
class RunPlan:
    """A real run, checked and resolved (:meth:`build`); see :func:`~stalegrad.runtime.run` for the arguments.

    ``kill`` and ``clock_skew`` are per worker (``kill[i]``: the update at which the driver kills worker ``i``,
    or ``None``); ``resumed`` is the loaded checkpoint a resumed run continues; ``checkpoint_every`` is ``0`` when
    the run writes no checkpoint.
    """

    system: System
    problem: Any
    updates: int
    time_unit: float | None
    lr: float
    batch: int
    seed: int
    address: str | None
    restart_workers: bool
    error_every: int
    poll: float
    stop_timeout: float
    kill: tuple[int | None, ...]
    clock_skew: tuple[float, ...]
    checkpoint_dir: Path | None
    checkpoint_every: int
    resumed: Checkpoint | None
    shared_memory: bool = True

    @classmethod
    def build(
        cls,
        system: System,
        problem: Any,
        updates: int,
        *,
        time_unit: float | None = None,
        lr: float = 0.05,
        batch: int = 16,
        seed: int | None = None,
        address: str | None = None,
        restart_workers: bool = False,
        error_every: int = 1,
        poll: float = 0.1,
        stop_timeout: float = 10.0,
        kill: Mapping[int, int] | None = None,
        clock_skew: Mapping[int, float] | None = None,
        checkpoint_dir: str | Path | None = None,
        checkpoint_every: int | None = None,
        resume: str | Path | None = None,
        shared_memory: bool = True,
        names: Mapping[str, str] | None = None,
    ) -> RunPlan:
        """Check every argument and resolve the run. ``names``: how the caller calls a parameter, possibly with
        the form of its value (``{"checkpoint_dir": "--out DIR"}``; the messages say ``--out must be ...`` and
        ``... unless --out DIR is given``)."""
        from ..streams import resolve_seed
        from ..train.problems import Problem
        from .checkpoint import has_checkpoint, load_checkpoint

        names = dict(names or {})

        def ref(parameter: str) -> str:  # a parameter as a message refers to it
            return names.get(parameter, parameter)

        def bad(parameter: str, value: Any, allowed: str) -> Exception:
            return invalid(ref(parameter).split(" ")[0], value, allowed)

        if not isinstance(system, System):
            raise bad("system", type(system).__name__, "a stalegrad.System")
        if system.protocol not in RUNTIME_PROTOCOLS:
            raise bad("protocol", system.protocol, f"one of {', '.join(RUNTIME_PROTOCOLS)} for a real run")
        if system.protocol == "mindflayer" and time_unit is None:
            raise bad("time_unit", time_unit, "a number of seconds > 0 for mindflayer (its cutoffs are in time units)")
        if system.per_worker_delays:
            way = "uplink" if isinstance(system.uplink, tuple) else "downlink"
            raise bad(way, system.to_dict()[way], "one delay per direction for every worker in a real run "
                      "(per-worker delays are simulated only: simulate, train)")  # fmt: skip
        if not isinstance(problem, Problem):
            raise bad("problem", type(problem).__name__, "a stalegrad.train.Problem (init, gradient, loss, error)")
        _integer(bad, "updates", updates, 1)
        if time_unit is not None and not _positive(time_unit):
            raise bad("time_unit", time_unit, "a number of seconds > 0 (or none: inject nothing)")
        if not _positive(lr):
            raise bad("lr", lr, "a finite number > 0")
        _integer(bad, "batch", batch, 1)
        if address is not None and not (isinstance(address, str) and address.strip()):
            raise bad("address", address, "'auto' or HOST:PORT (or none: start a local instance)")
        if address is not None:
            from .session import check_address

            why = check_address(address)  # at once, where Ray would retry for minutes
            if why is not None:
                name = ref("address").split(" ")[0]
                allowed = "'auto' or the HOST:PORT of a running Ray cluster"
                raise SpecError(f"{name} must be {allowed}, got {address!r}: {why}")
        _integer(bad, "error_every", error_every, 0)
        if not _positive(poll):
            raise bad("poll", poll, "a number of seconds > 0")
        if not (_positive(stop_timeout) or stop_timeout == 0):
            raise bad("stop_timeout", stop_timeout, "a number of seconds >= 0")
        n = system.n
        kills: list[int | None] = [None] * n
        for worker, at in dict(kill or {}).items():
            if not (_int(worker) and 0 <= worker < n and _int(at) and 0 <= at < updates):
                raise bad("kill", {worker: at}, f"{{worker in 0..{n - 1}: update in 0..{updates - 1}}}")
            kills[worker] = int(at)
        skews = [0.0] * n
        for worker, skew in dict(clock_skew or {}).items():
            if not (_int(worker) and 0 <= worker < n and _real(skew) and math.isfinite(skew)):
                raise bad("clock_skew", {worker: skew}, f"{{worker in 0..{n - 1}: seconds}}")
            skews[worker] = float(skew)

        ckpt = load_checkpoint(resume, name=ref("resume").split(" ")[0]) if resume is not None else None
        if checkpoint_every is None:
            checkpoint_every = int(ckpt.manifest.get("checkpoint_every", 0)) if ckpt is not None else 0
        _integer(bad, "checkpoint_every", checkpoint_every, 0, "(0: no checkpoint)")
        if ckpt is not None:
            seed = ckpt.args["seed"] if seed is None else seed
        seed = resolve_seed(seed)
        folder = None if checkpoint_dir is None else Path(checkpoint_dir)
        if ckpt is not None:
            given = _run_args(system, problem, lr, batch, time_unit, seed)
            for name, value, theirs in ckpt.mismatches(given):
                raise bad(name, value, f"{theirs!r} (the checkpoint's, in '{resume}') to resume it")
            if updates <= ckpt.version:
                raise bad("updates", updates, f"an integer > {ckpt.version} (the checkpoint's version) to resume it")
            if folder is None:
                folder = ckpt.folder
            elif folder.resolve() != ckpt.folder.resolve():
                raise bad("checkpoint_dir", str(checkpoint_dir), f"the resumed folder '{resume}' (or none)")
        if checkpoint_every and folder is None:
            raise bad("checkpoint_every", checkpoint_every, f"0 unless {ref('checkpoint_dir')} is given")
        if checkpoint_every and ckpt is None and folder is not None and has_checkpoint(folder):
            raise bad(
                "checkpoint_dir",
                str(checkpoint_dir),
                f"a folder without a checkpoint ({ref('resume')} continues that one)",
            )
        return cls(
            system=system,
            problem=problem,
            updates=int(updates),
            time_unit=None if time_unit is None else float(time_unit),
            lr=float(lr),
            batch=int(batch),
            seed=seed,
            address=address,
            restart_workers=bool(restart_workers),
            error_every=int(error_every),
            poll=float(poll),
            stop_timeout=float(stop_timeout),
            kill=tuple(kills),
            clock_skew=tuple(skews),
            checkpoint_dir=folder if checkpoint_every else None,
            checkpoint_every=int(checkpoint_every),
            resumed=ckpt,
            shared_memory=bool(shared_memory),
        )

    @property
    def args(self) -> dict[str, Any]:
        """The arguments a resumed run must share with the run it continues (a checkpoint records them)."""
        return _run_args(self.system, self.problem, self.lr, self.batch, self.time_unit, self.seed)

    @property
    def unit(self) -> float:
        """Seconds per time unit of the recorded times (1 when nothing is injected: times in seconds)."""
        return self.time_unit or 1.0

    @property
    def base(self) -> float:
        """Where the run's clock starts (time units): a resumed run's goes on from its checkpoint's last update."""
        return self.resumed.time if self.resumed is not None else 0.0

    @property
    def incarnations(self) -> tuple[int, ...]:
        """Each worker's first incarnation: a resumed run's workers draw from fresh streams, never a draw of the
        run it continues."""
        if self.resumed is None:
            return (0,) * self.system.n
        return tuple(r + 1 for r in self.resumed.incarnations)

    @property
    def counts(self) -> dict[str, Any]:
        """Gradients dropped by reason, workers lost and restarted, before this session (a resumed run's)."""
        if self.resumed is None:
            return {"dropped": {}, "lost": [], "restarted": []}
        return self.resumed.counts

    @property
    def state(self) -> dict[str, Any] | None:
        """What the master starts from: ``None`` (``w_0``, version 0), or a resumed run's checkpoint."""
        c = self.resumed
        if c is None:
            return None
        return {"w": c.w, "version": c.version, "watermarks": c.watermarks, "above": c.above}


def _run_args(system: System, problem: Any, lr: float, batch: int, time_unit: float | None, seed: int) -> dict:
    from .checkpoint import run_args

    return run_args(system, problem, lr, batch, time_unit, seed)


def _int(x: Any) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _real(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _positive(x: Any) -> bool:
    """A finite real number > 0."""
    return _real(x) and math.isfinite(x) and x > 0


def _integer(bad: Any, parameter: str, value: Any, low: int, note: str = "") -> None:
    if not (_int(value) and value >= low):
        raise bad(parameter, value, f"an integer >= {low}" + (f" {note}" if note else ""))
