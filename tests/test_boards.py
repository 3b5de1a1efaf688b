"""Board files (ar_guide.calibration.boards): parsing errors, geometry, the printed pattern, the
ChArUco legacy layout, and the boards shipped in calibration/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from ar_guide.calibration.boards import board_from_mapping, load_board
from ar_guide.errors import InputError
from ar_guide.tracking import aruco

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "calibration").glob("*.yaml"))

CHARUCO = {"type": "charuco", "squares": [5, 7], "square_mm": 35, "marker_mm": 21, "dictionary": "DICT_5X5_100"}
CHESSBOARD = {"type": "chessboard", "inner_corners": [9, 6], "square_mm": 25}
CHESS_TEXT = "type: chessboard\ninner_corners: [9, 6]\n"
GRID = {"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 6, "dictionary": "DICT_4X4_50"}


def write(tmp_path, text, name="board.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def raster(rects_mm, px_per_mm, size_px):
    """Fill (R, 4) mm rectangles at a scale where every edge is on a whole pixel."""
    image = np.full(size_px[::-1], 255, np.uint8)
    for x0, y0, x1, y1 in np.rint(np.asarray(rects_mm) * px_per_mm).astype(int):
        image[y0:y1, x0:x1] = 0
    return image


# ----------------------------------------------------------------------------- parsing errors


@pytest.mark.parametrize("text, message", [
    ("[1, 2]\n", r"board.yaml: expected a mapping with 'type' \(charuco, chessboard, aruco_grid\)"),
    ("squares: [5, 7]\n", r"board.yaml: 'type': missing; expected one of charuco, chessboard, aruco_grid"),
    ("type: marker_map\n", r"board.yaml: 'type': expected one of charuco, chessboard, aruco_grid, got 'marker_map'"),
    ("board:\n  squares: [5, 7]\n", r"board.yaml: 'board.type': missing"),
    ("type: chessboard\ninner_corners: [9, 6]\nsquare_mm: 25\nsquares: [10, 7]\n",
     r"board.yaml: 'squares': unexpected key for a chessboard; expected inner_corners and square_mm"),
    ("type: chessboard\ninner_corners: [9]\nsquare_mm: 25\n",
     r"'inner_corners': expected two integers >= 2 \(inner corners along x and y\), got \[9\]"),
    ("type: chessboard\ninner_corners: [9.5, 6]\nsquare_mm: 25\n", r"'inner_corners': expected two integers"),
    ("type: chessboard\ninner_corners: [1, 6]\nsquare_mm: 25\n", r"'inner_corners': expected two integers >= 2"),
    (CHESS_TEXT + "square_mm: 0\n", r"'square_mm': expected a positive number \(mm\), got 0"),
    (CHESS_TEXT + "square_mm: .inf\n", r"'square_mm': expected a positive number \(mm\), got inf"),
    (CHESS_TEXT + "square_mm: '25'\n", r"'square_mm': expected a positive number \(mm\), got '25'"),
    (CHESS_TEXT, r"'square_mm': expected a positive number \(mm\), got None"),
    ("type: chessboard\ninner_corners: [7, 7]\nsquare_mm: 20\n",
     r"'inner_corners': a square chessboard \(7x7\) has no defined orientation.*e.g. \[8, 7\]"),
    ("board:\n  type: chessboard\n  inner_corners: [9, 6]\n  square_mm: -1\n",
     r"board.yaml: 'board.square_mm': expected a positive"),
    ("type: charuco\nsquares: [5, 7]\nsquare_mm: 30\nmarker_mm: 30\ndictionary: DICT_5X5_100\n",
     r"board.yaml: 'marker_mm': must be smaller than square_mm \(30\), got 30"),
    ("type: charuco\nsquares: [5, 7]\nsquare_mm: 30\nmarker_mm: 22\ndictionary: DICT_9X9_1\n",
     r"board.yaml: 'dictionary': unknown ArUco dictionary 'DICT_9X9_1'"),
    ("type: charuco\nsquares: [5, 7]\nsquare_mm: 30\nmarker_mm: 22\n", r"board.yaml: 'dictionary': missing"),
    ("type: charuco\nsquares: [1, 7]\nsquare_mm: 30\nmarker_mm: 22\ndictionary: DICT_5X5_100\n",
     r"'squares': expected two integers >= 2, e.g. \[5, 7\], got \[1, 7\]"),
    ("type: charuco\nsquares: [20, 20]\nsquare_mm: 10\nmarker_mm: 7\ndictionary: DICT_4X4_50\n",
     r"'dictionary': a 20x20 ChArUco board needs 200 markers but DICT_4X4_50 has only 50"),
    ("type: charuco\nsquares: [5, 7]\nsquare_mm: 30\nmarker_mm: 22\ndictionary: DICT_5X5_100\nlegacy_pattern: 1\n",
     r"'legacy_pattern': expected true or false, got 1"),
    ("type: charuco\nsquares: [5, 7]\nsquare_mm: 30\nmarker_mm: 22\ndictionary: DICT_5X5_100\nmarker_size: 2\n",
     r"'marker_size': unexpected key 'marker_size' for a charuco body"),
    ("board:\n  type: charuco\n  squares: [5, 7]\n  square_mm: 30\n  marker_mm: 31\n  dictionary: DICT_5X5_100\n",
     r"board.yaml: 'board.marker_mm': must be smaller than square_mm"),
    ("type: aruco_grid\nmarkers: [4, 5]\nmarker_mm: 30\nseparation_mm: 6\ndictionary: DICT_4X4_50\nfirst_id: 35\n",
     r"'first_id': ids 35..54 do not fit DICT_4X4_50 \(ids 0..49\)"),
    ("type: aruco_grid\nmarkers: [4, 5]\nmarker_mm: 30\nseparation_mm: -6\ndictionary: DICT_4X4_50\n",
     r"'separation_mm': expected a positive number \(mm\), got -6"),
    ("type: charuco\nsquares: [5, 7\n", r"board.yaml: not valid YAML"),
    ("type: charuco\ntype: chessboard\n", r"board.yaml: key 'type' appears twice \(line 1 and line 2\)"),
])
def test_board_file_errors_name_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(InputError, match=message) as info:
        load_board(path)
    assert str(info.value).startswith(str(path))


def test_missing_board_file(tmp_path):
    with pytest.raises(InputError, match=r"nope.yaml: board file not found"):
        load_board(tmp_path / "nope.yaml")
    with pytest.raises(InputError, match=r"board file not found"):
        load_board(tmp_path)  # a folder


def test_nested_board_and_extra_keys_accepted(tmp_path):
    nested = load_board(write(tmp_path, "board:\n  type: chessboard\n  inner_corners: [9, 6]\n  square_mm: 25\n"))
    flat = load_board(write(tmp_path, "name: mine\ndescription: test\ntype: chessboard\ninner_corners: [9, 6]\n"
                                      "square_mm: 25\n", "flat.yaml"))
    assert nested.parameters == flat.parameters == {"type": "chessboard", "inner_corners": [9, 6], "square_mm": 25.0}


# ----------------------------------------------------------------------------- geometry


def test_chessboard_geometry():
    board = board_from_mapping(CHESSBOARD)
    assert board.kind == "chessboard" and board.inner_corners == (9, 6) and board.square_mm == 25.0
    corners = board.corners_mm
    assert corners.shape == (54, 3) and corners.dtype == np.float64
    # findChessboardCorners' order: row by row, x fastest, first inner corner at the origin.
    np.testing.assert_array_equal(corners[0], [0, 0, 0])
    np.testing.assert_array_equal(corners[1], [25, 0, 0])
    np.testing.assert_array_equal(corners[9], [0, 25, 0])
    np.testing.assert_array_equal(corners[-1], [200, 125, 0])
    # 10 x 7 squares: one square beyond the first and the last inner corner on each side.
    assert board.extent_mm == (-25.0, -25.0, 225.0, 150.0)
    assert board.size_mm == (250.0, 175.0)
    rects = board.black_rectangles_mm()
    assert rects.shape == (35, 4)  # half of the 70 squares
    np.testing.assert_allclose(rects[:, 2] - rects[:, 0], 25.0)
    np.testing.assert_allclose(rects[:, 3] - rects[:, 1], 25.0)
    # The top-left square is black, and an inner corner is where two black squares touch.
    assert [-25.0, -25.0, 0.0, 0.0] in rects.tolist() and [0.0, 0.0, 25.0, 25.0] in rects.tolist()
    assert board.describe() == "chessboard 9x6 inner corners, 25 mm"


def test_chessboard_pattern_is_found_by_opencv():
    """The printed chessboard, rasterised at 4 px/mm, is found by findChessboardCorners with its
    inner corners at corners_mm * 4 px (pixel edges; OpenCV's pixel centres are 0.5 px off)."""
    import cv2

    board = board_from_mapping(CHESSBOARD)
    k, margin = 4.0, 25.0
    rects = board.black_rectangles_mm() + [margin + 25, margin + 25, margin + 25, margin + 25]
    image = raster(rects, k, (int((250 + 2 * margin) * k), int((175 + 2 * margin) * k)))
    found, corners = cv2.findChessboardCorners(image, (9, 6))
    assert found
    corners = cv2.cornerSubPix(image, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)).reshape(-1, 2)
    expected = (board.corners_mm[:, :2] + margin + 25) * k - 0.5
    if np.linalg.norm(corners[0] - expected[0]) > np.linalg.norm(corners[0] - expected[-1]):
        corners = corners[::-1]  # the pattern is symmetric; OpenCV may number from the other end
    assert np.max(np.linalg.norm(corners - expected, axis=1)) < 0.1


