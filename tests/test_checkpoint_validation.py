"""A damaged checkpoint is refused on resume with one line naming what is wrong (no Ray: the checkpoints are written
with :mod:`stalegrad.runtime.checkpoint` directly, as a run writes them)."""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.runtime import checkpoint as ck
from stalegrad.spec import System
from stalegrad.trace import COLUMNS
from stalegrad.train import LinearRegression

SYSTEM = System(n=2, K=2, tc=1, compute=shifted_exponential(alpha=1, rate=0.6667))


def rows(first, last):
    """K = 2 rows per update for updates first..last: worker 0 and worker 1 each send one round per update, on the
    version before it (staleness 0)."""
    u = np.repeat(np.arange(first, last + 1), 2)
    cols = {
        "worker": np.tile([0, 1], last - first + 1),
        "round": u,
        "start": u - 1.0,
        "sent": u - 0.5,
        "arrive": u + np.tile([0.0, 0.25], last - first + 1),
        "version": u - 1,
        "update": u,
        "staleness": np.zeros(u.size),
        "dropped": np.zeros(u.size),
    }
    return {k: np.array(v, dtype=COLUMNS[k]) for k, v in cols.items()}  # copies: no two columns share memory


def write(folder, previous, first, last, *, above=None, marks=None, columns=None):
    cols = rows(first, last) if columns is None else columns
    return ck.write_checkpoint(
        folder,
        previous,
        version=last,
        time=last + 0.25,
        w=np.full(20, float(last)),
        columns=cols,
        update_times=np.arange(first, last + 1) + 0.25,
        errors=np.array([[v, v + 0.25, 1.0 / (v + 1)] for v in range(first, last + 1)]),
        downlink=np.full(2 * (last - first + 1), 0.5),
        watermarks=[last, last] if marks is None else marks,
        above=[[], []] if above is None else above,
        incarnations=[0, 0],
        args=ck.run_args(SYSTEM, LinearRegression(), 0.05, 16, 0.01, 7),
        checkpoint_every=10,
        target=50,
        counts={"dropped": {"duplicate": 0}, "lost": [], "restarted": []},
    )


@pytest.fixture
def good(tmp_path):
    """A checkpoint at version 20 of two parts (versions 1..10, 11..20)."""
    write(tmp_path, write(tmp_path, None, 1, 10), 11, 20)
    assert ck.load_checkpoint(tmp_path).version == 20
    return tmp_path


def edit_manifest(folder, change):
    m = json.loads((folder / ck.MANIFEST).read_text())
    change(m)
    (folder / ck.MANIFEST).write_text(json.dumps(m))


