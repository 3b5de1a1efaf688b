"""Calibration on real photos nobody on this project took (../shared/data/calibration): the
issue's accuracy items, plain OpenCV as the baseline, and board-file mistakes on real images.

Reference values: OpenCV's ChArUco tutorial camera (fx 452.51 from the 4 photos), SciKit-Surgery's
webcam and laparoscope calibrations (calib.intrinsics.txt)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ar_guide.calibration.boards import board_from_mapping
from ar_guide.calibration.detect import BoardDetector, BoardView
from ar_guide.calibration.quality import findings, verdict
from ar_guide.calibration.solve import calibrate
from ar_guide.camera import load_camera
from ar_guide.cli import main

TUTORIAL_BOARD = {"type": "charuco", "squares": [5, 7], "square_mm": 40, "marker_mm": 20,
                  "dictionary": "DICT_6X6_250"}


def _board_file(tmp_path, data, name="board.yaml"):
    path = tmp_path / name
    path.write_text("\n".join(f"{k}: {v}" for k, v in data.items()) + "\n")
    return path


def _views(folder, pattern, board):
    detector = BoardDetector(board)
    views = []
    for path in sorted(folder.glob(pattern), key=lambda p: int(p.stem.split(".")[-1].split("_")[-1])):
        view = detector.detect(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), path.name)
        assert view is not None, (path.name, detector.last_failure)
        views.append(view)
    return views


def test_opencv_charuco_tutorial(shared_data, tmp_path, capsys):
    """4 photos: fx within 1.5% of the authors' 452.5 (measured 454.1, +0.35%), and clear
    warnings that 4 views of a board in the image centre are not enough."""
    folder = shared_data / "calibration" / "opencv_charuco_tutorial"
    out = tmp_path / "cam.yaml"
    code = main(["calibrate", "run", "--images", str(folder), "--board", str(_board_file(tmp_path, TUTORIAL_BOARD)),
                 "--output", str(out), "--report", str(tmp_path / "report")])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    cam = load_camera(out)
    authors = load_camera(folder / "tutorial_camera_charuco.yml")
    assert abs(cam.fx / authors.fx - 1) < 0.015
    assert abs(cam.fy / authors.fy - 1) < 0.015
    # The authors' average reprojection error is 0.182 px; OpenCV reaches about 0.19 px.
    assert cam.extras["rms_px"] < 0.2
    assert "NOT TRUSTWORTHY" in captured.err and "only 4 views used" in captured.err
    assert "focal length uncertain" in captured.err
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["views_used"] == 4 and [v["corners"] for v in data["per_view"]] == [24, 24, 22, 24]


def _classic_views(folder, board):
    """Plain OpenCV's chessboard detection: findChessboardCorners + cornerSubPix (11x11 window),
    as SciKit-Surgery's own calibration used (its calib.image_points match these to 0.01 px)."""
    views = []
    cols, rows = board.inner_corners
    for k in range(12):
        gray = cv2.imread(str(folder / f"calib.images.{k}.png"), cv2.IMREAD_GRAYSCALE)
        ok, corners = cv2.findChessboardCorners(gray, (cols, rows),
                                                cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
        assert ok
        corners = cv2.cornerSubPix(gray, corners, (11, 11), (-1, -1),
                                   (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.001))
        views.append(BoardView(f"calib.images.{k}.png", (640, 480), np.arange(cols * rows),
                               corners.reshape(-1, 2), board.corners_mm))
    return views


def test_sksurgery_webcam_chessboard(shared_data):
    """12 views: RMS <= 0.4 px (measured 0.32) and no worse than plain OpenCV on the same images
    (findChessboardCorners + cornerSubPix + calibrateCamera: 1.41 px, because it mis-assigns
    corners in the two steepest views, 10 and 11)."""
    folder = shared_data / "calibration" / "sksurgery_webcam_chessboard"
    board = board_from_mapping({"type": "chessboard", "inner_corners": [14, 10], "square_mm": 6})
    views = _views(folder, "calib.images.*.png", board)
    result = calibrate(views, (640, 480))
    assert len(result.views) == 12 and not result.dropped
    assert result.rms_px <= 0.4
    classic = _classic_views(folder, board)
    plain_rms, *_ = cv2.calibrateCamera([v.object_points_mm for v in classic], [v.image_points_px for v in classic],
                                        (640, 480), None, None)
    assert result.rms_px <= plain_rms
    # Against plain OpenCV on the views it gets right (0-9): fx 631.7 here, 628.4 there.  The two
    # corner detectors differ by 0.4% on the same views (SB gives 631.0 on views 0-9), about 4 of
    # the solver's standard deviations (0.7 px): on real images corner bias exceeds the
    # statistical uncertainty.  1% still separates both from the authors' 608.7, which came from
    # all 12 views, two of them with mis-assigned corners.
    plain_10 = cv2.calibrateCamera([v.object_points_mm for v in classic[:10]],
                                   [v.image_points_px for v in classic[:10]], (640, 480), None, None)
    assert abs(result.camera.fx / plain_10[1][0, 0] - 1) < 0.01
    assert abs(result.camera.fx / 608.67 - 1) > 0.03


def test_outlier_rule_drops_the_misdetected_views(shared_data):
    """Regression for the outlier rule on real data: with plain OpenCV's corners, the views where
    corners were mis-assigned (10 and 11: 3.5 and 3.1 px, the others 0.2-0.6 px) are dropped,
    and nothing else."""
    folder = shared_data / "calibration" / "sksurgery_webcam_chessboard"
    board = board_from_mapping({"type": "chessboard", "inner_corners": [14, 10], "square_mm": 6})
    result = calibrate(_classic_views(folder, board), (640, 480))
    assert sorted(v.source for v, _, _ in result.dropped) == ["calib.images.10.png", "calib.images.11.png"]
    assert result.rms_px < 0.35


def test_sksurgery_laparoscope_solves_and_warns(shared_data, tmp_path, capsys):
    """5 blurred 1080p views: solved (fx within 3 standard deviations of the authors' 1846.0;
    measured 1850.8 +- 15.5), with warnings that it is weak."""
    folder = shared_data / "calibration" / "sksurgery_viking_laparoscope"
    out = tmp_path / "cam.yaml"
    board = _board_file(tmp_path, {"type": "chessboard", "inner_corners": [14, 10], "square_mm": 3})
    code = main(["calibrate", "run", "--images", str(folder / "calib.images.*.png"), "--board", str(board),
                 "--output", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "found in 5 of 5 images" in captured.out
    assert "WARNING: calibration NOT TRUSTWORTHY" in captured.err
    for fragment in ("only 5 views used", "RMS reprojection error", "focal length uncertain"):
        assert fragment in captured.err
    cam = load_camera(out)
    fs = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
    std_fx = fs.getNode("std_deviations").getNode("fx").real()
    fs.release()
    assert abs(cam.fx - 1846.05) < 3 * std_fx
    # Plain OpenCV reaches 2.3 px on these views (data README); SB corners give 1.0 px.
    assert cam.extras["rms_px"] < 1.5


def test_laparoscope_verdict(shared_data):
    folder = shared_data / "calibration" / "sksurgery_viking_laparoscope"
    board = board_from_mapping({"type": "chessboard", "inner_corners": [14, 10], "square_mm": 3})
    views = _views(folder, "calib.images.*.png", board)
    result = calibrate(views, (1920, 1080))
    found = findings(result, views, (1920, 1080))
    assert verdict(found) == "not trustworthy"
    assert {"few_views", "rms", "coverage", "focal_std"} <= {f.code for f in found}


# ------------------------------------------------------------------ board-file mistakes


@pytest.mark.parametrize("changes, fragments", [
    ({"squares": [7, 5]}, ("did you swap squares: [7, 5] for [5, 7]?", "(24 corners)")),
    ({"dictionary": "DICT_4X4_50"}, ("no markers of DICT_4X4_50", "set dictionary: DICT_6X6_50")),
])
def test_tutorial_photos_with_a_wrong_board_file(shared_data, tmp_path, capsys, changes, fragments):
    folder = shared_data / "calibration" / "opencv_charuco_tutorial"
    board = _board_file(tmp_path, dict(TUTORIAL_BOARD, **changes))
    code = main(["calibrate", "run", "--images", str(folder), "--board", str(board), "--output",
                 str(tmp_path / "cam.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "cam.yaml").exists()


def test_chessboard_squares_counted_instead_of_inner_corners(shared_data, tmp_path, capsys):
    folder = shared_data / "calibration" / "sksurgery_webcam_chessboard"
    board = _board_file(tmp_path, {"type": "chessboard", "inner_corners": [15, 11], "square_mm": 6})
    code = main(["calibrate", "run", "--images", str(folder / "calib.images.*.png"), "--board", str(board),
                 "--output", str(tmp_path / "cam.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert ("a chessboard of 14x10 inner corners is in view but the board file says inner_corners: [15, 11] "
            "(inner corners are where four squares meet") in err


def test_chessboard_photos_with_a_charuco_board_file(shared_data, tmp_path, capsys):
    folder = shared_data / "calibration" / "sksurgery_webcam_chessboard"
    code = main(["calibrate", "run", "--images", str(folder / "calib.images.*.png"), "--board",
                 str(_board_file(tmp_path, TUTORIAL_BOARD)), "--output", str(tmp_path / "cam.yaml")])
    err = capsys.readouterr().err
    assert code == 2
    assert "a plain chessboard of 14x10 inner corners is in view, without markers: set type: chessboard" in err