def test_charuco_geometry_matches_opencv_board():
    board = board_from_mapping(CHARUCO)
    markers, chessboard = aruco.charuco_layout(board.body.board)
    np.testing.assert_array_equal(board.corners_mm, chessboard)
    assert board.corners_mm.shape == (24, 3)  # (5 - 1) x (7 - 1) inner corners
    np.testing.assert_allclose(board.corners_mm[0], [35, 35, 0])
    assert board.extent_mm == (0.0, 0.0, 175.0, 245.0) and board.size_mm == (175.0, 245.0)
    assert sorted(board.body.markers_body) == list(range(17))
    # Each marker sits centred in a white square: (35 - 21) / 2 = 7 mm from its edges.
    np.testing.assert_allclose(markers[0][0], [35 + 7, 7, 0])
    assert board.parameters == {**CHARUCO, "legacy_pattern": False}
    assert board.describe() == "ChArUco 5x7 squares, 35/21 mm, DICT_5X5_100"


def test_aruco_grid_geometry():
    board = board_from_mapping(GRID)
    assert board.extent_mm == (0.0, 0.0, 4 * 30 + 3 * 6, 5 * 30 + 4 * 6)
    corners = board.corners_mm
    assert corners.shape == (80, 3)
    np.testing.assert_allclose(corners[:4], [[0, 0, 0], [30, 0, 0], [30, 30, 0], [0, 30, 0]])
    np.testing.assert_allclose(corners[4], [36, 0, 0])  # marker 1, next in the row
    assert board.parameters["first_id"] == 0
    assert board.describe() == "ArUco grid 4x5 markers, 30 mm, 6 mm apart, DICT_4X4_50, ids from 0"


