"""Written files: atomic replacement, JSON without NaN, metadata."""

from __future__ import annotations

import json
import math

import pytest

from stalegrad.trace_io import dumps, metadata, write_text


def test_json_has_no_nan_or_infinity():
    text = dumps({"a": math.nan, "b": [math.inf, 1.5], "c": "x"})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": "x"}


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    write_text(path, "old")

    def full_disk(fd):
        raise OSError("No space left on device")

    monkeypatch.setattr("stalegrad.artefacts.os.fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_metadata_records_versions_and_seed(fig1_system):
    meta = metadata(7, {"main": fig1_system}, note="x")
    assert meta["seed"] == 7 and meta["systems"]["main"]["n"] == 16 and meta["note"] == "x"
    assert {"stalegrad", "numpy", "scipy", "python"} <= set(meta)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_trace_round_trips_through_a_file(tmp_path, suffix):
    import scipy.stats

    from stalegrad.sim import simulate
    from stalegrad.spec import System
    from stalegrad.trace_io import read_trace, write_trace

    system = System(
        n=5,
        K=2,
        compute=[scipy.stats.expon(scale=1)] * 3 + [scipy.stats.gamma(a=2)] * 2,
        uplink=scipy.stats.expon(scale=0.3),
        downlink=0.25,
        protocol="k-sync",
    )
    trace = simulate(system, 300, seed=11)
    assert (trace["update"] == -1).any()  # dropped rows travel too
    back = read_trace(write_trace(trace, tmp_path / f"t{suffix}"))
    assert back.equals(trace)
    assert back.system.to_dict() == system.to_dict() and back.seed == 11


def test_reading_a_bad_trace_file_says_what_is_wrong(tmp_path):
    from stalegrad.errors import SpecError
    from stalegrad.trace_io import read_trace, write_trace

    with pytest.raises(SpecError, match=r"trace file must be an existing \.csv or \.parquet file"):
        read_trace(tmp_path / "missing.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("worker,round\n1,2\n")
    with pytest.raises(SpecError, match="lacks the columns start, sent, arrive"):
        read_trace(bad)
    with pytest.raises(SpecError, match=r"trace file must be a name ending in \.csv or \.parquet"):
        write_trace(None, tmp_path / "t.txt")
