"""PyTorch profiler traces as ``fit`` input: a real two-rank run (gloo, CPU), profiled, read and fitted (torch is
the torch extra, which `make test` installs)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stalegrad.errors import SpecError
from stalegrad.fit import fit_cluster, read_records

HERE = Path(__file__).parent
STEPS = 14


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two ranks of a small DistributedDataParallel run, each profiled for 14 steps: two real Chrome traces."""
    out = tmp_path_factory.mktemp("profiler")
    port = _free_port()
    paths = [out / f"worker{r}.pt.trace.json" for r in (1, 0)]  # names that do not give the rank
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "profiler_rank.py"), str(r), "2", str(port), str(p)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for r, p in zip((1, 0), paths, strict=True)
    ]
    for proc in procs:
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, output.decode()[-2000:]
    return paths


def test_a_real_profiler_trace_is_read_one_record_per_step(profiled: list[Path]) -> None:
    doc = json.loads(profiled[0].read_text())
    assert doc["distributedInfo"]["rank"] == 1 and doc["distributedInfo"]["world_size"] == 2
    records = read_records(profiled)
    assert records.workers() == ["0", "1"]  # ranks from distributedInfo, not from the order or the names
    for w in ("0", "1"):
        sample = records.sample(w)
        assert sample.n == STEPS and sample.n_censored == 0
        assert np.all(sample.times > 0) and np.all(sample.times < 60)
    steps = [e for e in doc["traceEvents"] if str(e.get("name", "")).startswith("ProfilerStep#")]
    assert records.sample("1").times.sum() == pytest.approx(sum(e["dur"] for e in steps) / 1e6)
    assert {s.kind for s in records.sources} == {"profiler"}
    assert any("rank 1 (from distributedInfo.rank)" in note for note in records.notes)


def test_a_real_profiler_trace_is_fitted(profiled: list[Path]) -> None:
    cluster = fit_cluster(read_records(profiled), per_worker=True, gof_samples=0, seed=1)
    assert cluster.system.n == 2 and len(cluster.classes) == 2
    for c in cluster.classes:
        times = c.fit.sample.times
        assert times.min() <= c.fit.law.mean() <= times.max()


def test_fit_command_on_profiler_traces(profiled: list[Path], tmp_path: Path, cli_here) -> None:
    out = tmp_path / "cluster.json"
    code, stdout, err = cli_here(["fit", *profiled, "--out", out, "--seed", "1", "--gof-samples", "0", "--per-worker"])
    assert code == 0, err
    assert "PyTorch profiler trace, rank 0" in stdout
    doc = json.loads(out.read_text())
    assert doc["n"] == 2 and {i["kind"] for i in doc["provenance"]["inputs"]} == {"profiler"}


def _chrome(path: Path, durations: list[float], rank: int | None = None, gz: bool = False) -> Path:
    events = [{"ph": "X", "cat": "cpu_op", "name": "aten::mm", "ts": 0, "dur": 5}]
    ts = 1000.0
    for k, d in enumerate(durations):
        events.append({"ph": "X", "cat": "user_annotation", "name": f"ProfilerStep#{k + 3}", "ts": ts, "dur": d})
        events.append({"ph": "X", "cat": "gpu_user_annotation", "name": f"ProfilerStep#{k + 3}", "ts": ts, "dur": 1})
        ts += d
    doc: dict = {"schemaVersion": 1, "traceEvents": events}
    if rank is not None:
        doc["distributedInfo"] = {"backend": "gloo", "rank": rank, "world_size": 2}
    text = json.dumps(doc)
    if gz:
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def test_rank_from_file_name_then_position(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    a = _chrome(tmp_path / "trainer_rank_3.json", list(rng.uniform(1e4, 2e4, 12)))
    b = _chrome(tmp_path / "host.pt.trace.json.gz", list(rng.uniform(1e4, 2e4, 12)), gz=True)
    c = _chrome(tmp_path / "other.json", list(rng.uniform(1e4, 2e4, 12)), rank=7)
    records = read_records([a, b, c])
    assert records.workers() == ["1", "3", "7"]  # b: the second profiler trace given, position 1
    assert records.sample("3").times[0] == pytest.approx(rng.__class__(np.random.PCG64(0)).uniform(1e4, 2e4) / 1e6)
    assert records.sample("1").n == 12  # the GPU copies of the step annotations are not counted


def test_profiler_trace_without_steps_is_an_error(tmp_path: Path, cli_here) -> None:
    p = tmp_path / "rank0.json"
    p.write_text(json.dumps({"traceEvents": [{"ph": "X", "name": "aten::mm", "ts": 0, "dur": 3}]}))
    with pytest.raises(SpecError, match=r"no ProfilerStep#N events: call prof.step\(\)"):
        read_records([p])
    p.write_text(json.dumps({"schemaVersion": 1}))
    with pytest.raises(SpecError, match="not a PyTorch profiler trace: no 'traceEvents'"):
        read_records([p])
    p.write_text("{not json")
    code, _, err = cli_here(["fit", p])
    assert code == 2 and err.startswith("Error:") and "cannot be read as a PyTorch profiler trace" in err
