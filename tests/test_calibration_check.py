"""``calibrate check`` logic: reprojection and metric errors of board views under a calibration.

Views are the board's corners projected through the synthetic lens at poses that cover the image
(centre, edges, corners; tilted both ways) plus seeded corner noise: exact where the physics is
exact, so the tolerances below are those of the arithmetic or of the noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ar_guide.calibration.boards import board_from_mapping
from ar_guide.calibration.check import (back_project_to_plane, check_view, fit_board_pose, neighbour_pairs,
                                        summarize)
from ar_guide.calibration.detect import BoardView
from ar_guide.camera import CameraModel, load_camera, save_camera
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import make_transform, rotation_angle_between, rotation_from_rotvec
from ar_guide.synth.optics import synthetic_camera

W, H = 640, 360
BOARD = board_from_mapping({"type": "charuco", "squares": [7, 5], "square_mm": 25, "marker_mm": 18,
                            "dictionary": "DICT_5X5_100"})
CAMERA = synthetic_camera(W, H)
#: Board centres (fractions of the image) and tilts (axis in the board plane, degrees).
PLACES = [(0.5, 0.5), (0.2, 0.25), (0.8, 0.25), (0.2, 0.75), (0.8, 0.75), (0.5, 0.2), (0.5, 0.8),
          (0.15, 0.5), (0.85, 0.5)]
TILTS = [((1.0, 0.0), 25.0), ((0.0, 1.0), -25.0)]


def pose_at(u: float, v: float, distance_mm: float, axis=(1.0, 0.0), tilt_deg: float = 0.0,
            spin_deg: float = 5.0, camera: CameraModel = CAMERA) -> np.ndarray:
    """camera_from_board with the board's centre on the ray of pixel (u, v) at ``distance_mm``."""
    x0, y0, x1, y1 = BOARD.extent_mm
    centre_board = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    xy = projection.pixels_to_normalized(np.array([[u, v]]), camera.camera_matrix, camera.distortion)[0]
    ray = np.append(xy, 1.0)
    centre = ray / np.linalg.norm(ray) * distance_mm
    r = rotation_from_rotvec(np.array([axis[0], axis[1], 0.0]) * np.radians(tilt_deg)) \
        @ rotation_from_rotvec([0.0, 0.0, np.radians(spin_deg)])
    return make_transform(r, centre - r @ centre_board)


POSES = [pose_at(fu * W, fv * H, 380.0, axis, tilt) for fu, fv in PLACES for axis, tilt in TILTS]


def make_views(noise_px: float, seed: int = 1, scale=(1.0, 1.0), camera: CameraModel = CAMERA) -> list[BoardView]:
    """Views of BOARD at POSES through ``camera``; the printed board may be scaled (x, y)."""
    rng = np.random.default_rng(seed)
    obj = BOARD.corners_mm
    printed = obj * np.array([scale[0], scale[1], 1.0])
    views = []
    for k, pose in enumerate(POSES):
        uv = camera.project(printed @ pose[:3, :3].T + pose[:3, 3])
        inside = np.all((uv > 2) & (uv < [W - 3, H - 3]), axis=1)
        uv = uv + rng.normal(0.0, noise_px, uv.shape)
        views.append(BoardView(f"view {k}", (W, H), np.flatnonzero(inside), uv[inside], obj[inside]))
    return views


def with_intrinsics(camera: CameraModel, fx_factor: float = 1.0, distortion=None) -> CameraModel:
    k = camera.camera_matrix.copy()
    k[0, 0] *= fx_factor
    d = camera.distortion if distortion is None else distortion
    return dataclasses.replace(camera, camera_matrix=k, distortion=d)


# -- one view ---------------------------------------------------------------------------------------


def test_neighbour_pairs_of_a_small_grid():
    # A 3 x 2 grid of unit spacing: 2 x 2 horizontal + 3 vertical neighbours; the farthest pairs
    # (>= 90 % of the diagonal sqrt(5) = 2.24, so not the length-2 rows) are the two diagonals.
    obj = np.array([[x, y, 0.0] for y in range(2) for x in range(3)])
    pairs, spans = neighbour_pairs(obj)
    assert sorted(map(tuple, pairs.tolist())) == [(0, 1), (0, 3), (1, 2), (1, 4), (2, 5), (3, 4), (4, 5)]
    assert sorted(map(tuple, spans.tolist())) == [(0, 5), (2, 3)]


