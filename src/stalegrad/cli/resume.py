"""``stalegrad run --resume DIR``: the options of a run continued from its checkpoint, and the check that an option
given beside ``--resume`` agrees with the checkpoint's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .options import PROBLEMS, build_systems, load_problem

__all__ = ["RunOptions", "resumed"]


@dataclass(frozen=True)
class RunOptions:
    """The options that define a run: the command line's, or with ``--resume`` the checkpoint's
    (:func:`resumed`). The system is in its text form, as on the command line."""

    n: str | None
    K: str | None
    tc: str
    uplink: str | tuple[str, ...] | None  # the command line's repeated option, or a checkpoint's text
    downlink: str | tuple[str, ...] | None
    compute: tuple[str, ...]
    problem: str
    updates: int
    step: float
    b: int
    time_unit: float | None
    seed: int | None
    rules: dict[str, Any]  # protocol, staleness_bound, workers, delay_threshold, cutoff (build_systems' keywords)


def resumed(folder: str, given: Callable[[str], bool], opts: RunOptions) -> RunOptions:
    """The options of a resumed run: the checkpoint's; an option given on the command line must agree with it."""
    from ..errors import SpecError, invalid
    from ..runtime.checkpoint import load_checkpoint

    ckpt = load_checkpoint(folder, name="--resume")
    a = ckpt.args

    def text(delay: Any) -> str:
        return repr(delay) if isinstance(delay, float) else str(delay)

    mine: dict[str, Any] = {"n": str(a["n"]), "K": str(a["K"]), "tc": "0", "uplink": text(a["uplink"])}
    mine |= {"downlink": text(a["downlink"]), "compute": tuple(a["compute"])}
    active, cutoffs = a.get("active_workers"), a.get("cutoffs")
    rules = {
        "protocol": a.get("protocol", "k-batch-async"),
        "staleness_bound": a.get("staleness_bound"),
        "workers": None if active is None else ",".join(str(i) for i in active),
        "delay_threshold": a.get("delay_threshold"),
        "cutoff": None if cutoffs is None else ",".join(repr(float(c)) for c in cutoffs),
    }
    for name, value in opts.rules.items():  # given beside --resume: must be the checkpoint's
        if given(name) and value != rules[name] and not (name == "protocol" and value.strip() == rules[name]):
            option = "--" + name.replace("_", "-")
            raise invalid(option, value, f"{rules[name]!r} (the checkpoint's, in '{folder}') to resume it")
    want = build_systems(**mine, **rules)[0].to_dict()
    values: dict[str, Any] = {k: getattr(opts, k) for k in ("n", "K", "tc", "uplink", "downlink", "compute")}
    for name, value in values.items():
        if not given(name):
            continue
        trial = dict(mine, **{name: value})
        if name == "tc":  # the round trip, split in two unless a direction is given
            trial |= {k: values[k] if given(k) else None for k in ("uplink", "downlink")}
        if name in ("n", "K"):
            same = str(value).strip() == mine[name]
        else:
            try:
                same = build_systems(**trial, **rules)[0].to_dict() == want
            except SpecError:
                same = False
        if not same:
            shown = list(value) if name == "compute" else value
            raise invalid(f"--{name}", shown, f"{a[name]!r} (the checkpoint's, in '{folder}') to resume it")
    if given("problem"):  # your own problem (module:attribute) must be named again: the checkpoint has its repr
        if repr(load_problem(opts.problem)) != a["problem"]:
            raise invalid(
                "--problem", opts.problem, f"the problem the checkpoint in '{folder}' trained, {a['problem']}"
            )
        chosen = opts.problem
    else:
        from .options import builtin_problem  # builds a torch problem only if the checkpoint names it

        found = builtin_problem(a["problem"])
        if found is None:
            raise SpecError(
                f"--problem is needed to resume the checkpoint in '{folder}': it trained {a['problem']}, not one of "
                f"{', '.join(PROBLEMS)} (give the module:attribute that makes it)"
            )
        chosen = found
    for name, theirs_key in (("step", "lr"), ("b", "batch"), ("time_unit", "time_unit"), ("seed", "seed")):
        value, theirs = getattr(opts, name), a[theirs_key]
        if given(name) and value != theirs:
            option = "--" + name.replace("_", "-")
            raise invalid(option, value, f"{theirs!r} (the checkpoint's, in '{folder}') to resume it")
    target = opts.updates if given("updates") else ckpt.target
    if target <= ckpt.version:
        raise invalid(
            "--updates",
            target,
            f"an integer > {ckpt.version}, the checkpoint's version (the run it holds is complete: "
            "give a larger --updates to go on)",
        )
    return RunOptions(
        **mine,
        problem=chosen,
        updates=target,
        step=a["lr"],
        b=a["batch"],
        time_unit=a["time_unit"],
        seed=a["seed"],
        rules=rules,
    )
