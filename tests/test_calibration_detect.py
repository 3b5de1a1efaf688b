"""Board detection for calibration: corner accuracy on synthetic photos with exact ground truth,
partial views, every board kind, the failure reasons, and the diagnosis of board-file mistakes."""

from __future__ import annotations

import numpy as np
import pytest

import calibration_synth as cs
from ar_guide.calibration.boards import board_from_mapping
from ar_guide.calibration.detect import BoardDetector, BoardView, corner_spread, edge_blur_px, id_ranges

W, H = 640, 360


@pytest.fixture(scope="module")
def cam():
    return cs.camera(W, H)


def _charuco_view(board, cam, plan_entry=cs.CENTRE[0], seed=0, blur=0.5, distance_mm=(300.0, 360.0)):
    pose = cs.covering_poses(board, cam, [plan_entry], seed, distance_mm=distance_mm, tilt_deg=(20.0, 35.0))[0]
    return pose, cs.render(board, cam, pose, seed, blur)


def test_charuco_corners_match_the_truth(cam):
    board = cs.charuco()
    pose, image = _charuco_view(board, cam)
    view = BoardDetector(board).detect(image, "centre.png")
    assert view is not None
    assert view.source == "centre.png" and view.image_size == (W, H)
    # 7x5 squares: 6x4 = 24 inner corners, 17 markers, all in view.
    assert len(view) == 24 and view.markers_found == 17
    assert view.corner_ids.dtype == np.int32 and view.image_points_px.dtype == np.float32
    assert view.object_points_mm.dtype == np.float32
    np.testing.assert_array_equal(view.object_points_mm, board.corners_mm[view.corner_ids].astype(np.float32))
    error = np.linalg.norm(view.image_points_px - cs.truth_px(board, cam, pose, view.corner_ids), axis=1)
    # CharucoDetector's cornerSubPix corners on these photos: 0.04-0.1 px mean (0.5 px blur, noise 2).
    assert error.mean() < 0.1 and error.max() < 0.3


def test_partial_charuco_view_in_an_image_corner(cam):
    board = cs.charuco()
    pose, image = _charuco_view(board, cam, cs.CORNERS[3], seed=1, distance_mm=(200.0, 220.0))
    view = BoardDetector(board).detect(image)
    assert view is not None and 6 <= len(view) < 24
    error = np.linalg.norm(view.image_points_px - cs.truth_px(board, cam, pose, view.corner_ids), axis=1)
    assert error.max() < 0.3
    # The board reaches into the bottom-right corner of the image.
    assert view.image_points_px[:, 0].max() > 0.75 * W and view.image_points_px[:, 1].max() > 0.75 * H


def test_chessboard_corners_in_order(cam):
    board = cs.chessboard((9, 6), 20.0)
    pose = cs.covering_poses(board, cam, cs.CENTRE, 3, distance_mm=(420.0, 450.0), tilt_deg=(20.0, 30.0))[0]
    image = cs.render(board, cam, pose, 3)
    view = BoardDetector(board).detect(image)
    assert view is not None and len(view) == 54 and view.markers_found == 0
    np.testing.assert_array_equal(view.corner_ids, np.arange(54))
    truth = cs.truth_px(board, cam, pose, np.arange(54))
    # A chessboard's numbering may start at either end (findChessboardCornersSB picks one);
    # both are a rigid relabelling (rotation by 180 degrees about the board centre).
    straight = np.linalg.norm(view.image_points_px - truth, axis=1)
    flipped = np.linalg.norm(view.image_points_px[::-1] - truth, axis=1)
    error = straight if straight.mean() < flipped.mean() else flipped
    # findChessboardCornersSB on these photos: 0.02-0.07 px mean (0.5 px blur, noise 2).
    assert error.mean() < 0.1 and error.max() < 0.3


def test_aruco_grid_marker_corners(cam):
    board = cs.grid()
    pose = cs.covering_poses(board, cam, cs.CENTRE, 4, distance_mm=(500.0, 520.0), tilt_deg=(20.0, 30.0))[0]
    image = cs.render(board, cam, pose, 4)
    view = BoardDetector(board).detect(image)
    assert view is not None and view.markers_found == 12 and len(view) == 48
    error = np.linalg.norm(view.image_points_px - cs.truth_px(board, cam, pose, view.corner_ids), axis=1)
    assert error.max() < 0.3


def test_failure_reasons():
    blank = np.full((H, W), 128, np.uint8)
    detector = BoardDetector(cs.charuco())
    assert detector.detect(blank) is None
    assert detector.last_failure == "no markers of DICT_5X5_100"
    chess = BoardDetector(cs.chessboard((9, 6), 20.0))
    assert chess.detect(blank) is None and chess.last_failure == "no 9x6 chessboard"


def test_too_few_corners_is_a_failure_with_counts(cam):
    board = cs.charuco()
    pose, image = _charuco_view(board, cam)
    detector = BoardDetector(board)
    # Keep only the left quarter of the board: a few markers, fewer than 6 corners.
    view = detector.detect(image)
    x_cut = np.sort(view.image_points_px[:, 0])[3] + 2
    cropped = image.copy()
    cropped[:, int(x_cut):] = 235
    assert detector.detect(cropped) is None
    assert "ChArUco corners (< 6) from" in detector.last_failure


