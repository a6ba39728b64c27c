"""Checkpoints of a real run, and resuming from one (DESIGN.md, "Runtime reliability").

A checkpoint folder holds

* ``part-VVVVVVVV.npz`` (one per checkpoint, ``V`` its version): ``w`` at version ``V`` and what the run recorded
  since the previous checkpoint -- the Trace rows (every column of :data:`~stalegrad.trace.COLUMNS`), the update
  times, the error rows and the downlink delays, times already in time units on the run's own clock. Loaded with
  ``allow_pickle=False``. Plain SGD keeps no optimizer state besides ``w``: a checkpoint is taken right after an
  update, when the K-batch accumulator is empty.
* ``checkpoint.json``, the manifest, written **last** (temporary file, fsync, rename): the format, the version, the
  trace offset (rows up to this checkpoint), the time of the last update, the parts in order with their SHA-256,
  the rounds the master took from each worker (:class:`~stalegrad.runtime.rounds.AppliedRounds`: a watermark plus
  the rounds above it), the random streams and the run's arguments.

A crash between the part and the manifest leaves the previous manifest, which names only the previous parts: the
previous checkpoint stays in force (the orphan part is ignored and overwritten if that version is reached again).

Random streams: the workers run ahead of the master, so no instant of the run has "the" generator states of a
checkpoint. What a resumed run needs is streams that are reproducible and never reuse a draw: the manifest
records the root seed and each worker's incarnation ``r``, and the resumed worker ``i`` draws from incarnation
``r + 1`` -- ``SeedSequence(seed, spawn_key=(i, 4 + r + 1))``, independent of every stream used before
(:func:`~stalegrad.streams.worker_seeds`).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SpecError
from .manifest import FORMAT, MANIFEST, Damaged, check_manifest, drops

#: What the rounds' compute time went to, in time units, as a manifest's counts record it (the whole run's).
WORK = ("compute", "cancelled")

__all__ = ["FORMAT", "MANIFEST", "Checkpoint", "load_checkpoint", "run_args", "write_checkpoint", "write_counts"]

_ARRAYS = ("w", "update_times", "errors", "downlink")
_KEYS = ("format", "version", "trace_offset", "time", "parts", "rounds", "streams", "run")


def run_args(system: Any, problem: Any, lr: float, batch: int, time_unit: float | None, seed: int) -> dict[str, Any]:
    """The arguments a resumed run must share with the run it continues (JSON-ready)."""
    return {
        **system.to_dict(),
        "problem": repr(problem),
        "lr": float(lr),
        "batch": int(batch),
        "time_unit": None if time_unit is None else float(time_unit),
        "seed": int(seed),
    }


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A loaded checkpoint: the manifest, ``w``, and everything recorded up to its version (time units)."""

    folder: Path
    manifest: dict[str, Any]
    w: np.ndarray
    columns: dict[str, np.ndarray]
    update_times: np.ndarray
    errors: np.ndarray
    downlink: np.ndarray

    @property
    def version(self) -> int:
        return int(self.manifest["version"])

    @property
    def time(self) -> float:
        """Time of the checkpoint's last update (time units): where the resumed run's clock starts."""
        return float(self.manifest["time"])

    @property
    def target(self) -> int:
        """The updates the stopped run was to make."""
        return int(self.manifest.get("updates", self.version))

    @property
    def args(self) -> dict[str, Any]:
        return dict(self.manifest["run"])

    @property
    def watermarks(self) -> list[int]:
        return [int(x) for x in self.manifest["rounds"]["watermark"]]

    @property
    def above(self) -> list[list[int]]:
        return [[int(x) for x in a] for a in self.manifest["rounds"]["above"]]

    @property
    def counts(self) -> dict[str, Any]:
        """Gradients dropped by reason, workers lost and restarted ``(worker, version)``, up to this checkpoint."""
        return _counts(self.manifest.get("counts"))

    @property
    def incarnations(self) -> list[int]:
        return [int(x) for x in self.manifest["streams"]["incarnations"]]

    def mismatches(self, given: dict[str, Any]) -> list[tuple[str, Any, Any]]:
        """``(name, given, checkpoint's)`` for every argument of ``given`` that differs from the checkpoint's."""
        mine = self.args
        return [(k, v, mine.get(k)) for k, v in given.items() if _norm(v) != _norm(mine.get(k))]


