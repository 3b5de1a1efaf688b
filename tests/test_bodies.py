"""Rigid bodies: constructors, derived geometry, the YAML shorthand and its error messages."""

from __future__ import annotations

import numpy as np
import pytest

from ar_guide.errors import InputError
from ar_guide.tracking import aruco
from ar_guide.tracking.bodies import (RigidBody, aruco_grid_body, body_from_config, charuco_body,
                                      load_sksurgery_body, marker_map_body, plane_fit)

SQUARE = np.array([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [10.0, 10.0, 0.0], [0.0, 10.0, 0.0]])


def test_charuco_body_matches_opencv_layout():
    body = charuco_body("ref", (5, 7), 40.0, 20.0, "6x6_250")
    assert body.dictionary == "DICT_6X6_250"
    assert body.is_charuco and body.is_planar
    assert body.marker_ids == tuple(range(17))          # floor(5 * 7 / 2) markers
    assert body.charuco_corners_body.shape == (24, 3)   # (5 - 1) * (7 - 1) inner corners
    # Marker 0 sits in the second square of the first row: its top-left corner is 10 mm inside
    # the 40 mm square that starts at x = 40 (OpenCV board frame, y down the board).
    np.testing.assert_allclose(body.markers_body[0], [[50, 10, 0], [70, 10, 0], [70, 30, 0], [50, 30, 0]])
    np.testing.assert_allclose(body.charuco_corners_body[0], [40, 40, 0])
    np.testing.assert_allclose(body.charuco_corners_body[-1], [160, 240, 0])
    assert body.marker_side_mm == pytest.approx(20.0)
    # Derived arrays are read-only: a body is shared by the estimator, tracker and renderer.
    with pytest.raises(ValueError):
        body.markers_body[0][0, 0] = 1.0


def test_aruco_grid_body_layout_and_ids():
    body = aruco_grid_body("grid", (4, 5), 30.0, 6.0, "DICT_4X4_50", first_id=3)
    assert body.marker_ids == tuple(range(3, 23))
    assert not body.is_charuco and body.is_planar
    # Marker (col 1, row 0) is id 4; its top-left corner is one pitch (36 mm) along x.
    np.testing.assert_allclose(body.markers_body[4], [[36, 0, 0], [66, 0, 0], [66, 30, 0], [36, 30, 0]])
    # Marker (col 0, row 1) is id 3 + 4.
    np.testing.assert_allclose(body.markers_body[7][0], [0, 36, 0])
    # Diagonal of the 138 x 174 mm grid.
    assert body.extent_mm == pytest.approx(np.hypot(4 * 30 + 3 * 6, 5 * 30 + 4 * 6))


def test_marker_map_derived_geometry():
    markers = {1: SQUARE, 2: SQUARE + [50.0, 0.0, 0.0], 3: SQUARE + [0.0, 0.0, 20.0]}
    body = marker_map_body("tool", "DICT_4X4_50", markers)
    assert not body.is_planar                        # marker 3 is 20 mm above the others
    assert body.plane_distance_mm > 4.0
    np.testing.assert_allclose(body.centre_body, [(5 + 55 + 5) / 3, 5, 20 / 3])
    flat = marker_map_body("flat", "DICT_4X4_50", {1: SQUARE, 2: SQUARE + [50.0, 0.0, 0.0]})
    assert flat.is_planar and flat.plane_distance_mm < 1e-9


def test_plane_fit_is_rigid_and_puts_points_on_z0():
    rng = np.random.default_rng(3)
    pts = np.column_stack([rng.uniform(-50, 50, 20), rng.uniform(-30, 30, 20), np.zeros(20)])
    angle = 0.7
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    moved = pts @ rot.T + [5.0, -2.0, 300.0]
    plane_from_points, distance = plane_fit(moved)
    assert distance < 1e-9
    r = plane_from_points[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)
    flat = moved @ r.T + plane_from_points[:3, 3]
    np.testing.assert_allclose(flat[:, 2], 0.0, atol=1e-9)


def test_rigid_body_validation_messages():
    with pytest.raises(InputError, match="marker id 60 is not in DICT_4X4_50"):
        marker_map_body("t", "DICT_4X4_50", {60: SQUARE})
    with pytest.raises(InputError, match=r"\(shape \(4, 3\)\), got shape \(3, 3\)"):
        marker_map_body("t", "DICT_4X4_50", {1: SQUARE[:3]})
    with pytest.raises(InputError, match="NaN or infinite"):
        marker_map_body("t", "DICT_4X4_50", {1: np.where(SQUARE == 10.0, np.nan, SQUARE)})
    with pytest.raises(InputError, match="shorter than 1 mm .*millimetres"):
        marker_map_body("t", "DICT_4X4_50", {1: SQUARE / 1000.0})
    with pytest.raises(InputError, match="at least one marker"):
        RigidBody("t", "DICT_4X4_50", {})
    with pytest.raises(InputError, match="unknown ArUco dictionary 'DICT_9X9_1'"):
        marker_map_body("t", "DICT_9X9_1", {1: SQUARE})