def edit_part(folder, name, change, *, rehash=True):
    """Change the arrays of a part; ``rehash``: record its new SHA-256 too (only the content is wrong)."""
    with np.load(folder / name, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    (folder / name).write_bytes(buf.getvalue())
    if rehash:
        edit_manifest(folder, lambda m: m["sha256"].__setitem__(name, hashlib.sha256(buf.getvalue()).hexdigest()))


def refused(folder, match):
    with pytest.raises(SpecError, match=match) as info:
        ck.load_checkpoint(folder)
    message = str(info.value)
    assert message.startswith(f"resume must be a folder with a checkpoint (checkpoint.json), got '{folder}': ")
    assert "\n" not in message
    return message


def setter(path, value):
    """A manifest edit: set the field at ``path`` (keys and indices) to ``value``."""

    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def deleter(*path):
    def change(m):
        node = m
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return change


# the edits that ended in a traceback, and the neighbours of each
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (setter(["updates"], "x"), r"field updates must be an integer >= 20, got 'x'"),
        (setter(["updates"], 12), r"field updates must be an integer >= 20, got 12"),
        (setter(["checkpoint_every"], "x"), r"field checkpoint_every must be an integer >= 1, got 'x'"),
        (setter(["time"], "abc"), r"field time must be a finite number, got 'abc'"),
        (setter(["time"], 3.5), r"field time must be the time of update 20, 20.25 in its part, got 3.5"),
        (deleter("run", "lr"), r"checkpoint.json lacks run.lr"),
        (setter(["run", "lr"], -1), r"field run.lr must be a number > 0.0, got -1"),
        (setter(["run", "batch"], 1.5), r"field run.batch must be an integer >= 1, got 1.5"),
        (setter(["run", "n"], 3), r"field rounds.watermark must be a list of 3 integers, got \[20, 20\]"),
        (setter(["run", "n"], "x"), r"field run.n must be an integer from 1 to 1000000, got 'x'"),
        (setter(["run", "n"], 10**11), r"field run.n must be an integer from 1 to 1000000, got 100000000000"),
        (setter(["run", "K"], 3), r"field trace_offset must be version \* K = 60, got 40"),
        (setter(["run", "K"], 0), r"field run.K must be an integer >= 1, got 0"),
        (setter(["run", "protocol"], "x"), r"field run.protocol must be one of k-batch-async, "),
        (setter(["run", "staleness_bound"], -1), r"field run.staleness_bound must be an integer >= 0, got -1"),
        (setter(["run", "uplink"], -1), r"field run.uplink must be a number of seconds >= 0 or a model, got -1"),
        (setter(["run", "compute"], "x"), r"field run.compute must be a list of models in text form, got 'x'"),
        (setter(["run", "seed"], 8), r"field streams.seed must be the run's seed 8, got 7"),
        (setter(["counts", "dropped", "duplicate"], 1.5), r"field counts.dropped.duplicate must be an integer >= 0"),
        (setter(["counts", "lost"], [[5, 3]]), r"field counts.lost\[0\]\[0\] must be an integer from 0 to 1, got 5"),
        (setter(["streams", "incarnations"], [0, "x"]), r"field streams.incarnations\[1\] must be an integer >= 0"),
        (setter(["streams", "incarnations"], [0]), r"field streams.incarnations must be a list of 2 integers"),
        (setter(["rounds", "watermark"], [1.5, 20]), r"field rounds.watermark\[0\] must be an integer >= 0, got 1.5"),
        (setter(["rounds", "above"], [[25, 23], []]), r"field rounds.above\[0\] must be increasing"),
        (setter(["rounds", "above"], [[20], []]), r"field rounds.above\[0\]\[0\] must be an integer >= 22, got 20"),
        (setter(["version"], "x"), r"field version must be an integer >= 1, got 'x'"),
        (setter(["version"], 10), r"field trace_offset must be version \* K = 20, got 40"),
        (setter(["trace_offset"], 38), r"field trace_offset must be version \* K = 40, got 38"),
        (setter(["parts"], ["../x.npz"]), r"field parts\[0\] must be a name part-VVVVVVVV.npz, got '../x.npz'"),
        (setter(["parts"], ["part-00000020.npz", "part-00000010.npz"]), r"parts\[1\]: part-00000010.npz is out of"),
        (setter(["parts"], ["part-00000010.npz"]), r"the last part must be of version 20, got part-00000010.npz"),
        (setter(["sha256", "part-00000010.npz"], "beef"), r"must have a SHA-256 \(64 hex digits\) for part-00000010"),
    ],
)
def test_every_manifest_field_is_checked(good, change, match):
    edit_manifest(good, change)
    refused(good, match)


def test_a_part_changed_with_its_digest_deleted_is_refused(good):
    """The issue's silent case: ``w`` changed and its SHA-256 entry deleted (the check was skipped)."""
    edit_part(good, "part-00000020.npz", lambda a: a.__setitem__("w", a["w"] * 1e3), rehash=False)
    edit_manifest(good, deleter("sha256", "part-00000020.npz"))
    refused(good, r"field sha256 must have a SHA-256 \(64 hex digits\) for part-00000020.npz, got None")


def test_a_lowered_watermark_is_refused(good):
    """The issue's other silent case: ``rounds.watermark`` lowered to 0, so the resumed master would take the rounds
    of the trace again (40 duplicate (worker, round) pairs)."""
    edit_manifest(good, setter(["rounds", "watermark"], [0, 0]))
    refused(
        good,
        r"field rounds.watermark\[0\] = 0: round 1 of worker 0 \(row 1 of part-00000010.npz\) is applied but not "
        r"among the rounds taken \(rounds.above\[0\] = \[\]\)",
    )
    edit_manifest(good, setter(["rounds", "watermark"], [20, 19]))
    refused(good, r"round 20 of worker 1 \(row 20 of part-00000020.npz\) is applied but not among the rounds taken")