def test_corner_spread():
    line = np.column_stack([np.arange(6) * 30.0, np.zeros(6), np.zeros(6)])
    assert corner_spread(line) == pytest.approx(0.0, abs=1e-12)
    block = np.array([[x, y, 0.0] for x in (0, 30, 60) for y in (0, 30)])
    # Variances along x and y: 600 and 225 -> singular value ratio sqrt(225 / 600) = 0.61.
    assert corner_spread(block) == pytest.approx(np.sqrt(225.0 / 600.0))


def test_board_view_validates_lengths():
    with pytest.raises(ValueError, match="differ in length"):
        BoardView("x", (10, 10), np.arange(3), np.zeros((2, 2)), np.zeros((3, 3)))


def test_edge_blur_follows_the_optical_blur(cam):
    board = cs.charuco()
    pose = cs.covering_poses(board, cam, cs.CENTRE, 0, distance_mm=(300.0, 360.0), tilt_deg=(20.0, 35.0))[0]
    estimates = []
    for sigma in (0.5, 1.0, 1.4):
        image = cs.render(board, cam, pose, 0, sigma)
        view = BoardDetector(board).detect(image)
        assert view is not None
        estimates.append(edge_blur_px(image, view))
    # Total blur: optical sigma and the 1-pixel supersampling box (variance 1/12); the estimate
    # reads about 0.1 px high at 0.5 px (the gradient stencil), closer above.
    expected = np.sqrt(np.array([0.5, 1.0, 1.4]) ** 2 + 1.0 / 12.0)
    assert np.all(np.diff(estimates) > 0.2)
    np.testing.assert_allclose(estimates, expected, atol=0.2)


def test_id_ranges():
    assert id_ranges([3, 0, 1, 2, 7, 9, 10]) == "0-3, 7, 9-10"


# ------------------------------------------------------------------ board-file mistakes


def test_diagnose_swapped_squares(cam):
    printed = cs.charuco((7, 5))
    _, image = _charuco_view(printed, cam)
    detector = BoardDetector(cs.charuco((5, 7)))
    assert detector.detect(image) is None
    assert detector.last_failure.startswith("0 ChArUco corners")
    hint = detector.diagnose(image)
    assert hint.startswith("did you swap squares: [5, 7] for [7, 5]?")
    assert "(24 corners)" in hint


def test_diagnose_legacy_layout(cam):
    # An even number of rows: OpenCV's pre-4.6 layout differs and no corner interpolates.
    printed = cs.charuco((5, 6), 30.0, 22.0, legacy=True)
    _, image = _charuco_view(printed, cam)
    detector = BoardDetector(cs.charuco((5, 6), 30.0, 22.0, legacy=False))
    assert detector.detect(image) is None
    hint = detector.diagnose(image)
    assert "set legacy_pattern: true" in hint and "swap" not in hint


def test_diagnose_wrong_dictionary(cam):
    _, image = _charuco_view(cs.charuco(), cam)
    detector = BoardDetector(cs.charuco(dictionary="DICT_4X4_50"))
    assert detector.detect(image) is None and detector.last_failure == "no markers of DICT_4X4_50"
    # 17 markers with ids 0-16: the smallest 5x5 dictionary holding them is DICT_5X5_50.
    assert "set dictionary: DICT_5X5_50" in detector.diagnose(image)


def test_diagnose_dictionary_too_small_for_the_ids(cam):
    board = cs.grid((4, 3), dictionary="DICT_4X4_100")
    printed = board_from_mapping({"type": "aruco_grid", "markers": [4, 3], "marker_mm": 40,
                                     "separation_mm": 10, "dictionary": "DICT_4X4_100", "first_id": 60})
    pose = cs.covering_poses(printed, cam, cs.CENTRE, 4, distance_mm=(500.0, 520.0), tilt_deg=(20.0, 30.0))[0]
    image = cs.render(printed, cam, pose, 4)
    detector = BoardDetector(board)
    assert detector.detect(image) is None
    assert "none of the ids of the board" in detector.last_failure
    assert "set first_id: 60" in detector.diagnose(image)


def test_diagnose_chessboard_counted_squares(cam):
    printed = cs.chessboard((9, 6), 20.0)
    pose = cs.covering_poses(printed, cam, cs.CENTRE, 3, distance_mm=(420.0, 450.0), tilt_deg=(20.0, 30.0))[0]
    image = cs.render(printed, cam, pose, 3)
    detector = BoardDetector(cs.chessboard((10, 7), 20.0))
    assert detector.detect(image) is None
    hint = detector.diagnose(image)
    assert hint.startswith("a chessboard of 9x6 inner corners is in view but the board file says inner_corners: "
                           "[10, 7] (inner corners are where four squares meet")


def test_diagnose_charuco_given_as_chessboard(cam):
    _, image = _charuco_view(cs.charuco(), cam)
    # (A 6x4 chessboard would be found: a ChArUco board is a chessboard with markers in its
    # white squares, and findChessboardCornersSB takes it.)
    detector = BoardDetector(cs.chessboard((9, 6), 30.0))
    assert detector.detect(image) is None
    assert "set type: charuco" in detector.diagnose(image)


def test_foreign_ids_are_counted(cam):
    # The board file describes 7x4 squares (ids 0-13); the printed 7x5 board has ids 0-16.
    _, image = _charuco_view(cs.charuco((7, 5)), cam)
    detector = BoardDetector(cs.charuco((7, 4)))
    view = detector.detect(image)
    assert view is not None
    assert set(detector.foreign_ids) == {14, 15, 16}
