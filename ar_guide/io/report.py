"""Run reports: timing summaries and JSON written atomically.

``play``, ``demo``, ``calibrate``, ``register`` and ``bench`` write a JSON report (DESIGN.md).
:func:`write_json` converts numpy types, writes NaN and infinity as null (JSON has neither),
rounds floats to ``FLOAT_DIGITS`` significant digits, and replaces the file in one step, so a
reader never sees half a report and a crash never leaves one.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import enum
import json
import math
import os
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError

#: Significant digits kept in reports: 0.1 um at 1 m, 1 us at 10 s, and no float noise.
FLOAT_DIGITS = 7


def summarize_ms(values) -> dict | None:
    """{"median", "p95", "mean", "max", "n"} of the finite values, or None if there are none.

    p95 is numpy's default (linear interpolation between closest ranks).  NaN and infinite
    values are left out, so a summary never contains NaN.
    """
    a = np.asarray(list(values) if not isinstance(values, np.ndarray) else values,
                   dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return None
    return {
        "median": float(np.median(a)),
        "p95": float(np.percentile(a, 95)),
        "mean": float(np.mean(a)),
        "max": float(np.max(a)),
        "n": int(a.size),
    }


class TimingStats:
    """Collects durations (ms) by stage name and summarises them."""

    def __init__(self):
        self._values: dict[str, list[float]] = collections.defaultdict(list)

    def add(self, stage: str, ms: float) -> None:
        self._values[stage].append(float(ms))

    def add_all(self, timings_ms: dict) -> None:
        """Add one frame's {stage: ms}."""
        for stage, ms in timings_ms.items():
            self.add(stage, ms)

    def count(self, stage: str) -> int:
        return len(self._values.get(stage, ()))

    def summary(self) -> dict:
        """{stage: summarize_ms(values)}, stages in the order they were first added."""
        return {stage: summarize_ms(values) for stage, values in self._values.items()}


def to_jsonable(value, digits: int = FLOAT_DIGITS):
    """``value`` with numpy scalars and arrays, paths, enums, dates and dataclasses made JSON
    types; floats rounded to ``digits`` significant digits; NaN and infinity as None."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if not math.isfinite(x):
            return None
        return float(f"{x:.{digits}g}") if x != 0.0 else 0.0
    if isinstance(value, np.ndarray):
        return [to_jsonable(v, digits) for v in value.tolist()] if value.ndim else \
            to_jsonable(value.item(), digits)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, digits)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name), digits)
                for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(to_jsonable(k, digits)) if not isinstance(k, str) else k:
                to_jsonable(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [to_jsonable(v, digits) for v in items]
    raise TypeError(f"cannot write {type(value).__name__} to a JSON report")


def write_json(path: str | os.PathLike, data, digits: int = FLOAT_DIGITS) -> Path:
    """Write ``data`` as indented JSON, atomically (temporary file in the same folder, then
    rename).  Creates the folder.  InputError if the file cannot be written."""
    path = Path(path)
    text = json.dumps(to_jsonable(data, digits), indent=2, allow_nan=False) + "\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise InputError(f"cannot write report: {exc.strerror or exc}", path=path) from None
    return path
