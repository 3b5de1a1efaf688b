"""The pose log: one CSV row per frame and tracked body, written as the video plays.

Columns (DESIGN.md, "Files")::

    frame,timestamp_s,body,status,tx_mm,ty_mm,tz_mm,qw,qx,qy,qz,reprojection_rms_px,markers_used,reason

``tx..tz`` and ``qw..qz`` are ``camera_from_body`` (translation in mm; unit quaternion
(w, x, y, z) with w >= 0, from geometry.transforms.quaternion_from_rotation); they are empty when
no pose is logged (LOST).  Every row is flushed, so a crash leaves a file that ends with a
complete row (or, at worst, one partial last line, which :func:`read_pose_log` ignores).
"""

from __future__ import annotations

import csv
import dataclasses
import enum
import math
import os
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError
from ar_guide.io.textfiles import read_text
from ar_guide.geometry.transforms import (make_transform, quaternion_from_rotation,
                                          rotation_from_quaternion)

COLUMNS = ("frame", "timestamp_s", "body", "status", "tx_mm", "ty_mm", "tz_mm", "qw", "qx", "qy",
           "qz", "reprojection_rms_px", "markers_used", "reason")
POSE_COLUMNS = COLUMNS[4:11]
#: Columns a log must have; "reason" may be absent in logs from other tools.
REQUIRED_COLUMNS = COLUMNS[:-1]


@dataclasses.dataclass(frozen=True, eq=False)
class PoseLogRow:
    """One row of a pose log.

    camera_from_body : (4, 4) float64 (maps body mm to camera mm), or None when not logged
    translation_mm : (3,) float64 or None; quaternion_wxyz : (4,) float64 or None, as written
    reprojection_rms_px : None when not given
    """

    frame: int
    timestamp_s: float
    body: str
    status: str
    camera_from_body: np.ndarray | None
    translation_mm: np.ndarray | None
    quaternion_wxyz: np.ndarray | None
    reprojection_rms_px: float | None
    markers_used: int
    reason: str


class PoseLogWriter:
    """Writes a pose log row by row (context manager)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write pose log: {exc.strerror or exc}", path=self.path) from None
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(COLUMNS)
        self._file.flush()
        self.rows_written = 0

    def write(self, frame_index: int, timestamp_s: float, body: str, status,
              camera_from_body: np.ndarray | None, rms_px: float | None, markers_used: int,
              reason: str = "") -> None:
        """Append one row and flush it.

        status : "OK", "STALE", "LOST" (a str or a str-valued Enum such as TrackingStatus)
        camera_from_body : (4, 4) float64 or None (empty pose fields)
        rms_px : reprojection RMS (px) or None
        """
        if self._file is None:
            raise ValueError("pose log is closed")
        status_text = status.value if isinstance(status, enum.Enum) else str(status)
        if not status_text or not body:
            raise ValueError("body and status must be non-empty")
        if camera_from_body is None:
            pose = [""] * 7
        else:
            m = np.asarray(camera_from_body, dtype=np.float64)
            if m.shape != (4, 4) or not np.all(np.isfinite(m)):
                raise ValueError(f"camera_from_body must be a finite (4, 4) array, got {m.shape}")
            q = quaternion_from_rotation(m[:3, :3])
            pose = [f"{v:.6f}" for v in m[:3, 3]] + [f"{v:.10f}" for v in q]
        rms = "" if rms_px is None or not math.isfinite(float(rms_px)) else f"{float(rms_px):.4f}"
        self._csv.writerow([int(frame_index), f"{float(timestamp_s):.6f}", body, status_text,
                            *pose, rms, int(markers_used), reason or ""])
        self._file.flush()
        self.rows_written += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def read_pose_log(path: str | os.PathLike) -> list[PoseLogRow]:
    """Read a pose log; InputError naming the file, line and column on malformed content.

    A last line without its newline (a crash while writing) is ignored.
    """
    path = Path(path)
    text = read_text(path, "pose log")
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]  # partial row of an interrupted write
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        raise InputError("empty pose log (no header row)", path=path)
    header = [h.strip() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(f"not a pose log: missing columns {', '.join(missing)} (expected "
                         f"{','.join(COLUMNS)})", path=path)
    col = {name: header.index(name) for name in COLUMNS if name in header}
    rows = []
    for line_no, values in enumerate(reader, start=2):
        if not values:
            continue
        if len(values) < len(header):
            raise InputError(f"line {line_no}: {len(values)} fields, expected {len(header)}",
                             path=path)
        rows.append(_parse_row(values, col, line_no, path))
    return rows


def _parse_row(values: list[str], col: dict, line_no: int, path: Path) -> PoseLogRow:
    def get(name):
        return values[col[name]].strip() if name in col else ""

    def number(name, kind=float, optional=False):
        text = get(name)
        if text == "" and optional:
            return None
        try:
            value = kind(text)
        except ValueError:
            raise InputError(f"line {line_no}: expected a number, got {text!r}", path=path,
                             key=name) from None
        if kind is float and not math.isfinite(value):
            raise InputError(f"line {line_no}: expected a finite number, got {text!r}", path=path,
                             key=name)
        return value

    frame = number("frame", int)
    timestamp = number("timestamp_s")
    body = get("body")
    status = get("status")
    if not body or not status:
        raise InputError(f"line {line_no}: body and status must not be empty", path=path)
    present = [get(c) != "" for c in POSE_COLUMNS]
    pose = translation = quaternion = None
    if any(present):
        if not all(present):
            raise InputError(f"line {line_no}: pose fields {', '.join(POSE_COLUMNS)} must be all "
                             "filled or all empty", path=path)
        translation = np.array([number(c) for c in POSE_COLUMNS[:3]])
        quaternion = np.array([number(c) for c in POSE_COLUMNS[3:]])
        norm = float(np.linalg.norm(quaternion))
        if abs(norm - 1.0) > 1e-3:  # garbage, not the rounding of a printed quaternion
            raise InputError(f"line {line_no}: quaternion (qw, qx, qy, qz) has length {norm:.6g}, "
                             "expected 1", path=path)
        pose = make_transform(rotation_from_quaternion(quaternion), translation)
    rms = number("reprojection_rms_px", optional=True)
    markers = number("markers_used", int, optional=True)
    return PoseLogRow(frame, timestamp, body, status, pose, translation, quaternion, rms,
                      0 if markers is None else markers, get("reason"))
