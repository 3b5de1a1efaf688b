"""Pose log: CSV round trip, flushing, LOST rows, malformed files."""

from __future__ import annotations

import csv
import enum

import numpy as np
import pytest

from ar_guide.errors import InputError
from ar_guide.geometry.transforms import make_transform, rotation_angle_between, rotation_from_rotvec
from ar_guide.io.poselog import COLUMNS, PoseLogWriter, read_pose_log


class Status(str, enum.Enum):  # like tracking.status.TrackingStatus
    OK = "OK"
    LOST = "LOST"


def _random_pose(rng) -> np.ndarray:
    return make_transform(rotation_from_rotvec(rng.normal(size=3) * 2.0), rng.normal(size=3) * 300)


def test_round_trip(tmp_path):
    rng = np.random.default_rng(21)
    poses = [_random_pose(rng) for _ in range(20)]
    path = tmp_path / "poses.csv"
    with PoseLogWriter(path) as log:
        for i, pose in enumerate(poses):
            log.write(i, i / 30.0, "reference", Status.OK, pose, 0.123456, 11, "ok")
            log.write(i, i / 30.0, "pointer, left", "LOST", None, None, 0, "not seen")
    rows = read_pose_log(path)
    assert len(rows) == 40
    for i, pose in enumerate(poses):
        ok, lost = rows[2 * i], rows[2 * i + 1]
        assert (ok.frame, ok.body, ok.status, ok.markers_used, ok.reason) == (i, "reference", "OK", 11, "ok")
        assert ok.timestamp_s == pytest.approx(i / 30.0, abs=5e-7)
        assert ok.reprojection_rms_px == pytest.approx(0.1235, abs=1e-12)
        # 6 decimals of mm; 10 decimals of a unit quaternion: ~1e-10 rad.
        np.testing.assert_allclose(ok.camera_from_body[:3, 3], pose[:3, 3], atol=5e-7)
        assert rotation_angle_between(ok.camera_from_body[:3, :3], pose[:3, :3]) < 1e-9
        assert ok.quaternion_wxyz[0] >= 0
        assert lost.body == "pointer, left" and lost.status == "LOST"
        assert lost.camera_from_body is None and lost.translation_mm is None
        assert lost.reprojection_rms_px is None and lost.reason == "not seen"


def test_header_and_empty_pose_fields(tmp_path):
    path = tmp_path / "p.csv"
    log = PoseLogWriter(path)
    log.write(7, 0.25, "reference", "LOST", None, None, 0, "")
    # Flushed per row: readable while the writer is still open (as after a crash).
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS
    assert rows[0] == ("frame,timestamp_s,body,status,tx_mm,ty_mm,tz_mm,qw,qx,qy,qz,"
                       "reprojection_rms_px,markers_used,reason").split(",")
    assert rows[1] == ["7", "0.250000", "reference", "LOST", "", "", "", "", "", "", "", "", "0", ""]
    log.close()
    with pytest.raises(ValueError, match="pose log is closed"):
        log.write(8, 0.3, "reference", "LOST", None, None, 0)


def test_known_quaternion(tmp_path):
    # 90 degrees about z: q = (cos 45, 0, 0, sin 45).
    pose = make_transform(rotation_from_rotvec([0, 0, np.pi / 2]), [1.5, -2.0, 300.0])
    path = tmp_path / "q.csv"
    with PoseLogWriter(path) as log:
        log.write(0, 0.0, "reference", "OK", pose, 0.5, 4)
    row = read_pose_log(path)[0]
    np.testing.assert_allclose(row.quaternion_wxyz, [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-10)
    np.testing.assert_allclose(row.translation_mm, [1.5, -2.0, 300.0], atol=0)


def test_partial_last_line_is_ignored(tmp_path):
    path = tmp_path / "crash.csv"
    with PoseLogWriter(path) as log:
        log.write(0, 0.0, "reference", "OK", np.eye(4), 0.2, 12, "ok")
    with open(path, "a") as f:
        f.write("1,0.033333,refer")  # the process died here
    rows = read_pose_log(path)
    assert [r.frame for r in rows] == [0]


def test_writer_rejects_bad_pose(tmp_path):
    with PoseLogWriter(tmp_path / "x.csv") as log:
        with pytest.raises(ValueError, match=r"finite \(4, 4\) array"):
            log.write(0, 0.0, "reference", "OK", np.full((4, 4), np.nan), 0.1, 4)
        with pytest.raises(ValueError, match="body and status must be non-empty"):
            log.write(0, 0.0, "", "OK", None, 0.1, 4)


def _log(tmp_path, lines: list[str]):
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


HEADER = ",".join(COLUMNS)


@pytest.mark.parametrize("lines, message", [
    (["frame,timestamp_s,body"], "not a pose log: missing columns status, tx_mm"),
    ([HEADER, "x,0.0,ref,OK,,,,,,,,,0,"], r"'frame': line 2: expected a number, got 'x'"),
    ([HEADER, "0,nan,ref,OK,,,,,,,,,0,"], r"'timestamp_s': line 2: expected a finite number"),
    ([HEADER, "0,0.0,ref,OK,1,2,3,1,0,0,,,0,"], "line 2: pose fields tx_mm, ty_mm, tz_mm, qw, qx, "
                                                 "qy, qz must be all filled or all empty"),
    ([HEADER, "0,0.0,ref,OK,1,2,3,2,0,0,0,,0,"], r"line 2: quaternion \(qw, qx, qy, qz\) has length 2"),
    ([HEADER, "0,0.0,ref,OK"], "line 2: 4 fields, expected 14"),
    ([HEADER, "0,0.0,,OK,,,,,,,,,0,"], "line 2: body and status must not be empty"),
])
def test_malformed_logs(tmp_path, lines, message):
    path = _log(tmp_path, lines)
    with pytest.raises(InputError, match=message) as info:
        read_pose_log(path)
    assert str(info.value).startswith(str(path))


def test_missing_and_empty(tmp_path):
    with pytest.raises(InputError, match="pose log not found"):
        read_pose_log(tmp_path / "none.csv")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match=r"empty pose log \(no header row\)"):
        read_pose_log(tmp_path / "e.csv")


def test_log_without_reason_column(tmp_path):
    path = _log(tmp_path, [",".join(COLUMNS[:-1]), "3,0.1,ref,OK,0,0,100,1,0,0,0,0.3,8"])
    (row,) = read_pose_log(path)
    assert row.reason == "" and row.markers_used == 8
    np.testing.assert_array_equal(row.camera_from_body, make_transform(np.eye(3), [0, 0, 100]))
