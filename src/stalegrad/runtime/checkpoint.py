"""Checkpoints of a real run, and resuming from one (DESIGN.md, "Runtime reliability").

A checkpoint folder holds

* ``part-VVVVVVVV.npz`` (one per checkpoint, ``V`` its version): ``w`` at version ``V`` and what the run recorded
  since the previous checkpoint -- the Trace rows (every column of :data:`~stalegrad.trace.COLUMNS`), the update
  times, the error rows and the downlink delays, times already in time units on the run's own clock. Loaded with
  ``allow_pickle=False``. Plain SGD keeps no optimizer state besides ``w``: a checkpoint is taken right after an
  update, when the K-batch accumulator is empty.
* ``checkpoint.json``, the manifest, written **last** (temporary file, fsync, rename): the format, the version, the
  trace offset (rows up to this checkpoint), the time of the last update, the parts in order with their SHA-256,
  the rounds the master took from each worker (:class:`~stalegrad.runtime.master.AppliedRounds`: a watermark plus
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

__all__ = ["FORMAT", "MANIFEST", "Checkpoint", "load_checkpoint", "run_args", "write_checkpoint", "write_counts"]

FORMAT = "stalegrad-checkpoint/1"
MANIFEST = "checkpoint.json"
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
    counts = counts or {}
    return {
        "dropped": {str(k): int(v) for k, v in sorted(dict(counts.get("dropped", {})).items())},
        "lost": [[int(w), int(v)] for w, v in counts.get("lost", [])],
        "restarted": [[int(w), int(v)] for w, v in counts.get("restarted", [])],
    }


def _write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """The last write of a checkpoint, atomic (a function of its own, so that tests can make it fail)."""
    from ..artefacts import write_json

    write_json(path, manifest)


def has_checkpoint(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def load_checkpoint(folder: str | Path, *, name: str = "resume") -> Checkpoint:
    """Read and check a checkpoint folder; every problem is one :class:`SpecError` naming ``name`` and the folder."""
    from ..trace import COLUMNS

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
    if manifest["format"] != FORMAT:
        raise bad(f"{MANIFEST} has format {manifest['format']!r}, this stalegrad reads {FORMAT!r}")
    try:
        parts = [str(p) for p in manifest["parts"]]
        sums = dict(manifest.get("sha256", {}))
        version, offset = int(manifest["version"]), int(manifest["trace_offset"])
        n = int(manifest["run"]["n"])
        K = int(manifest["run"]["K"])
        rounds = manifest["rounds"]
        if len(rounds["watermark"]) != n or len(rounds["above"]) != n or len(manifest["streams"]["incarnations"]) != n:
            raise ValueError("rounds and streams must have one entry per worker")
    except (TypeError, ValueError, KeyError) as exc:
        raise bad(f"{MANIFEST} is malformed ({exc})") from None
    if not parts:
        raise bad(f"{MANIFEST} names no part")
    chunks: list[dict[str, np.ndarray]] = []
    for part in parts:
        ppath = path / part
        if Path(part).name != part or not ppath.is_file():
            raise bad(f"{part} is missing")
        raw = ppath.read_bytes()
        if part in sums and hashlib.sha256(raw).hexdigest() != sums[part]:
            raise bad(f"{part} is corrupt (its SHA-256 differs from the manifest's)")
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                chunks.append({k: z[k] for k in z.files})
        except (OSError, ValueError, EOFError) as exc:
            raise bad(f"{part} is not a readable .npz ({exc})") from None
        lacking = [k for k in (*COLUMNS, "w", "update_times", "errors", "downlink") if k not in chunks[-1]]
        if lacking:
            raise bad(f"{part} lacks {', '.join(lacking)}")
    columns = {k: np.concatenate([c[k] for c in chunks]).astype(COLUMNS[k]) for k in COLUMNS}
    update_times = np.concatenate([c["update_times"] for c in chunks])
    rows = len(columns["worker"])
    if rows != offset or update_times.size != version or rows != version * K:
        raise bad(
            f"its parts hold {rows} rows and {update_times.size} updates; the manifest says trace offset {offset} "
            f"and version {version} (K = {K})"
        )
    if version and not np.array_equal(np.unique(columns["update"]), np.arange(1, version + 1)):
        raise bad("its rows do not cover updates 1..version")
    return Checkpoint(
        folder=path,
        manifest=manifest,
        w=chunks[-1]["w"],
        columns=columns,
        update_times=update_times,
        errors=np.concatenate([c["errors"].reshape(-1, 3) for c in chunks]),
        downlink=np.concatenate([c["downlink"] for c in chunks]),
    )
