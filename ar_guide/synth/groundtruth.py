"""Ground truth of a synthetic sequence: per-frame board pose and visibility, as CSV.

``ground_truth.csv`` has one row per video frame::

    frame,timestamp_s,tx,ty,tz,qw,qx,qy,qz,visible_markers,visible_corners,hand_covering

``tx ty tz`` (mm) and the quaternion (w, x, y, z) give ``camera_from_reference`` at mid-exposure
(the board frame is OpenCV's ChArUco frame); ``visible_markers`` counts board markers entirely
inside the image and not covered by the hand, ``visible_corners`` likewise the chessboard
corners, ``hand_covering`` (0/1) says whether the hand hides part of the board's squares.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError
from ar_guide.geometry.transforms import make_transform, quaternion_from_rotation, rotation_from_quaternion

COLUMNS = ("frame", "timestamp_s", "tx", "ty", "tz", "qw", "qx", "qy", "qz",
           "visible_markers", "visible_corners", "hand_covering")


@dataclasses.dataclass(frozen=True, eq=False)
class GroundTruth:
    """Per-frame truth of a synthetic sequence (N frames, in video order).

    timestamps_s : (N,) float64, mid-exposure time of each frame (s)
    camera_from_reference : (N, 4, 4) float64, maps board mm to camera mm (OpenCV camera frame)
    visible_markers : (N,) int64; visible_corners : (N,) int64; hand_covering : (N,) bool
    """

    timestamps_s: np.ndarray
    camera_from_reference: np.ndarray
    visible_markers: np.ndarray
    visible_corners: np.ndarray
    hand_covering: np.ndarray

    def __len__(self) -> int:
        return int(self.timestamps_s.shape[0])

    @property
    def board_in_view(self) -> np.ndarray:
        """(N,) bool: at least one marker entirely visible."""
        return self.visible_markers > 0


def write_ground_truth(path: str | os.PathLike, truth: GroundTruth) -> None:
    """Write ``ground_truth.csv`` (floats at full precision, so reading back is exact to 1e-15)."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(len(truth)):
            m = truth.camera_from_reference[i]
            q = quaternion_from_rotation(m[:3, :3])
            writer.writerow([i, repr(float(truth.timestamps_s[i]))]
                            + [repr(float(v)) for v in m[:3, 3]] + [repr(float(v)) for v in q]
                            + [int(truth.visible_markers[i]), int(truth.visible_corners[i]),
                               int(bool(truth.hand_covering[i]))])


def load_ground_truth(path: str | os.PathLike) -> GroundTruth:
    """Read ``ground_truth.csv``; InputError naming the file, column and line if it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise InputError("ground-truth file not found", path=path)
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"cannot read ground truth: {exc}", path=path) from None
    if not rows or tuple(c.strip() for c in rows[0]) != COLUMNS:
        raise InputError(f"expected the header {','.join(COLUMNS)}", path=path)
    body = [r for r in rows[1:] if any(c.strip() for c in r)]
    if not body:
        raise InputError("no frames", path=path)
    n = len(body)
    values = np.empty((n, len(COLUMNS)))
    for i, row in enumerate(body):
        line = i + 2
        if len(row) != len(COLUMNS):
            raise InputError(f"line {line}: expected {len(COLUMNS)} values, got {len(row)}", path=path)
        for j, (name, text) in enumerate(zip(COLUMNS, row)):
            try:
                values[i, j] = float(text)
            except ValueError:
                raise InputError(f"line {line}: expected a number, got {text.strip()!r}", path=path,
                                 key=name) from None
            if not np.isfinite(values[i, j]):
                raise InputError(f"line {line}: expected a finite number, got {text.strip()!r}", path=path,
                                 key=name)
    frames = values[:, 0]
    if not np.array_equal(frames, np.arange(n)):
        bad = int(np.flatnonzero(frames != np.arange(n))[0])
        raise InputError(f"line {bad + 2}: frames must count 0, 1, 2, ... in order", path=path, key="frame")
    q = values[:, 5:9]
    norms = np.linalg.norm(q, axis=1)
    if np.any(np.abs(norms - 1.0) > 1e-6):
        bad = int(np.flatnonzero(np.abs(norms - 1.0) > 1e-6)[0])
        raise InputError(f"line {bad + 2}: quaternion (qw, qx, qy, qz) must have unit length, got "
                         f"{norms[bad]:.6g}", path=path)
    for j, name in ((9, "visible_markers"), (10, "visible_corners"), (11, "hand_covering")):
        col = values[:, j]
        limit = 1 if name == "hand_covering" else np.inf
        if np.any((col != np.round(col)) | (col < 0) | (col > limit)):
            bad = int(np.flatnonzero((col != np.round(col)) | (col < 0) | (col > limit))[0])
            expected = "0 or 1" if name == "hand_covering" else "a whole number >= 0"
            raise InputError(f"line {bad + 2}: expected {expected}, got {body[bad][j].strip()!r}", path=path,
                             key=name)
    poses = np.stack([make_transform(rotation_from_quaternion(q[i]), values[i, 2:5]) for i in range(n)])
    return GroundTruth(values[:, 1].copy(), poses, values[:, 9].astype(np.int64), values[:, 10].astype(np.int64),
                       values[:, 11].astype(bool))
