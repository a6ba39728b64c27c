"""Written files: atomic replacement, JSON without NaN, metadata."""

from __future__ import annotations

import json
import math

import pytest

from stalegrad.artefacts import dumps, metadata, write_text


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
