"""Point files (CSV, Slicer markups) and points digitised from a pointer's pose log."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ar_guide.constants import RegistrationWorkflow
from ar_guide.errors import InputError
from ar_guide.io.poselog import read_pose_log
from ar_guide.registration.points import (TipTrack, find_held_points, is_pose_log, read_points,
                                          read_slicer_markups, tip_track, traced_points)
from registration_synth import FIDUCIALS_CT, TIP_TOOL, write_pointer_pose_log


def _write(tmp_path, text, name="points.csv", encoding="utf-8"):
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


# ----------------------------------------------------------------------------------------------
# CSV


def test_csv_reads_names_points_and_lines(tmp_path):
    path = _write(tmp_path, "name,x,y,z\nF1,1,2,3\n\n# a comment\nF2,-4.5,5e1,0.25\n")
    points = read_points(path)
    assert points.names == ("F1", "F2")
    np.testing.assert_array_equal(points.points, [[1, 2, 3], [-4.5, 50, 0.25]])
    assert points.lines == (2, 5)
    assert points.points.dtype == np.float64 and not points.points.flags.writeable
    assert list(points.by_name()) == ["F1", "F2"]


@pytest.mark.parametrize("text", [
    "Name, X, Y, Z\nF1, 1, 2, 3\nF2, 4, 5, 6\n",             # capitals and spaces
    "label,x_mm,y_mm,z_mm\nF1,1,2,3\nF2,4,5,6\n",             # other spellings
    "x,y,z,name\n1,2,3,F1\n4,5,6,F2\n",                       # another column order
    "\ufeffname,x,y,z\r\nF1,1,2,3\r\nF2,4,5,6\r\n",           # Excel's "CSV UTF-8": BOM, CRLF
    "name;x;y;z\nF1;1;2;3\nF2;4;5;6\n",                       # semicolons (European spreadsheets)
    "# exported by hand\n\nname,x,y,z\nF1,1,2,3\nF2,4,5,6\n",  # leading comment and blank line
])
def test_csv_header_variants(tmp_path, text):
    points = read_points(_write(tmp_path, text))
    assert points.names == ("F1", "F2")
    np.testing.assert_array_equal(points.points, [[1, 2, 3], [4, 5, 6]])


@pytest.mark.parametrize("text, message", [
    ("", "empty point file: expected a header row 'name,x,y,z'"),
    ("name,x,y,z\n", "no points: the file has a header but no rows"),
    ("F1,1,2,3\n", "line 1: unexpected column 'f1' (expected exactly name,x,y,z)"),
    ("1,2,3\n4,5,6\n", "line 1: expected a header row 'name,x,y,z' first, got numbers"),
    ("name,x,y,z,w\nF1,1,2,3,4\n", "line 1: unexpected column 'w' (expected exactly name,x,y,z)"),
    ("label,r,a,s\nF1,1,2,3\n", "unexpected column 'r' (expected exactly name,x,y,z); Slicer markups: read "
                                "the .mrk.json file"),
    ("name,x,y\nF1,1,2\n", "line 1: missing column z (expected a header row 'name,x,y,z')"),
    ("name,x,x,z\nF1,1,2,3\n", "line 1: column 'x' given twice"),
    ("name,x,y,z\nF1,1,2,3\nF2,1,two,3\n", "'y': line 3: expected a number (mm), got 'two'"),
    ("name,x,y,z\nF1,1,2,nan\n", "'z': line 2: expected a finite number (mm), got 'nan'"),
    ("name,x,y,z\nF1,1,2\n", "line 2: 3 fields, expected 4 (name,x,y,z)"),
    ("name,x,y,z\nF1,1,2,3,4\n", "line 2: 5 fields, expected 4 (name,x,y,z)"),
    ("name,x,y,z\n,1,2,3\n", "'name': line 2: empty name"),
    ("name,x,y,z\nF1,1,2,3\nF2,4,5,6\n\nF1,7,8,9\n",
     "line 5: the name 'F1' appears twice (also line 2); names pair the points and must be unique"),
])
def test_csv_errors_name_file_and_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_points(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(InputError, match="point file not found"):
        read_points(tmp_path / "nope.csv")
    path = tmp_path / "bin.csv"
    path.write_bytes(b"name,x,y,z\nF1,\xff\xfe,2,3\n")
    with pytest.raises(InputError, match="cannot read point file: not UTF-8 text"):
        read_points(path)


def test_surface_points_may_leave_out_names(tmp_path):
    path = _write(tmp_path, "x,y,z\n1,2,3\n4,5,6\n7,8,9\n")
    points = read_points(path, require_names=False)
    assert points.names == ("1", "2", "3")
    assert points.points.shape == (3, 3)
    with pytest.raises(InputError, match=r"line 1: missing column name \(expected a header row 'name,x,y,z'\)"):
        read_points(path)


# ----------------------------------------------------------------------------------------------
# Slicer markups


def _markups(system, points, kind="Fiducial"):
    return {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                       "Resources/Schema/markups-schema-v1.0.0.json#",
            "markups": [{"type": kind, "coordinateSystem": system, "name": "F",
                         "controlPoints": [{"label": label, "position": list(p), "positionStatus": status}
                                           for label, p, status in points]}]}


def test_markups_ras_become_lps(tmp_path):
    # RAS (right, anterior, superior) to LPS (left, posterior, superior): x and y change sign.
    ras = _write(tmp_path, json.dumps(_markups("RAS", [("A", (10.0, -20.0, 30.0), "defined"),
                                                       ("", (1.0, 2.0, 3.0), "defined"),
                                                       ("skip", (0.0, 0.0, 0.0), "undefined")])),
                 name="ras.mrk.json")
    lps = _write(tmp_path, json.dumps(_markups("LPS", [("A", (10.0, -20.0, 30.0), "defined")])),
                 name="lps.mrk.json")
    points = read_points(ras)
    assert points.names == ("A", "F-2")
    np.testing.assert_array_equal(points.points, [[-10.0, 20.0, 30.0], [-1.0, -2.0, 3.0]])
    np.testing.assert_array_equal(read_points(lps).points, [[10.0, -20.0, 30.0]])


def test_markups_errors_say_points(tmp_path):
    line = _write(tmp_path, json.dumps(_markups("LPS", [("A", (1, 2, 3), "defined")], kind="Line")),
                  name="line.mrk.json")
    with pytest.raises(InputError, match=r"'markups\[0\].type': only point lists \(type 'Fiducial'\) become "
                                         "points, got 'Line'"):
        read_points(line)
    # The scene reads the same files as targets and says so.
    with pytest.raises(InputError, match="become targets"):
        read_slicer_markups(line)
    empty = _write(tmp_path, json.dumps(_markups("LPS", [("A", (1, 2, 3), "unplaced")])), name="e.mrk.json")
    with pytest.raises(InputError, match="no defined control points in the markups file"):
        read_points(empty)
    with pytest.raises(InputError, match="markups file not found"):
        read_points(tmp_path / "gone.mrk.json")


def test_scene_module_still_exports_the_markups_reader():
    from ar_guide import scene

    assert scene.read_slicer_markups is read_slicer_markups


# ----------------------------------------------------------------------------------------------
# Pose logs


@pytest.fixture(scope="module")
def pose_log(tmp_path_factory):
    rng = np.random.default_rng(7)
    points = FIDUCIALS_CT[:5] * 0.8  # any points in the reference frame
    path = tmp_path_factory.mktemp("poselog") / "poses.csv"
    # Hold 3 (index 2) is interrupted by two lost pointer frames: a short gap is not a new period.
    truth = write_pointer_pose_log(path, points, rng, lost_frames=(4 * 30 + 10, 4 * 30 + 11))
    return path, truth


def test_pose_log_is_recognised_and_not_read_as_points(pose_log):
    path, _ = pose_log
    assert is_pose_log(path)
    with pytest.raises(InputError, match="this is a pose log, not a point file: give the pointer"):
        read_points(path)


def test_held_points_recover_the_touched_positions(pose_log):
    """Five holds of 1.5 s with 0.05 mm / 0.03 deg pose noise and a rocking hand: five points, in
    order, each within 0.05 mm of where the tip rested (the mean of ~45 samples; the tip's
    per-frame noise is about 0.1 mm)."""
    path, truth = pose_log
    track = tip_track(read_pose_log(path), "pointer", TIP_TOOL, path=path)
    held = find_held_points(track)
    assert len(held) == 5
    for h, expected, (start, end) in zip(held, truth.points_reference, truth.holds_s):
        assert np.linalg.norm(h.position_reference - expected) < 0.05
        # The period is the hold, give or take the smoothing window at its ends.
        assert abs(h.start_s - start) <= 0.1 + 1e-9 and abs(h.end_s - end) <= 0.1 + 1e-9
        assert h.spread_mm < 0.3


def test_short_holds_and_long_gaps_are_not_points(tmp_path):
    rng = np.random.default_rng(3)
    points = FIDUCIALS_CT[:3]
    path = tmp_path / "poses.csv"
    # The second hold lasts 0.7 s: not a digitised point.
    write_pointer_pose_log(path, points, rng, hold_s=[1.5, 0.7, 1.5])
    track = tip_track(read_pose_log(path), "pointer", TIP_TOOL)
    held = find_held_points(track)
    assert len(held) == 2
    np.testing.assert_allclose([h.position_reference for h in held], points[[0, 2]], atol=0.05)
    # A gap longer than max_gap_s splits a hold: two halves of 0.75 s are each too short.
    settings = RegistrationWorkflow()
    times = np.arange(0.0, 1.5, 1 / 30)
    times[len(times) // 2:] += settings.max_gap_s + 0.05
    still = TipTrack(np.arange(len(times)), times, np.zeros((len(times), 3)))
    assert find_held_points(still) == []
    times = np.arange(0.0, 1.5, 1 / 30)
    assert len(find_held_points(TipTrack(np.arange(len(times)), times, np.zeros((len(times), 3))))) == 1


def test_tip_track_needs_both_bodies(pose_log):
    path, _ = pose_log
    rows = read_pose_log(path)
    with pytest.raises(InputError, match=r"the pose log has no pointer 'needle' \(bodies: pointer, reference\)"):
        tip_track(rows, "needle", TIP_TOOL, path=path)
    with pytest.raises(InputError, match="the pose log has no reference body 'patient'"):
        tip_track(rows, "pointer", TIP_TOOL, reference="patient", path=path)


def test_tip_track_uses_only_frames_where_both_are_ok(pose_log):
    path, _ = pose_log
    rows = read_pose_log(path)
    track = tip_track(rows, "pointer", TIP_TOOL)
    frames = {r.frame for r in rows}
    assert len(track.frames) == len(frames) - 2  # the two LOST pointer frames
    assert track.tips_reference.shape == (len(track.frames), 3)


def test_traced_points_are_thinned():
    tips = np.array([[0.0, 0, 0], [0.2, 0, 0], [0.5, 0, 0], [1.1, 0, 0], [1.2, 0, 0], [3.0, 0, 0]])
    track = TipTrack(np.arange(6), np.arange(6) / 30.0, tips)
    np.testing.assert_array_equal(traced_points(track, 1.0), tips[[0, 3, 5]])
    assert traced_points(TipTrack(np.zeros(0, int), np.zeros(0), np.zeros((0, 3))), 1.0).shape == (0, 3)