def test_back_projection_recovers_the_board_exactly():
    pose = POSES[3]
    obj = BOARD.corners_mm
    uv = CAMERA.project(obj @ pose[:3, :3].T + pose[:3, 3])
    board_points = back_project_to_plane(uv, CAMERA, pose)
    # Only the iterative undistortion stands between the two: far below a micrometre.
    np.testing.assert_allclose(board_points, obj, atol=1e-6)


def test_pose_fit_with_noise():
    pose = POSES[5]
    view = make_views(0.05)[5]
    fitted = fit_board_pose(view.object_points_mm, view.image_points_px, CAMERA)
    # 24 corners with 0.05 px noise at 380 mm: the pose is good to a fraction of a mm/degree.
    assert np.linalg.norm(fitted[:3, 3] - pose[:3, 3]) < 0.5
    assert np.degrees(rotation_angle_between(fitted[:3, :3], pose[:3, :3])) < 0.2


def test_true_calibration_without_noise_has_no_error():
    # BoardView keeps pixels in float32 (as detectors give them): 640 px * 2^-24 = 4e-5 px.
    for view in make_views(0.0):
        check = check_view(view, CAMERA)
        assert check.reprojection_rms_px < 1e-4
        assert check.spacing_max_mm < 1e-4 and check.span_max_mm < 1e-4


def test_true_calibration_is_good():
    summary = summarize([check_view(v, CAMERA) for v in make_views(0.05)])
    # 0.05 px per coordinate -> 0.07 px RMS per corner; spacing error about 0.07 / 33 px = 0.2 %.
    assert summary["reprojection"]["rms_px"] == pytest.approx(0.05 * np.sqrt(2), rel=0.15)
    assert summary["spacing"]["rms_percent"] < 0.3
    assert abs(summary["spacing"]["mean_percent"]) < 0.05
    # The metric baseline: 33 px squares, so two squares (66 px >= 60 px), three in steep views.
    assert set(summary["metric"]["squares"]) <= {2, 3} and summary["metric"]["rms_percent"] < 0.15
    assert summary["radial"]["outer_pairs"] >= 20  # the poses reach into the image corners
    assert summary["verdict"]["good"]
    assert summary["verdict"]["lines"][0].startswith("calibration looks good for this board")


def test_webcam_corner_noise_does_not_fail_a_true_calibration():
    # 0.2 px corner noise (a webcam): neighbouring corners 33 px apart are 0.9 % off by noise
    # alone, which is why the verdict measures spacing over the 60 px baseline.
    summary = summarize([check_view(v, CAMERA) for v in make_views(0.2)])
    assert summary["spacing"]["rms_percent"] > 0.6
    assert summary["metric"]["rms_percent"] < 0.5
    assert summary["verdict"]["good"]


def test_focal_length_off_by_3_percent_is_reported():
    good = summarize([check_view(v, CAMERA) for v in make_views(0.05)])
    bad = summarize([check_view(v, with_intrinsics(CAMERA, fx_factor=1.03)) for v in make_views(0.05)])
    assert not bad["verdict"]["good"]
    assert bad["verdict"]["lines"][0].startswith("calibration NOT good for this board")
    # The board pose absorbs much of a focal length error, but not all: the residuals grow
    # six-fold and the spacing error beyond the threshold.
    assert bad["reprojection"]["rms_px"] > 5 * good["reprojection"]["rms_px"]
    assert bad["metric"]["rms_percent"] > 0.5 > good["metric"]["rms_percent"]
    assert any(line.startswith(("aspect:", "spacing error", "reprojection")) for line in bad["verdict"]["lines"][1:])