@pytest.mark.parametrize("config", [
    {**CHARUCO, "legacy_pattern": False},
    {**CHARUCO, "legacy_pattern": True},
    {**CHARUCO, "squares": [6, 8], "legacy_pattern": False},
    {**CHARUCO, "squares": [6, 8], "legacy_pattern": True},
    {**CHARUCO, "squares": [5, 4], "legacy_pattern": True},
    GRID,
])
def test_black_rectangles_match_opencv_generate_image(config):
    """The vector pattern equals OpenCV's own board image pixel for pixel, at a scale where every
    marker cell is a whole number of pixels (DICT_5X5: 7 cells of 3 mm = 30 px at 10 px/mm)."""
    board = board_from_mapping(config)
    k = 10.0
    w, h = (int(round(v * k)) for v in board.size_mm)
    x0, y0, _, _ = board.extent_mm
    rects = board.black_rectangles_mm() - [x0, y0, x0, y0]
    mine = raster(rects, k, (w, h))
    theirs = aruco.board_image(board.body.board, (w, h))
    assert mine.shape == theirs.shape
    assert np.count_nonzero(mine != theirs) == 0
    assert np.count_nonzero(mine == 0) > 0.3 * mine.size


def test_black_area_known_answer():
    board = board_from_mapping(CHARUCO)
    rects = board.black_rectangles_mm()
    area = float(np.sum((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])))
    # 35 squares, 17 holding markers: 18 black squares of 35^2; each marker is 7x7 cells of 3 mm,
    # its 24 border cells black plus its black data bits.
    bits = sum(int(np.count_nonzero(aruco.marker_cells("DICT_5X5_100", i))) for i in range(17))
    assert area == pytest.approx(18 * 35 ** 2 + bits * 3.0 ** 2, rel=1e-12)
    assert bits >= 17 * 24


