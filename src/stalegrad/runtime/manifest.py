"""The manifest of a checkpoint (``checkpoint.json``), field by field: what :func:`check_manifest` accepts.

Written by :func:`~stalegrad.runtime.checkpoint.write_checkpoint` (its module docstring says what each field is
for); checked on load before anything in it is used, so that a damaged or edited manifest is one line naming the
field, never a traceback and never a silently wrong resume:

* ``format`` -- :data:`FORMAT`; ``version`` -- an integer ``>= 1``; ``trace_offset`` -- ``version * K``;
  ``time`` -- a finite number; ``updates`` (the target) -- an integer ``>= version``; ``checkpoint_every`` -- ``>= 1``;
* ``parts`` -- names ``part-VVVVVVVV.npz`` in increasing version, the last of ``version``; ``sha256`` -- a digest
  (64 hex digits) for every part;
* ``rounds`` -- ``watermark``: ``n`` integers ``>= 0``; ``above``: ``n`` increasing lists of rounds, each above its
  watermark plus one (the next round would have raised the watermark);
* ``streams`` -- ``seed``: the run's; ``incarnations``: ``n`` integers ``>= 0``;
* ``counts`` -- ``dropped``: counts ``>= 0`` by reason; ``lost``, ``restarted``: ``[worker, version]`` pairs;
  ``received`` (only in a checkpoint written when the run stopped): an integer ``>= 0``;
* ``run`` -- a System description (``n`` up to :data:`~stalegrad.spec.MAX_WORKERS`, ``K``, ``protocol``,
  ``staleness_bound``, ``compute``, ``uplink``, ``downlink``; the models as text, not parsed), ``problem`` (text),
  ``lr > 0``, ``batch >= 1``, ``time_unit`` (``null`` or ``> 0``), ``seed >= 0``.

Fields not named here are left alone (a newer writer may add some).
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from ..errors import SpecError

__all__ = ["FORMAT", "MANIFEST", "Damaged", "check_manifest"]

FORMAT = "stalegrad-checkpoint/1"
MANIFEST = "checkpoint.json"


class Damaged(Exception):
    """What is wrong with a checkpoint (the reason in the message of
    :func:`~stalegrad.runtime.checkpoint.load_checkpoint`)."""


_PART = re.compile(r"part-(\d{8})\.npz")
_HEX = re.compile(r"[0-9a-f]{64}")


def drops(system: Any) -> bool:
    """Whether a run of ``system`` can drop gradients (they are Trace rows too: a checkpoint part then holds more
    than ``K`` rows per version)."""
    from .protocol import RULES

    rules = RULES[system.protocol]
    return rules.current_only or system.staleness_bound is not None or system.delay_threshold is not None


def _field(manifest: dict[str, Any], key: str) -> Any:
    """``manifest`` at the dotted ``key`` (``"rounds.watermark"``)."""
    value: Any = manifest
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            raise Damaged(f"{MANIFEST} lacks {key}")
        value = value[part]
    return value


def _int(value: Any, key: str, low: int = 0, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer from {low} to {high}" if high is not None else f"an integer >= {low}"
        raise Damaged(f"{MANIFEST} field {key} must be {allowed}, got {value!r}")
    return value


def _number(value: Any, key: str, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise Damaged(f"{MANIFEST} field {key} must be a finite number, got {value!r}")
    if low is not None and not value > low:
        raise Damaged(f"{MANIFEST} field {key} must be a number > {low}, got {value!r}")
    return float(value)


def _ints(value: Any, key: str, size: int, low: int = 0) -> list[int]:
    """A list of ``size`` integers ``>= low`` (``size`` -1: any length)."""
    if not isinstance(value, list) or (size >= 0 and len(value) != size):
        length = f"{size} " if size >= 0 else ""
        raise Damaged(f"{MANIFEST} field {key} must be a list of {length}integers, got {value!r}")
    return [_int(x, f"{key}[{i}]", low) for i, x in enumerate(value)]


def _shape(m: dict[str, Any]) -> Any:
    """The run's system as far as its rows need it (``n``, ``K``, the protocol, the staleness bound), its models
    checked as text only: a model given from Python may have no text form that can be read back, and the rows do
    not depend on it."""
    from ..distributions import Deterministic
    from ..spec import MAX_WORKERS, PROTOCOLS, System

    n = _int(_field(m, "run.n"), "run.n", 1, MAX_WORKERS)
    K = _int(_field(m, "run.K"), "run.K", 1)
    protocol = _field(m, "run.protocol")
    if protocol not in PROTOCOLS:
        raise Damaged(f"{MANIFEST} field run.protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    bound = _field(m, "run.staleness_bound")
    if bound is not None:
        _int(bound, "run.staleness_bound")
    compute = _field(m, "run.compute")
    if not isinstance(compute, list) or not compute or not all(isinstance(c, str) for c in compute):
        raise Damaged(f"{MANIFEST} field run.compute must be a list of models in text form, got {compute!r}")
    for key in ("run.uplink", "run.downlink"):
        delay = _field(m, key)
        if not isinstance(delay, str) and (_number(delay, key) < 0):
            raise Damaged(f"{MANIFEST} field {key} must be a number of seconds >= 0 or a model, got {delay!r}")
    run = m["run"]  # the protocol's own fields (a checkpoint of k-batch-async before they existed has none)
    cutoffs = run.get("cutoffs")
    try:
        # the rows do not depend on the compute times: one any cutoff lets finish (mindflayer's check)
        x = 0.5 * min(float(c) for c in cutoffs) if isinstance(cutoffs, list) and cutoffs else 1.0
        return System(
            n=n,
            K=K,
            compute=Deterministic(x),
            protocol=protocol,
            staleness_bound=bound,
            workers=run.get("active_workers"),
            delay_threshold=run.get("delay_threshold"),
            cutoffs=cutoffs,
        )
    except SpecError as exc:
        raise Damaged(f"{MANIFEST} field run: {exc}") from None


def check_manifest(m: dict[str, Any]) -> tuple[Any, int, list[tuple[str, int]]]:
    """Every field of the manifest against its schema: returns the run's System, the version and the parts with
    their versions."""
    if m["format"] != FORMAT:
        raise Damaged(f"{MANIFEST} has format {m['format']!r}, this stalegrad reads {FORMAT!r}")
    run = m["run"]
    if not isinstance(run, dict):
        raise Damaged(f"{MANIFEST} field run must be a JSON object, got {run!r}")
    system = _shape(m)
    n = system.n
    if not isinstance(_field(m, "run.problem"), str):
        raise Damaged(f"{MANIFEST} field run.problem must be text, got {run['problem']!r}")
    _number(_field(m, "run.lr"), "run.lr", low=0.0)
    _int(_field(m, "run.batch"), "run.batch", 1)
    if _field(m, "run.time_unit") is not None:
        _number(run["time_unit"], "run.time_unit", low=0.0)
    seed = _int(_field(m, "run.seed"), "run.seed")
    version = _int(m["version"], "version", 1)
    offset = _int(m["trace_offset"], "trace_offset")
    if drops(system) and offset < version * system.K:
        raise Damaged(
            f"{MANIFEST} field trace_offset must be at least version * K = {version * system.K} (the rows applied, "
            f"and the gradients {system.protocol} dropped), got {offset}"
        )
    if not drops(system) and offset != version * system.K:
        raise Damaged(
            f"{MANIFEST} field trace_offset must be version * K = {version * system.K}, got {m['trace_offset']}"
        )
    _number(m["time"], "time")
    for key, low in (("checkpoint_every", 1), ("updates", version)):
        if key in m:
            _int(m[key], key, low)
    parts = m["parts"]
    if not isinstance(parts, list) or not parts:
        raise Damaged(f"{MANIFEST} field parts must be a non-empty list of part names, got {parts!r}")
    named: list[tuple[str, int]] = []
    for i, part in enumerate(parts):
        match = _PART.fullmatch(part) if isinstance(part, str) else None
        if match is None:
            raise Damaged(f"{MANIFEST} field parts[{i}] must be a name part-VVVVVVVV.npz, got {part!r}")
        v = int(match.group(1))
        if v <= (named[-1][1] if named else 0) or v > version:
            raise Damaged(f"{MANIFEST} field parts[{i}]: {part} is out of order (versions 1..{version}, increasing)")
        named.append((part, v))
    if named[-1][1] != version:
        raise Damaged(f"{MANIFEST} field parts: the last part must be of version {version}, got {named[-1][0]}")
    sums = m.get("sha256")
    if not isinstance(sums, dict):
        raise Damaged(f"{MANIFEST} field sha256 must be a JSON object (part name: digest), got {sums!r}")
    for part, _ in named:
        if not isinstance(sums.get(part), str) or not _HEX.fullmatch(sums[part]):
            raise Damaged(f"{MANIFEST} field sha256 must have a SHA-256 (64 hex digits) for {part}, got "
                           f"{sums.get(part)!r}")  # fmt: skip
    marks = _ints(_field(m, "rounds.watermark"), "rounds.watermark", n)
    above = _field(m, "rounds.above")
    if not isinstance(above, list) or len(above) != n:
        raise Damaged(f"{MANIFEST} field rounds.above must be a list of {n} lists of rounds, got {above!r}")
    for i, rounds in enumerate(above):
        values = _ints(rounds, f"rounds.above[{i}]", -1, marks[i] + 2)
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise Damaged(f"{MANIFEST} field rounds.above[{i}] must be increasing, got {rounds!r}")
    if _int(_field(m, "streams.seed"), "streams.seed") != seed:
        raise Damaged(f"{MANIFEST} field streams.seed must be the run's seed {seed}, got {m['streams']['seed']!r}")
    _ints(_field(m, "streams.incarnations"), "streams.incarnations", n)
    counts = m.get("counts", {})
    if not isinstance(counts, dict) or not isinstance(counts.get("dropped", {}), dict):
        raise Damaged(f"{MANIFEST} field counts must be a JSON object with dropped: {{reason: count}}, got {counts!r}")
    for reason, count in counts.get("dropped", {}).items():
        _int(count, f"counts.dropped.{reason}")
    if "received" in counts:
        _int(counts["received"], "counts.received")
    work = counts.get("work", {})
    if not isinstance(work, dict):
        raise Damaged(f"{MANIFEST} field counts.work must be a JSON object with compute and cancelled, got {work!r}")
    for key, value in work.items():
        if _number(value, f"counts.work.{key}") < 0:
            raise Damaged(f"{MANIFEST} field counts.work.{key} must be a number >= 0, got {value!r}")
    for key in ("lost", "restarted"):
        pairs = counts.get(key, [])
        if not isinstance(pairs, list):
            raise Damaged(f"{MANIFEST} field counts.{key} must be a list of [worker, version] pairs, got {pairs!r}")
        for j, pair in enumerate(pairs):
            if not isinstance(pair, list) or len(pair) != 2:
                raise Damaged(f"{MANIFEST} field counts.{key}[{j}] must be a [worker, version] pair, got {pair!r}")
            _int(pair[0], f"counts.{key}[{j}][0]", 0, n - 1)
            _int(pair[1], f"counts.{key}[{j}][1]")
    return system, version, named