def test_missing_distortion_shows_as_growth_towards_the_corners():
    summary = summarize([check_view(v, with_intrinsics(CAMERA, distortion=np.zeros(5))) for v in make_views(0.05)])
    assert not summary["verdict"]["good"]
    radial = summary["radial"]
    assert radial["outer_spacing_rms_percent"] > 1.6 * radial["inner_spacing_rms_percent"]
    assert any(line.startswith("errors grow towards the image corners") for line in summary["verdict"]["lines"])


def test_growth_is_not_claimed_for_a_focal_length_error():
    summary = summarize([check_view(v, with_intrinsics(CAMERA, fx_factor=1.03)) for v in make_views(0.05)])
    assert not any("grow towards" in line for line in summary["verdict"]["lines"])


def test_a_uniformly_scaled_print_is_invisible_to_one_camera():
    # Documented limitation (check.py): the board simply fits 2 % farther away.
    summary = summarize([check_view(v, CAMERA) for v in make_views(0.05, scale=(1.02, 1.02))])
    assert summary["verdict"]["good"]
    assert abs(summary["spacing"]["mean_percent"]) < 0.05


def _face_on_check(distance_mm: float) -> dict:
    pose = pose_at(W / 2, H / 2, distance_mm)
    obj = BOARD.corners_mm
    uv = CAMERA.project(obj @ pose[:3, :3].T + pose[:3, 3])
    return summarize([check_view(BoardView("far", (W, H), np.arange(len(obj)), uv, obj), CAMERA)])


def test_baseline_grows_with_distance_and_a_tiny_board_gives_a_note():
    # At 900 mm the squares are 14.5 px: the baseline is the fewest squares reaching 60 px: 5.
    far = _face_on_check(900.0)
    assert far["metric"]["squares"] == [5] and far["metric"]["median_length_px"] >= 60.0
    assert not any(line.startswith("note: the board is small") for line in far["verdict"]["lines"])
    assert any("image corners to check them" in line for line in far["verdict"]["lines"])
    # At 3 m even a whole row (5 squares, 22 px) is short: the user is told.
    tiny = _face_on_check(3000.0)
    assert tiny["metric"]["squares"] == [5]          # 6 x 4 inner corners: rows of 5 squares
    assert any(line.startswith("note: the board is small in the image (corners at most 22 px apart")
               for line in tiny["verdict"]["lines"])


def test_no_views():
    summary = summarize([])
    assert summary["views"] == 0 and not summary["verdict"]["good"]


# -- real photos (../shared/data) --------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_charuco_photos_with_the_authors_calibration(shared_data, tmp_path, capsys):
    import json

    from ar_guide.cli import main

    from conftest import PROJECT_ROOT

    folder = shared_data / "calibration" / "opencv_charuco_tutorial"
    board = PROJECT_ROOT / "calibration" / "opencv_tutorial_charuco.yaml"
    report = tmp_path / "check.json"
    rc = main(["calibrate", "check", "--images", str(folder), "--board", str(board), "--calibration",
               str(folder / "tutorial_camera_charuco.yml"), "--report", str(report), "--no-window"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "calibration looks good for this board" in out
    data = json.loads(report.read_text())
    assert data["frames_with_board"] == 4
    # The authors' calibration reports 0.18 px average reprojection error on these photos; a
    # PnP per photo under it gives about the same (0.19 px measured).
    assert 0.1 < data["summary"]["reprojection"]["rms_px"] < 0.3
    assert [f["source"] for f in data["per_frame"]] == ["img_00.jpg", "img_01.jpg", "img_02.jpg", "img_03.jpg"]
    # The photos keep to the middle of the image: the check says the corners went unchecked.
    assert any("image corners to check them" in line for line in data["verdict"]["lines"])
    # fx 3 % too large: found, as an aspect error (0.8 % between image directions measured).
    camera = load_camera(folder / "tutorial_camera_charuco.yml")
    k = camera.camera_matrix.copy()
    k[0, 0] *= 1.03
    wrong = tmp_path / "fx.yaml"
    save_camera(wrong, dataclasses.replace(camera, camera_matrix=k, extras={}))
    rc = main(["calibrate", "check", "--images", str(folder), "--board", str(board), "--calibration", str(wrong),
               "--no-window"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "calibration NOT good for this board" in out
    assert "aspect: squares measure" in out and "longer vertically than horizontally" in out