# ----------------------------------------------------------------------------- legacy layout


def test_legacy_layout_differs_only_for_an_even_number_of_rows():
    for squares, differs in (([5, 7], False), ([5, 6], True), ([6, 8], True), ([6, 5], False)):
        new = board_from_mapping({**CHARUCO, "squares": squares, "legacy_pattern": False})
        old = board_from_mapping({**CHARUCO, "squares": squares, "legacy_pattern": True})
        same = np.array_equal(new.black_rectangles_mm(), old.black_rectangles_mm())
        assert same != differs, squares
        assert old.describe().endswith(", legacy layout") and not new.describe().endswith("layout")
        top_left = [0.0, 0.0, 35.0, 35.0] in new.black_rectangles_mm().tolist()
        assert top_left  # OpenCV 4.6+: the top-left square is black
        if differs:
            assert [0.0, 0.0, 35.0, 35.0] not in old.black_rectangles_mm().tolist()  # legacy: a marker there


def test_legacy_mismatch_finds_no_charuco_corners():
    """Why the printed margin states legacy_pattern: detecting an even-row board with the other
    layout finds every marker but no ChArUco corner."""
    config = {**CHARUCO, "squares": [6, 8]}
    boards = {legacy: board_from_mapping({**config, "legacy_pattern": legacy}) for legacy in (False, True)}
    detector = aruco.MarkerDetector("DICT_5X5_100")
    for printed in (False, True):
        image = aruco.board_image(boards[printed].body.board, (6 * 60 + 120, 8 * 60 + 120), margin_px=60)
        detections = detector.detect(image)
        assert len(detections) == 24
        for assumed in (False, True):
            ids, _ = aruco.CharucoInterpolator(boards[assumed].body.board)(image, detections)
            assert len(ids) == (35 if assumed == printed else 0), (printed, assumed)


# ----------------------------------------------------------------------------- shipped boards


def test_shipped_boards_load():
    names = {p.stem for p in SHIPPED}
    assert {"charuco_a4", "charuco_letter", "chessboard_a4", "chessboard_letter", "opencv_tutorial_charuco",
            "sksurgery_chessboard_6mm", "sksurgery_chessboard_3mm"} <= names
    for path in SHIPPED:
        board = load_board(path)
        text = path.read_text()
        assert text.startswith("# "), f"{path.name}: needs a comment header"
        assert board.source == str(path)
        if board.kind == "charuco" and board.parameters["squares"][1] % 2 == 0:
            assert "legacy_pattern" in yaml.safe_load(text), f"{path.name}: even rows need legacy_pattern"


def test_opencv_tutorial_board_matches_the_shared_data(shared_data):
    board = load_board(ROOT / "calibration" / "opencv_tutorial_charuco.yaml")
    assert board.describe() == "ChArUco 5x7 squares, 40/20 mm, DICT_6X6_250"
    # The tutorial photo shows the board; with this board file its ChArUco corners are found.
    import cv2

    gray = cv2.imread(str(shared_data / "markers" / "opencv_tutorial" / "choriginal.jpg"), cv2.IMREAD_GRAYSCALE)
    detections = aruco.MarkerDetector(board.body.dictionary).detect(gray)
    ids, _ = aruco.CharucoInterpolator(board.body.board)(gray, detections)
    assert len(detections) >= 15 and len(ids) >= 20


@pytest.mark.parametrize("name, folder, square", [
    ("sksurgery_chessboard_6mm", "sksurgery_webcam_chessboard", 6),
    ("sksurgery_chessboard_3mm", "sksurgery_viking_laparoscope", 3),
])
def test_sksurgery_boards_match_the_authors_board_json(shared_data, name, folder, square):
    import json

    authors = json.loads((shared_data / "calibration" / folder / "board.json").read_text())
    board = load_board(ROOT / "calibration" / f"{name}.yaml")
    assert list(board.inner_corners) == authors["corners"]
    assert board.square_mm == authors["square size in mm"] == square