def test_charuco_dictionary_too_small():
    # An 11 x 11 board needs 60 markers; DICT_4X4_50 holds 50.
    with pytest.raises(InputError, match="needs 60 markers but DICT_4X4_50 has only 50"):
        charuco_body("b", (11, 11), 10, 5, "DICT_4X4_50")
    with pytest.raises(InputError, match=r"marker_mm \(10\) must be smaller than square_mm \(10\)"):
        charuco_body("b", (5, 7), 10, 10, "DICT_4X4_50")


# ----------------------------------------------------------------------------- SciKit-Surgery files


def test_load_sksurgery_body_reads_rows(tmp_path):
    path = tmp_path / "tool.txt"
    # id, centre, 4 corners; whitespace and commas both allowed, comments and blanks skipped.
    path.write_text("# tool\n\n3, 5 5 0, 0 0 0, 10 0 0, 10 10 0, 0 10 0\n"
                    "7\t25\t5\t0\t20\t0\t0\t30\t0\t0\t30\t10\t0\t20\t10\t0\n")
    body = load_sksurgery_body(path, "tool", "DICT_ARUCO_ORIGINAL")
    assert body.marker_ids == (3, 7)
    np.testing.assert_allclose(body.markers_body[7][2], [30, 10, 0])
    assert body.source == str(path)


@pytest.mark.parametrize("text, message", [
    ("3 5 5 0 0 0 0 10 0 0 10 10 0 0 10\n", r"line 1: expected 16 numbers .*got 15"),
    ("3 5 5 0 0 0 0 10 0 0 10 10 0 0 10 x\n", "line 1: expected 16 numbers"),
    ("3.5 5 5 0 0 0 0 10 0 0 10 10 0 0 10 0\n", "line 1: marker id must be an integer, got 3.5"),
    ("3 9 9 0 0 0 0 10 0 0 10 10 0 0 10 0\n", r"line 1: marker 3 centre .* from the mean of its corners"),
    ("3 5 5 0 0 0 0 10 0 0 10 10 0 0 10 0\n3 5 5 0 0 0 0 10 0 0 10 10 0 0 10 0\n", "line 2: marker id 3 appears twice"),
    ("# nothing\n", "no markers in rigid-body file"),
])
def test_load_sksurgery_body_errors(tmp_path, text, message):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    with pytest.raises(InputError, match=message) as info:
        load_sksurgery_body(path, "tool", "DICT_ARUCO_ORIGINAL")
    assert str(info.value).startswith(str(path))


def test_load_sksurgery_body_missing_file(tmp_path):
    with pytest.raises(InputError, match="rigid-body file not found"):
        load_sksurgery_body(tmp_path / "nope.txt", "tool", "DICT_ARUCO_ORIGINAL")


# ----------------------------------------------------------------------------- YAML shorthand


def test_body_from_config_all_types(tmp_path):
    charuco = body_from_config({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20,
                                "dictionary": "DICT_6X6_250", "legacy_pattern": False}, tmp_path, "reference")
    assert charuco.is_charuco and len(charuco.markers_body) == 17 and charuco.name == "reference"
    grid = body_from_config({"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 6,
                             "dictionary": "DICT_4X4_50", "first_id": 0}, tmp_path, "grid")
    assert grid.marker_ids == tuple(range(20))
    mmap = body_from_config({"type": "marker_map", "dictionary": "DICT_4X4_50", "markers": [
        {"id": 3, "corners": SQUARE.tolist()}, {"id": 9, "corners": (SQUARE + 20).tolist()}]}, tmp_path, "m")
    assert mmap.marker_ids == (3, 9)
    (tmp_path / "ref.txt").write_text("3 5 5 0 0 0 0 10 0 0 10 10 0 0 10 0\n")
    sks = body_from_config({"type": "sksurgery", "file": "ref.txt", "dictionary": "DICT_ARUCO_ORIGINAL"},
                           tmp_path, "ref")
    assert sks.marker_ids == (3,) and sks.dictionary == "DICT_ARUCO_ORIGINAL"


def test_body_from_config_board_file(tmp_path):
    boards = tmp_path / "boards"
    boards.mkdir()
    (boards / "board.yaml").write_text("type: charuco\nsquares: [7, 5]\nsquare_mm: 25\nmarker_mm: 18\n"
                                       "dictionary: DICT_5X5_100\n")
    (tmp_path / "alias.yaml").write_text("file: boards/board.yaml\n")
    body = body_from_config({"file": "alias.yaml"}, tmp_path, "reference")
    assert body.is_charuco and body.charuco_corners_body.shape == (24, 3)
    # A board file's own problems name that file.
    (boards / "bad.yaml").write_text("type: charuco\nsquares: [7, 5]\nsquare_mm: 25\nmarker_mm: 30\n"
                                     "dictionary: DICT_5X5_100\n")
    with pytest.raises(InputError, match=r"bad.yaml: 'board.marker_mm': must be smaller than square_mm \(25\)"):
        body_from_config({"file": "boards/bad.yaml"}, tmp_path, "reference", source=tmp_path / "scene.yaml")
    (boards / "broken.yaml").write_text("type: [charuco\n")
    with pytest.raises(InputError, match="broken.yaml: not valid YAML"):
        body_from_config({"file": "boards/broken.yaml"}, tmp_path, "reference")
    (tmp_path / "loop.yaml").write_text("file: loop.yaml\n")
    with pytest.raises(InputError, match="more than 4 deep"):
        body_from_config({"file": "loop.yaml"}, tmp_path, "reference")