def _norm(value: Any) -> Any:
    return json.loads(json.dumps(value))  # tuples as lists, numpy scalars refused early: compare as JSON would


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write_checkpoint(
    folder: str | Path,
    previous: dict[str, Any] | None,
    *,
    version: int,
    time: float,
    w: np.ndarray,
    columns: dict[str, np.ndarray],
    update_times: np.ndarray,
    errors: np.ndarray,
    downlink: np.ndarray,
    watermarks: list[int],
    above: list[list[int]],
    incarnations: list[int],
    args: dict[str, Any],
    checkpoint_every: int,
    target: int,
    counts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the part of version ``version`` (the rows since ``previous``, the last manifest written), then the
    manifest; returns the new manifest. ``counts``: the whole run's gradients dropped by reason and workers lost
    and restarted (``(worker, version)`` pairs), so that a resumed run reports them all."""
    from .. import __version__
    from ..artefacts import write_text
    from ..trace import COLUMNS

    folder = Path(folder)
    name = f"part-{version:08d}.npz"
    arrays = {k: np.asarray(columns[k], dtype=COLUMNS[k]) for k in COLUMNS}
    arrays |= {
        "w": np.asarray(w, dtype=np.float64),
        "update_times": np.asarray(update_times, dtype=np.float64),
        "errors": np.asarray(errors, dtype=np.float64).reshape(-1, 3),
        "downlink": np.asarray(downlink, dtype=np.float64),
    }
    data = _npz_bytes(arrays)
    write_text(folder / name, data)
    before = previous or {"parts": [], "sha256": {}, "trace_offset": 0}
    rows = int(before["trace_offset"]) + len(arrays["worker"])
    manifest = {
        "format": FORMAT,
        "stalegrad": __version__,
        "version": int(version),
        "trace_offset": rows,
        "time": float(time),
        "parts": [*before["parts"], name],
        "sha256": {**before["sha256"], name: hashlib.sha256(data).hexdigest()},
        "rounds": {"watermark": [int(x) for x in watermarks], "above": [sorted(int(x) for x in a) for a in above]},
        "streams": {
            "seed": int(args["seed"]),
            "incarnations": [int(x) for x in incarnations],
            "rule": "a resumed worker i draws from incarnation r + 1: SeedSequence(seed, spawn_key=(i, 5 + r))",
        },
        "checkpoint_every": int(checkpoint_every),
        "updates": int(target),  # the run's target (a resumed run may raise it)
        "counts": _counts(counts),
        "run": args,
    }
    _write_manifest(folder / MANIFEST, manifest)
    return manifest


def write_counts(folder: str | Path, manifest: dict[str, Any], counts: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the manifest with the run's final counts (gradients dropped after the last checkpoint, at the end of
    the run); returns the new manifest. Atomic, like every manifest write."""
    manifest = {**manifest, "counts": _counts(counts)}
    _write_manifest(Path(folder) / MANIFEST, manifest)
    return manifest


def _counts(counts: dict[str, Any] | None) -> dict[str, Any]:
    """The counts as a manifest records them (``work``: the time units of the rounds whose gradients reached the
    master, ``compute``, and of the rounds abandoned, ``cancelled``; 0 in a checkpoint written before they were
    recorded); ``received`` (gradients that reached the master, the whole run's) only
    where the count identity holds -- a checkpoint written when the run stopped (at the end, a failure, Ctrl-C):
    its rows plus its drops. A periodic one is written while gradients travel, and has none."""
    counts = counts or {}
    out: dict[str, Any] = {
        "dropped": {str(k): int(v) for k, v in sorted(dict(counts.get("dropped", {})).items())},
        "lost": [[int(w), int(v)] for w, v in counts.get("lost", [])],
        "restarted": [[int(w), int(v)] for w, v in counts.get("restarted", [])],
    }
    if counts.get("received") is not None:
        out["received"] = int(counts["received"])
    work = counts.get("work")
    out["work"] = {k: float(work.get(k, 0.0)) if work else 0.0 for k in WORK}
    return out


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """The last write of a checkpoint, atomic (a function of its own, so that tests can make it fail)."""
    from ..artefacts import write_json

    write_json(path, manifest)


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def load_checkpoint(folder: str | Path, *, name: str = "resume") -> Checkpoint:
    """Read and check a checkpoint folder; every problem is one :class:`SpecError` naming ``name`` and the folder.

    Checked before anything is used: every field of the manifest (types and ranges, one entry per worker), a
    SHA-256 for every part (and the part's bytes against it), the arrays of every part, the rows as a Trace
    (:meth:`~stalegrad.trace.Trace.validate`: updates ``1..version``, ``K`` rows each, ...), the time of the last
    update, and the rounds the manifest says were taken against the rows (a round in the rows that is not among
    them would be taken again by the resumed master).
    """
    path = Path(folder)

    def bad(reason: str) -> SpecError:
        return SpecError(f"{name} must be a folder with a checkpoint ({MANIFEST}), got '{folder}': {reason}")

    if not path.is_dir():
        raise bad("no such folder")
    mpath = path / MANIFEST
    if not mpath.is_file():
        raise bad(f"no {MANIFEST} in it (was the run started with --checkpoint-every?)")
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad(f"{MANIFEST} is not readable JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise bad(f"{MANIFEST} is not a JSON object")
    missing = [k for k in _KEYS if k not in manifest]
    if missing:
        raise bad(f"{MANIFEST} lacks {', '.join(missing)}")
    try:
        return _load(path, manifest)
    except Damaged as exc:
        raise bad(str(exc)) from None


def _load(path: Path, manifest: dict[str, Any]) -> Checkpoint:
    from ..trace import COLUMNS, Trace

    system, version, named = check_manifest(manifest)
    K = system.K
    chunks: list[dict[str, np.ndarray]] = []
    before = 0
    for part, v in named:
        ppath = path / part
        if not ppath.is_file():
            raise Damaged(f"{part} is missing")
        raw = ppath.read_bytes()
        if hashlib.sha256(raw).hexdigest() != manifest["sha256"][part]:
            raise Damaged(f"{part} is corrupt (its SHA-256 differs from the manifest's)")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                chunk = {k: z[k] for k in z.files}
        except (OSError, ValueError, EOFError) as exc:
            raise Damaged(f"{part} is not a readable .npz ({exc})") from None
        lacking = [k for k in (*COLUMNS, *_ARRAYS) if k not in chunk]
        if lacking:
            raise Damaged(f"{part} lacks {', '.join(lacking)}")
        rows = (v - before) * K  # the rows applied; a protocol that drops has its dropped rows too
        if drops(system) and chunk["worker"].ndim == 1 and chunk["worker"].shape[0] >= rows:
            rows = chunk["worker"].shape[0]
        shapes = {
            **{k: (dt, (rows,)) for k, dt in COLUMNS.items()},
            "update_times": (np.float64, (v - before,)),
        }
        for k, (dt, shape) in shapes.items():
            if chunk[k].dtype != dt or chunk[k].shape != shape:
                raise Damaged(f"{part} array {k} must be {np.dtype(dt)} of shape {shape} (versions {before + 1}..{v}, "
                               f"K = {K}), got {chunk[k].dtype} of shape {chunk[k].shape}")  # fmt: skip
        if not np.isfinite(chunk["update_times"]).all():
            raise Damaged(f"{part} array update_times must be finite")
        w, errors, down = chunk["w"], chunk["errors"], chunk["downlink"]
        if w.dtype != np.float64 or w.ndim != 1 or not w.size or (chunks and w.shape != chunks[0]["w"].shape):
            raise Damaged(f"{part} array w must be a 1-d float64 array (one size in every part), got {w.dtype} of "
                           f"shape {w.shape}")  # fmt: skip
        if errors.dtype != np.float64 or errors.ndim != 2 or errors.shape[1] != 3:
            raise Damaged(f"{part} array errors must be float64 of shape (rows, 3), got {errors.dtype} {errors.shape}")
        if down.dtype != np.float64 or down.ndim != 1 or not (np.isfinite(down).all() and (down >= 0).all()):
            raise Damaged(f"{part} array downlink must be 1-d float64 delays, finite and >= 0")
        chunks.append(chunk)
        before = v
    columns = {k: np.concatenate([c[k] for c in chunks]) for k in COLUMNS}
    update_times = np.concatenate([c["update_times"] for c in chunks])
    ends = np.cumsum([len(c["worker"]) for c in chunks])
    if int(ends[-1]) != int(manifest["trace_offset"]):
        raise Damaged(f"{MANIFEST} field trace_offset must be the rows of its parts, {int(ends[-1])}, got "
                       f"{manifest['trace_offset']}")  # fmt: skip

    def row(i: int) -> str:
        j = int(np.searchsorted(ends, i, side="right"))
        return f"row {i - (int(ends[j - 1]) if j else 0) + 1} of {named[j][0]}"

    try:
        Trace(columns, update_times, system).validate(source="its trace at", row=row)
    except SpecError as exc:
        raise Damaged(str(exc)) from None
    if float(update_times[-1]) != float(manifest["time"]):
        raise Damaged(f"{MANIFEST} field time must be the time of update {version}, {float(update_times[-1])!r} in its "
                       f"part, got {manifest['time']!r}")  # fmt: skip
    _check_rounds(manifest, columns, row)
    return Checkpoint(
        folder=path,
        manifest=manifest,
        w=chunks[-1]["w"],
        columns=columns,
        update_times=update_times,
        errors=np.concatenate([c["errors"] for c in chunks]),
        downlink=np.concatenate([c["downlink"] for c in chunks]),
    )


def _check_rounds(manifest: dict[str, Any], columns: dict[str, np.ndarray], row: Any) -> None:
    """Every (worker, round) in the rows is among the rounds the manifest says were taken (up to the worker's
    watermark, or above it): else the resumed master would take it again."""
    marks = np.asarray(manifest["rounds"]["watermark"], dtype=np.int64)
    w, r = columns["worker"], columns["round"]
    high = np.flatnonzero(r > marks[w])
    above = [set(a) for a in manifest["rounds"]["above"]]
    for i in high.tolist():
        k = int(w[i])
        if int(r[i]) not in above[k]:
            raise Damaged(
                f"{MANIFEST} field rounds.watermark[{k}] = {int(marks[k])}: round {int(r[i])} of worker {k} "
                f"({row(i)}) is applied but not among the rounds taken (rounds.above[{k}] = {sorted(above[k])})"
            )
