"""Reports: timing summaries and atomic JSON."""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path

import numpy as np
import pytest

from ar_guide.errors import InputError
from ar_guide.io.report import TimingStats, summarize_ms, to_jsonable, write_json


def test_summarize_known_values():
    # 1..20: median 10.5; p95 by linear interpolation at rank 0.95 * 19 = 18.05 -> 19.05.
    s = summarize_ms(range(1, 21))
    assert s == {"median": 10.5, "p95": pytest.approx(19.05, abs=1e-12), "mean": 10.5, "max": 20.0, "n": 20}


def test_summarize_matches_numpy_and_drops_nan():
    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 3.0, 501)
    with_nan = np.concatenate([values, [np.nan, np.inf]])
    s = summarize_ms(list(with_nan))
    assert s["median"] == np.median(values)
    assert s["p95"] == np.percentile(values, 95)
    assert s["mean"] == pytest.approx(values.mean(), rel=1e-15)
    assert s["max"] == values.max()
    assert summarize_ms([]) is None
    assert summarize_ms([np.nan]) is None


def test_timing_stats():
    t = TimingStats()
    for ms in (1.0, 2.0, 3.0):
        t.add_all({"detect": ms, "render": 10 * ms})
    t.add("detect", 4.0)
    assert t.count("detect") == 4 and t.count("missing") == 0
    summary = t.summary()
    assert list(summary) == ["detect", "render"]
    assert summary["detect"]["median"] == 2.5 and summary["render"]["max"] == 30.0


class Colour(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Item:
    name: str
    value: float


def test_jsonable_conversions():
    data = {
        "i": np.int64(3), "f": np.float32(0.1), "b": np.bool_(True), "nan": float("nan"),
        "inf": np.inf, "arr": np.array([[1.0, 2.0], [3.0, 4.0]]), "scalar": np.array(2.5),
        "path": Path("/tmp/x.json"), "enum": Colour.RED, "item": Item("a", 1 / 3),
        "tuple": (1, 2), "set": {3, 1}, 5: "int key",
        "third": 1 / 3, "big": 123456789.123, "tiny": 1.23456789e-9, "zero": 0.0,
    }
    out = to_jsonable(data)
    assert out["i"] == 3 and type(out["i"]) is int
    assert out["f"] == 0.1  # float32(0.1) = 0.100000001490116...: 7 significant digits
    assert out["b"] is True and out["nan"] is None and out["inf"] is None
    assert out["arr"] == [[1.0, 2.0], [3.0, 4.0]] and out["scalar"] == 2.5
    assert out["path"] == "/tmp/x.json" and out["enum"] == "red"
    assert out["item"] == {"name": "a", "value": 0.3333333}
    assert out["tuple"] == [1, 2] and out["set"] == [1, 3] and out["5"] == "int key"
    assert out["third"] == 0.3333333 and out["big"] == 123456800.0
    assert out["tiny"] == 1.234568e-09 and out["zero"] == 0.0
    with pytest.raises(TypeError, match="cannot write object to a JSON report"):
        to_jsonable(object())


def test_write_json_atomic(tmp_path, monkeypatch):
    path = tmp_path / "sub" / "report.json"
    write_json(path, {"frames": np.int32(10), "timings_ms": {"total": summarize_ms([1, 2, 3])}})
    assert json.loads(path.read_text()) == {"frames": 10, "timings_ms": {"total": {
        "median": 2.0, "p95": 2.9, "mean": 2.0, "max": 3.0, "n": 3}}}
    # A failed write leaves the previous report as it was and no temporary file.
    with pytest.raises(TypeError):
        write_json(path, {"bad": object()})
    assert json.loads(path.read_text())["frames"] == 10
    assert sorted(os.listdir(path.parent)) == ["report.json"]
    # A failure after writing the temporary file (here: the rename) also leaves it as it was.
    def failing_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(InputError, match="report.json: cannot write report: No space left"):
        write_json(path, {"frames": 11})
    monkeypatch.undo()
    assert json.loads(path.read_text())["frames"] == 10
    assert sorted(os.listdir(path.parent)) == ["report.json"]
    # Output is strict JSON (no NaN).
    write_json(path, {"x": float("nan")})
    assert path.read_text() == '{\n  "x": null\n}\n'


def test_write_json_unwritable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot write report"):
        write_json(blocker / "report.json", {})
    assert sorted(os.listdir(tmp_path)) == ["file"]