SCENE = "scene.yaml"


@pytest.mark.parametrize("config, key, message", [
    ([1, 2], "reference", "expected a mapping with 'type'"),
    ({}, "reference", "missing 'type'"),
    ({"type": "chessboard", "squares": [9, 6]}, "reference.type", "a chessboard has no coded markers"),
    ({"type": "blob"}, "reference.type", "unknown body type 'blob'"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20}, "reference.dictionary", "missing"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20, "dictionary": "DICT_7X7_9"},
     "reference.dictionary", "unknown ArUco dictionary 'DICT_7X7_9'"),
    ({"type": "charuco", "squares": [5], "square_mm": 40, "marker_mm": 20, "dictionary": "DICT_6X6_250"},
     "reference.squares", r"expected two integers >= 2, e.g. \[5, 7\], got \[5\]"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": -4, "marker_mm": 20, "dictionary": "DICT_6X6_250"},
     "reference.square_mm", "expected a positive number"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": "40", "marker_mm": 20, "dictionary": "DICT_6X6_250"},
     "reference.square_mm", "expected a positive number .*got '40'"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 40, "dictionary": "DICT_6X6_250"},
     "reference.marker_mm", "must be smaller than square_mm"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20, "dictionary": "DICT_6X6_250",
      "legacy_pattern": "no"}, "reference.legacy_pattern", "expected true or false"),
    ({"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20, "dictionary": "DICT_6X6_250",
      "square_size": 4}, "reference.square_size", "unexpected key 'square_size'"),
    ({"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 0, "dictionary": "DICT_4X4_50"},
     "reference.separation_mm", "expected a positive number"),
    ({"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 6, "dictionary": "DICT_4X4_50",
      "first_id": 40}, "reference.first_id", r"ids 40..59 do not fit DICT_4X4_50"),
    ({"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 6, "dictionary": "DICT_4X4_50",
      "first_id": True}, "reference.first_id", "expected an integer >= 0"),
    ({"type": "marker_map", "dictionary": "DICT_4X4_50", "markers": []}, "reference.markers",
     "expected a list of"),
    ({"type": "marker_map", "dictionary": "DICT_4X4_50",
      "markers": [{"id": 1, "corners": SQUARE.tolist()}, {"id": 1, "corners": SQUARE.tolist()}]},
     r"reference.markers\[1\].id", "duplicate marker id 1"),
    ({"type": "marker_map", "dictionary": "DICT_4X4_50", "markers": [{"id": 1, "corners": SQUARE[:3].tolist()}]},
     r"reference.markers\[0\].corners", r"expected 4 corners of \[x, y, z\]"),
    ({"type": "marker_map", "dictionary": "DICT_4X4_50", "markers": [{"id": 99, "corners": SQUARE.tolist()}]},
     "reference.markers", "marker id 99 is not in DICT_4X4_50"),
    ({"type": "sksurgery", "file": "missing.txt", "dictionary": "DICT_ARUCO_ORIGINAL"}, "reference.file",
     "file not found"),
    ({"file": "b.yaml", "type": "charuco"}, "reference.file", "unexpected key 'file'"),
    ({"file": "b.yaml", "squares": [5, 7]}, "reference", "a board-file reference holds only 'file'"),
])
def test_body_from_config_errors_name_file_and_key(tmp_path, config, key, message):
    source = tmp_path / SCENE
    with pytest.raises(InputError, match=message) as info:
        body_from_config(config, tmp_path, "reference", source=source)
    assert str(info.value).startswith(f"{source}: '{info.value.key}': ")
    assert info.value.key == key.replace("\\", "")


def test_body_key_prefix_for_tools(tmp_path):
    with pytest.raises(InputError) as info:
        body_from_config({"type": "aruco_grid", "markers": [1, 1], "marker_mm": 30, "separation_mm": 6},
                         tmp_path, "pointer", source=tmp_path / SCENE, key="tools[0].body")
    assert info.value.key == "tools[0].body.dictionary"


def test_dictionary_size_and_names():
    assert aruco.dictionary_size("DICT_ARUCO_ORIGINAL") == 1024
    assert aruco.dictionary_size("4x4_50") == 50
    assert aruco.canonical_dictionary_name("aruco_original") == "DICT_ARUCO_ORIGINAL"
