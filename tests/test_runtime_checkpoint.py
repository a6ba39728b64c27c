"""Checkpoints of a real run, without Ray: the files, the crash between part and manifest, bad resume input.

(Stopping a real run and resuming it is in ``tests/test_runtime.py``, with the other Ray runs.)
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.runtime import checkpoint as ck
from stalegrad.runtime.protocol import MasterCore
from stalegrad.runtime.rounds import AppliedRounds
from stalegrad.spec import System
from stalegrad.trace import COLUMNS
from stalegrad.train import LinearRegression

PAPER = shifted_exponential(alpha=1, rate=0.6667)
SYSTEM = System(n=2, K=1, tc=1, compute=PAPER)


def args(**changes):
    a = ck.run_args(SYSTEM, LinearRegression(), 0.05, 16, 0.01, 7)
    a.update(changes)
    return a


def rows(first, last):
    """K = 1 rows for updates first..last, alternating workers, each on the version before."""
    u = np.arange(first, last + 1)
    cols = {
        "worker": (u % 2).astype(np.int32),
        "round": (u + 1) // 2,
        "start": u - 1.0,
        "sent": u - 0.5,
        "arrive": u * 1.0,
        "version": u - 1,
        "update": u,
        "staleness": np.zeros(u.size, dtype=np.int64),
        "dropped": np.zeros(u.size, dtype=np.int8),
    }
    return {k: np.asarray(v, dtype=COLUMNS[k]) for k, v in cols.items()}


def write(folder, previous, first, last, w):
    return ck.write_checkpoint(
        folder,
        previous,
        version=last,
        time=float(last),
        w=np.full(20, w),
        columns=rows(first, last),
        update_times=np.arange(first, last + 1, dtype=float),
        errors=np.array([[v, float(v), 1.0 / (v + 1)] for v in range(first, last + 1)]),
        downlink=np.full(2 * (last - first + 1), 0.5),
        watermarks=[last // 2, (last + 1) // 2],
        above=[[], []],
        incarnations=[0, 0],
        args=args(),
        checkpoint_every=10,
        target=50,
    )


def test_a_checkpoint_is_parts_and_a_manifest_written_last(tmp_path):
    m1 = write(tmp_path, None, 1, 10, 1.0)
    write(tmp_path, m1, 11, 20, 2.0)
    c = ck.load_checkpoint(tmp_path)
    assert c.version == 20 and c.time == 20.0 and c.target == 50
    assert c.w.tolist() == [2.0] * 20
    assert c.columns["update"].tolist() == list(range(1, 21)) and c.update_times.size == 20
    assert c.errors[:, 0].tolist() == list(range(1, 21)) and c.downlink.size == 40
    assert c.watermarks == [10, 10] and c.above == [[], []] and c.incarnations == [0, 0]
    manifest = json.loads((tmp_path / ck.MANIFEST).read_text())
    assert manifest["parts"] == ["part-00000010.npz", "part-00000020.npz"] and manifest["trace_offset"] == 20
    with np.load(tmp_path / "part-00000020.npz", allow_pickle=False) as z:  # plain arrays: no pickle needed
        assert set(z.files) == {*COLUMNS, "w", "update_times", "errors", "downlink"}
    assert c.mismatches(args()) == []
    assert c.mismatches(args(lr=0.1, n=3)) == [("n", 3, 2), ("lr", 0.1, 0.05)]


def test_a_crash_between_the_part_and_the_manifest_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    m1 = write(tmp_path, None, 1, 10, 1.0)

    def crash(path, manifest):
        raise OSError("disk full (injected)")

    monkeypatch.setattr(ck, "_write_manifest", crash)
    with pytest.raises(OSError, match="injected"):
        write(tmp_path, m1, 11, 20, 2.0)
    assert (tmp_path / "part-00000020.npz").is_file()  # the part was written, the manifest was not
    c = ck.load_checkpoint(tmp_path)
    assert c.version == 10 and c.w.tolist() == [1.0] * 20 and c.columns["update"].tolist() == list(range(1, 11))
    assert not list(tmp_path.glob(".*.tmp")), "no temporary file is left behind"
    monkeypatch.undo()
    write(tmp_path, m1, 11, 20, 2.0)  # the next attempt overwrites the orphan part
    assert ck.load_checkpoint(tmp_path).version == 20


def test_the_master_starts_from_a_checkpoint_above_every_round_taken():
    rounds = AppliedRounds(2, [5, 3], [[7], []])
    assert rounds.state() == ([5, 3], [[7], []]) and rounds.next_round(0) == 8 and rounds.next_round(1) == 4
    core = MasterCore(2, 1, np.ones(1), 0.5, updates=12, version=10, rounds=rounds)
    assert not core.receive(0, 7, 0, 1, 1, 10, np.ones(1))  # taken before the checkpoint: a duplicate
    assert core.receive(0, 8, 0, 1, 1, 10, np.ones(1)) and core.version == 11 and core.first == 10
    assert core.columns()["update"].tolist() == [11] and core.dropped["duplicate"] == 1


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / ck.MANIFEST).unlink(), "no checkpoint.json in it"),
        (lambda d: (d / ck.MANIFEST).write_text("{not json"), "checkpoint.json is not readable JSON"),
        (lambda d: (d / ck.MANIFEST).write_text("{}"), "checkpoint.json lacks format, version"),
        (lambda d: (d / "part-00000010.npz").unlink(), "part-00000010.npz is missing"),
        (lambda d: (d / "part-00000020.npz").write_bytes(b"garbage"), "part-00000020.npz is corrupt"),
    ],
)
def test_a_damaged_checkpoint_fails_with_one_line_naming_what_is_wrong(tmp_path, damage, match):
    write(tmp_path, write(tmp_path, None, 1, 10, 1.0), 11, 20, 2.0)
    damage(tmp_path)
    with pytest.raises(SpecError, match=match) as info:
        ck.load_checkpoint(tmp_path)
    assert str(info.value).startswith(f"resume must be a folder with a checkpoint (checkpoint.json), got '{tmp_path}'")
    assert "\n" not in str(info.value)


def test_resume_checks_its_arguments_before_ray_starts(tmp_path):
    from stalegrad.runtime import run

    with pytest.raises(SpecError, match="no such folder"):
        run(SYSTEM, LinearRegression(), 50, time_unit=0.01, resume=tmp_path / "nothing")
    write(tmp_path, None, 1, 10, 1.0)
    with pytest.raises(SpecError, match=r"lr must be 0.05 \(the checkpoint's, in .*\) to resume it, got 0.1"):
        run(SYSTEM, LinearRegression(), 50, time_unit=0.01, lr=0.1, resume=tmp_path)
    with pytest.raises(SpecError, match=r"n must be 2 .* got 3"):
        run(System(n=3, K=1, tc=1, compute=PAPER), LinearRegression(), 50, time_unit=0.01, resume=tmp_path)
    with pytest.raises(SpecError, match=r"seed must be 7 .* got 8"):
        run(SYSTEM, LinearRegression(), 50, time_unit=0.01, seed=8, resume=tmp_path)
    with pytest.raises(SpecError, match=r"updates must be an integer > 10 \(the checkpoint's version\)"):
        run(SYSTEM, LinearRegression(), 10, time_unit=0.01, resume=tmp_path)
    with pytest.raises(SpecError, match="checkpoint_dir must be a folder without a checkpoint"):
        run(SYSTEM, LinearRegression(), 50, time_unit=0.01, checkpoint_dir=tmp_path, checkpoint_every=5)
    with pytest.raises(SpecError, match="checkpoint_every must be 0 unless checkpoint_dir is given"):
        run(SYSTEM, LinearRegression(), 50, time_unit=0.01, checkpoint_every=5)


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--resume", "{missing}"], "--resume must be a folder with a checkpoint (checkpoint.json), got"),
        (["--resume", "{empty}"], "no checkpoint.json in it"),
        (["--resume", "{bad}"], "checkpoint.json is not readable JSON"),
        (["--resume", "{good}", "--n", "4"], "--n must be 2 (the checkpoint's, in"),
        (["--resume", "{good}", "--compute", "expon(scale=2)"], "--compute must be ['2*expon(loc=1.0, scale="),
        (["--resume", "{good}", "--step", "0.1"], "--step must be 0.05 (the checkpoint's"),
        (["--resume", "{good}", "--updates", "10"], "--updates must be an integer > 10, the checkpoint's version"),
        (["--n", "2", "--K", "1", "--checkpoint-every", "5"], "--checkpoint-every must be 0 unless --out DIR"),
        (["--n", "2", "--K", "1", "--checkpoint-every", "5", "--out", "{good}"], "--out must be a folder without"),
        (["--K", "1"], "--n and --K are needed (or --resume DIR"),
    ],
)
def test_cli_bad_resume_input_is_one_error_line_and_exit_2(tmp_path, cli_here, argv, match):
    folders = {k: tmp_path / k for k in ("missing", "empty", "bad", "good")}
    for k in ("empty", "bad"):
        folders[k].mkdir()
    (folders["bad"] / ck.MANIFEST).write_text("{")
    write(folders["good"], None, 1, 10, 1.0)
    code, _, err = cli_here(["run", *(a.format(**folders) for a in argv)])  # in this process: it fails before Ray
    assert code == 2, err
    assert err.startswith("Error:") and match in err and err.count("\n") == 1, err


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_checkpoint_files_are_written_with_the_users_umask(tmp_path, umask, mode):
    """The parts and the manifest get the permissions of any new file (0666 less the umask), as ``trace.csv`` and
    ``run.json`` do -- not the 0600 of a temporary file renamed into place."""
    import os

    old = os.umask(umask)
    try:
        write(tmp_path, write(tmp_path, None, 1, 10, 0.5), 11, 20, 0.25)
    finally:
        os.umask(old)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["checkpoint.json", "part-00000010.npz", "part-00000020.npz"]
    assert {oct((tmp_path / name).stat().st_mode & 0o777) for name in names} == {oct(mode)}
