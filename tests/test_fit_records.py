"""Reading measured records: CSV, Parquet and JSON lines with a column mapping, and stalegrad's own Traces."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from stalegrad.distributions import shifted_exponential
from stalegrad.errors import SpecError
from stalegrad.fit import fit_cluster, parse_columns, read_records
from stalegrad.fit.records import Records
from stalegrad.sim import simulate
from stalegrad.spec import System
from stalegrad.trace_io import write_trace

ROWS = [  # rank, step, t0, t1, cut, sent, arrive -- out of order on purpose
    ("node10", 2, 5.0, 7.5, "no", 7.5, 7.75),
    ("node2", 1, 0.0, 1.0, "0", 1.0, 1.5),
    ("node10", 1, 0.0, 5.0, "yes", 5.0, 5.25),
    ("node2", 2, 1.0, 3.0, "false", 3.0, 3.5),
]
MAPPING = {"worker": "rank", "round": "step", "start": "t0", "end": "t1", "censored": "cut"}
HEADER = ["rank", "step", "t0", "t1", "cut", "sent", "arrive"]


def write_csv(path, header=HEADER, rows=ROWS):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def check_rows(r: Records):
    assert r.workers() == ["node2", "node10"]  # natural order: 2 before 10
    assert r.sample("node10").times.tolist() == [5.0, 2.5]  # by round, not by row
    assert r.sample("node10").censored.tolist() == [True, False]
    assert r.sample("node2").times.tolist() == [1.0, 2.0]
    assert sorted(r.uplink_delays().tolist()) == [0.25, 0.25, 0.5, 0.5]


def test_csv_with_a_column_mapping(tmp_path):
    r = read_records([write_csv(tmp_path / "log.csv")], MAPPING)
    check_rows(r)
    assert r.sources[0].kind == "table" and r.sources[0].columns["end"] == "t1"


def test_parquet_and_json_lines_read_like_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(zip(*ROWS, strict=True))
    table = pa.table({h: list(c) for h, c in zip(HEADER, cols, strict=True)})
    pq.write_table(table, tmp_path / "log.parquet")
    check_rows(read_records([tmp_path / "log.parquet"], MAPPING))
    with open(tmp_path / "log.jsonl", "w") as fh:
        for row in ROWS:
            obj = dict(zip(HEADER, row, strict=True))
            obj["cut"] = obj["cut"] in ("yes",)  # JSON booleans
            fh.write(json.dumps(obj) + "\n")
    check_rows(read_records([tmp_path / "log.jsonl"], MAPPING))


def test_fields_are_looked_up_under_their_own_names(tmp_path):
    path = write_csv(tmp_path / "plain.csv", ["worker", "duration"], [(0, 1.5), (1, 2.5), (0, 0.5)])
    r = read_records([path])
    assert r.workers() == ["0", "1"] and r.sample("0").times.tolist() == [1.5, 0.5]
    assert not r.censored.any() and r.uplink_delays().size == 0


def test_a_file_without_worker_column_is_one_worker(tmp_path):
    a = write_csv(tmp_path / "gpu3.csv", ["duration"], [(1.0,), (2.0,)])
    b = write_csv(tmp_path / "gpu11.csv", ["duration"], [(3.0,)])
    r = read_records([b, a])
    assert r.workers() == ["gpu3", "gpu11"] and len(r) == 3
    assert any("no worker column" in note for note in r.notes)


def test_a_trace_is_recognised_and_its_compute_times_are_sent_minus_start(tmp_path):
    system = System(n=4, K=2, tc=0.5, compute=shifted_exponential(alpha=1, rate=1))
    trace = simulate(system, updates=300, seed=1, engine="numpy")
    for suffix in (".csv", ".parquet"):
        path = write_trace(trace, tmp_path / f"trace{suffix}")
        r = read_records([path], {"worker": "ignored-for-traces"})
        assert r.sources[0].kind == "trace" and r.sources[0].system["K"] == 2
        mine = trace["worker"] == 3
        order = np.argsort(trace["round"][mine])
        want = (trace["sent"] - trace["start"])[mine][order]
        assert np.allclose(r.sample("3").times, want)
        assert np.allclose(r.uplink_delays(), 0.25)
    fitted = fit_cluster(r, gof_samples=0, seed=0)
    assert fitted.system.K == 2 and fitted.system.uplink == pytest.approx(0.25)


def test_a_k_sync_trace_says_that_its_cancelled_rounds_are_missing(tmp_path):
    system = System(n=4, K=2, compute=shifted_exponential(alpha=1, rate=1), protocol="k-sync")
    path = write_trace(simulate(system, updates=50, seed=1), tmp_path / "ksync.csv")
    r = read_records([path])
    assert any("biased fast" in note for note in r.notes)


def test_parse_columns():
    assert parse_columns("worker=rank, duration = step_time") == {"worker": "rank", "duration": "step_time"}
    assert parse_columns(None) == {}


@pytest.mark.parametrize(
    ("header", "rows", "columns", "match"),
    [
        (HEADER, ROWS, {"worker": "host"}, "has no column 'host'.*its columns: rank, step"),
        (["rank", "x"], [("a", 1.0)], {"worker": "rank"}, "no compute time; map duration=COLUMN"),
        (["worker", "duration"], [("a", "fast")], {}, r"duration \(.*record 1\) must be a number, got 'fast'"),
        (["worker", "duration"], [("a", 1.0), ("a", -2.0)], {}, r"record 2\) must be a finite time > 0"),
        (["worker", "duration", "censored"], [("a", 1.0, "maybe")], {}, "must be a flag: 1/0, true/false"),
        (HEADER, ROWS, {"worker": "rank", "start": "t1", "end": "t0"}, "must be a finite time > 0"),
    ],
)
def test_bad_tables_are_refused_with_the_file_and_record(tmp_path, header, rows, columns, match):
    path = write_csv(tmp_path / "bad.csv", header, rows)
    with pytest.raises(SpecError, match=match):
        read_records([path], columns)


@pytest.mark.parametrize(
    ("text", "match"),
    [("worker", "FIELD=COLUMN pairs"), ("speed=x", "field must be one of worker, duration"), ("worker=", "pairs")],
)
def test_bad_column_mappings_are_refused(text, match):
    with pytest.raises(SpecError, match=match):
        parse_columns(text)


def test_missing_and_unknown_files_are_refused(tmp_path):
    with pytest.raises(SpecError, match="LOGS must be existing files"):
        read_records([tmp_path / "nope.csv"])
    (tmp_path / "log.txt").write_text("1\n")
    with pytest.raises(SpecError, match=r"LOGS must be files ending in \.csv, \.parquet"):
        read_records([tmp_path / "log.txt"])