def test_rounds_taken_above_a_gap_and_rounds_in_flight_load(tmp_path):
    """Worker 0's round 3 was still travelling: its rounds 4.. were taken above a watermark of 2. Worker 1's last
    round was taken in a partial batch (interrupted): taken, not in the rows. Both are what a run writes."""
    cols = rows(1, 4)
    cols["round"][[4, 6]] = [4, 5]  # worker 0: rounds 1, 2, 4, 5
    write(tmp_path, None, 1, 4, columns=cols, marks=[2, 5], above=[[4, 5], []])
    c = ck.load_checkpoint(tmp_path)
    assert c.watermarks == [2, 5] and c.above == [[4, 5], []]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (
            lambda a: a["version"].__setitem__(5, 13),
            r"its trace at row 6 of part-00000020.npz, column version: version 13 is not older than update 13",
        ),
        (
            lambda a: a["round"].__setitem__(3, 11),
            r"its trace at row 4 of part-00000020.npz, column round: round 11 of worker 1 is also in row 2 of "
            r"part-00000020.npz",
        ),
        (
            lambda a: a["update"].__setitem__(4, 14),
            r"row 5 of part-00000020.npz, column update: update 13 is missing: the row after update 12.s is in "
            r"update 14",
        ),
        (
            lambda a: a["worker"].__setitem__(0, 7),
            r"row 1 of part-00000020.npz, column worker: must be a worker from 0 to n-1 = 1, got 7",
        ),
        (lambda a: a["start"].__setitem__(0, np.nan), r"row 1 of part-00000020.npz, column start: must be a finite"),
        (lambda a: a.__setitem__("worker", a["worker"][:-1]), r"part-00000020.npz array worker must be int32 of shape"),
        (lambda a: a.__setitem__("update_times", a["update_times"] + np.inf), r"array update_times must be finite"),
        (lambda a: a.__setitem__("w", a["w"][:3]), r"array w must be a 1-d float64 array \(one size in every part\)"),
        (lambda a: a.__setitem__("downlink", -a["downlink"]), r"array downlink must be 1-d float64 delays"),
        (lambda a: a.pop("errors"), r"part-00000020.npz lacks errors"),
    ],
)
def test_the_rows_of_the_parts_are_checked_as_a_trace(good, change, match):
    """Parts whose digest was recomputed after the edit: the content itself is checked."""
    edit_part(good, "part-00000020.npz", change)
    refused(good, match)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (setter(["updates"], "x"), "field updates must be an integer >= 20, got 'x'"),
        (setter(["rounds", "watermark"], [0, 0]), "is applied but not among the rounds taken"),
        (deleter("run", "lr"), "checkpoint.json lacks run.lr"),
    ],
)
def test_cli_resume_of_a_damaged_checkpoint_is_one_error_line_and_exit_2(good, run_cli, change, match):
    edit_manifest(good, change)
    code, out, err = run_cli(["run", "--resume", str(good)])
    assert code == 2, err
    assert err.startswith("Error: --resume must be a folder with a checkpoint") and match in err, err
    assert err.count("\n") == 1 and out == ""


class OwnModel:
    """A compute-time model given from Python, with no text form that can be read back."""

    def rvs(self, size=1, random_state=None):
        return np.full(size, 2.0)

    def mean(self):
        return 2.0

    def cdf(self, x):
        return np.asarray(x) >= 2.0

    def support(self):
        return (2.0, 2.0)


def test_a_run_of_a_model_without_a_text_form_resumes(tmp_path, monkeypatch):
    """The manifest's models are checked as text, not parsed: a run of one's own model can be resumed."""
    system = System(n=2, K=2, compute=OwnModel())
    args = ck.run_args(system, LinearRegression(), 0.05, 16, 0.01, 7)
    assert "OwnModel" in args["compute"][0]
    monkeypatch.setattr(ck, "run_args", lambda *a: args)
    write(tmp_path, None, 1, 5)
    c = ck.load_checkpoint(tmp_path)
    assert c.version == 5 and c.mismatches(args) == []
