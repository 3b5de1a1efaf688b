"""Solving the camera model: accuracy against the known synthetic camera, agreement with plain
OpenCV, outlier views dropped (and only those), the model options, and the distortion helpers."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

import calibration_synth as cs
from ar_guide.calibration.detect import BoardDetector, BoardView
from ar_guide.calibration.solve import (CameraModelOptions, calibrate, corner_radius_normalized,
                                        distortion_displacement_px, image_grid, max_distorted_radius,
                                        outlier_limit)
from ar_guide.camera import CameraModel
from ar_guide.constants import CalibrationSettings
from ar_guide.errors import InputError

W, H = 640, 360


@pytest.fixture(scope="module")
def session():
    """12 views (each image corner twice, each edge once) of a 9x7, 15 mm ChArUco board, 640x360."""
    cam = cs.camera(W, H)
    board = cs.charuco((9, 7), 15.0, 11.0)
    poses = cs.covering_poses(board, cam, cs.PLAN_12, seed=0, distance_mm=(180.0, 280.0))
    detector = BoardDetector(board)
    views = [detector.detect(image, f"v{i:02d}") for i, image in enumerate(cs.render_all(board, cam, poses))]
    assert all(v is not None for v in views)
    return cam, board, views


def _plain_opencv(views, size, flags=0):
    """cv2.calibrateCamera with its defaults on the same points."""
    return cv2.calibrateCamera([v.object_points_mm for v in views], [v.image_points_px for v in views],
                               size, None, None, flags=flags)


def test_recovers_the_synthetic_camera(session):
    cam, _, views = session
    result = calibrate(views, (W, H))
    c = result.camera
    assert not result.dropped and len(result.views) == 12
    assert c.image_size == (W, H)
    # Corners are good to about 0.1 px here, so the RMS is about that.
    assert result.rms_px < 0.15
    # 12 views at 640x360 determine fx, fy to 0.00-0.14% and cx, cy to 0.01-0.25% over seeds
    # 0-3 (the error is within 3 of the solver's own standard deviations, which this checks
    # too); the brief's 0.3% holds for 20 views at 1280x720 (the slow test below).
    for name, true in (("fx", cam.fx), ("fy", cam.fy), ("cx", cam.cx), ("cy", cam.cy)):
        estimate = getattr(c, name)
        assert abs(estimate - true) < 3.0 * result.std[name], name
        assert abs(estimate / true - 1.0) < 0.005, name


def test_same_as_plain_opencv_when_nothing_is_dropped(session):
    _, _, views = session
    result = calibrate(views, (W, H))
    rms, k, dist, _, _ = _plain_opencv(views, (W, H))
    # More LM iterations than OpenCV's default 30 can only lower the error, by a hair here.
    assert result.rms_px <= rms + 1e-9
    assert result.rms_px == pytest.approx(rms, abs=1e-4)
    np.testing.assert_allclose(result.camera.camera_matrix, k, rtol=1e-4)


def test_residuals_and_per_view_errors_are_consistent(session):
    _, _, views = session
    result = calibrate(views, (W, H))
    assert len(result.residuals_px) == len(result.views) == len(result.camera_from_board)
    per_view = [np.sqrt(np.mean(np.sum(r ** 2, axis=1))) for r in result.residuals_px]
    np.testing.assert_allclose(per_view, result.per_view_rms_px, rtol=1e-5)
    total = np.sqrt(np.mean(np.concatenate([np.sum(r ** 2, axis=1) for r in result.residuals_px])))
    assert total == pytest.approx(result.rms_px, rel=1e-5)
    assert result.history == [(12, result.rms_px)]
    assert set(result.std) == {"fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3"}


def _corrupted(view: BoardView, shift_px: float, rng) -> BoardView:
    """The view with its corners moved by ``shift_px`` in random directions (a bad detection)."""
    noise = rng.normal(size=view.image_points_px.shape)
    noise *= shift_px / np.linalg.norm(noise, axis=1, keepdims=True)
    return dataclasses.replace(view, image_points_px=view.image_points_px + noise.astype(np.float32))


def test_outlier_view_is_dropped_and_named(session):
    _, _, views = session
    views = list(views)
    views[5] = _corrupted(views[5], 2.0, np.random.default_rng(1))
    result = calibrate(views, (W, H))
    assert [v.source for v, _, _ in result.dropped] == ["v05"]
    view, error, reason = result.dropped[0]
    assert error > 1.0 and reason.startswith(f"RMS {error:.2f} px, above")
    assert len(result.history) == 2 and result.history[0][0] == 12 and result.history[1][0] == 11
    # The final model is plain OpenCV's on the remaining views, and better than with the outlier.
    kept = [v for i, v in enumerate(views) if i != 5]
    rms_kept, k_kept, *_ = _plain_opencv(kept, (W, H))
    rms_all, *_ = _plain_opencv(views, (W, H))
    assert result.rms_px == pytest.approx(rms_kept, abs=1e-4) and result.rms_px < rms_all / 2
    np.testing.assert_allclose(result.camera.camera_matrix, k_kept, rtol=1e-4)


def test_good_views_are_not_dropped_for_small_differences(session):
    """Views at 0.1-0.2 px are all fine: the 0.5 px floor keeps every one of them."""
    _, _, views = session
    views = list(views)
    views[3] = _corrupted(views[3], 0.25, np.random.default_rng(2))
    result = calibrate(views, (W, H))
    assert not result.dropped


def test_drops_never_go_below_the_limits(session):
    _, _, views = session
    rng = np.random.default_rng(3)
    # Three views, one of them bad: min_views is 3, nothing may be dropped.
    three = [views[0], views[1], _corrupted(views[2], 3.0, rng)]
    assert not calibrate(three, (W, H)).dropped
    # Six bad views of twelve: at most 25% (3) are dropped.
    bad = [_corrupted(v, 3.0 + i, rng) if i % 2 == 0 else v for i, v in enumerate(views)]
    result = calibrate(bad, (W, H))
    assert len(result.dropped) == 3


def test_outlier_limit_rule():
    settings = CalibrationSettings()
    # median 0.2, MAD 0 -> max(0.6, 0.2, 0.5) = 0.6
    assert outlier_limit(np.array([0.2, 0.2, 0.2, 5.0]), settings) == pytest.approx(0.6)
    # median 1.0, MAD 0.2 -> max(3.0, 1.0 + 3 * 1.4826 * 0.2, 0.5) = 3.0
    assert outlier_limit(np.array([0.8, 1.0, 1.2, 1.0, 0.8]), settings) == pytest.approx(3.0)


@pytest.mark.parametrize("options, n_dist, fixed", [
    (CameraModelOptions(), 5, ()),
    (CameraModelOptions(fix_aspect=True), 5, ()),
    (CameraModelOptions(zero_tangent=True), 5, ("p1", "p2")),
    (CameraModelOptions(fix_k3=True), 5, ("k3",)),
    (CameraModelOptions(rational=True), 8, ()),
])
def test_model_options(session, options, n_dist, fixed):
    _, _, views = session
    result = calibrate(views, (W, H), options)
    c = result.camera
    assert c.distortion.shape == (n_dist,)
    for name in fixed:
        assert c.distortion[("k1", "k2", "p1", "p2", "k3").index(name)] == 0.0
        assert name not in result.std
    if options.fix_aspect:
        assert c.fx == c.fy
    rms, *_ = _plain_opencv(views, (W, H), options.flags)
    assert result.rms_px <= rms + 1e-6
    assert options.describe().startswith("pinhole, " + ("rational" if options.rational else "polynomial"))


def test_too_few_views_and_mixed_sizes(session):
    _, _, views = session
    with pytest.raises(InputError, match=r"2 views of the board; at least 3 are needed"):
        calibrate(views[:2], (W, H))
    other = dataclasses.replace(views[1], image_size=(1280, 720))
    with pytest.raises(InputError, match=r"view 'v01' is 1280x720 but the calibration is for 640x360"):
        calibrate([views[0], other, views[2]], (W, H))


def test_distortion_displacement():
    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    none = CameraModel(k, np.zeros(5), (640, 480))
    grid = image_grid((640, 480), (5, 4))
    assert grid.shape == (20, 2) and grid[0].tolist() == [0.0, 0.0] and grid[-1].tolist() == [639.0, 479.0]
    np.testing.assert_allclose(distortion_displacement_px(none, grid), 0.0, atol=1e-9)
    # k1 only: a point at normalised (0.4, 0) distorts to 0.4 (1 + k1 0.16); with k1 = -0.2 the
    # pixel 320 + 500 * 0.4 * 0.968 = 513.6 comes from 520: displacement -6.4 px.
    barrel = CameraModel(k, [-0.2, 0, 0, 0, 0], (640, 480))
    d = distortion_displacement_px(barrel, np.array([[513.6, 240.0]]))
    np.testing.assert_allclose(d, [[-6.4, 0.0]], atol=1e-6)


def test_max_distorted_radius():
    k = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
    # r_d = r (1 - 0.5 r^2) grows until 1 - 1.5 r^2 = 0: r = 0.8165, r_d = 0.5443.
    folding = CameraModel(k, [-0.5, 0, 0, 0, 0], (640, 480))
    assert max_distorted_radius(folding) == pytest.approx(0.8165 * (1 - 0.5 * 0.8165 ** 2), abs=1e-3)
    # The image corner (0, 0) is at normalised radius 0.8 (distorted).
    assert corner_radius_normalized(folding) == pytest.approx(np.hypot(320, 240) / 500, rel=1e-2)
    assert max_distorted_radius(CameraModel(k, [0.1, 0, 0, 0, 0], (640, 480))) is None


@pytest.mark.slow
def test_twenty_views_recover_intrinsics_and_distortion_field():
    """The issue's synthetic accuracy test: 20 views, 1280x720, the demo lens (fx 1046.3, k1 -0.284,
    up to 128 px of distortion at the image corners), each image corner 3 times and each edge
    twice, a 12x9 ChArUco board with 18 mm squares.

    Over seeds 0-5 of this plan: fx, fy, cx, cy within 0.003-0.056% (each within 1.6 standard
    deviations reported by the solver); the distortion field's RMS difference over the image
    0.008-0.072 px, its largest difference 0.08-0.34 px, at the image's extreme corners, beyond
    the radius any detected corner reached (0.90 of the corner radius), where the polynomial is
    extrapolated.  Within the reached radius the largest difference is 0.013-0.17 px.  Seed 0,
    the worst of the six, is the one tested.
    """
    cam = cs.camera(1280, 720)
    board = cs.charuco((12, 9), 18.0, 13.0)
    poses = cs.covering_poses(board, cam, cs.PLAN_20, seed=0)
    detector = BoardDetector(board)
    views = [detector.detect(image, f"v{i}") for i, image in enumerate(cs.render_all(board, cam, poses))]
    assert all(v is not None for v in views)
    result = calibrate(views, (1280, 720))
    c = result.camera
    assert len(result.views) == 20
    for name, true in (("fx", cam.fx), ("fy", cam.fy), ("cx", cam.cx), ("cy", cam.cy)):
        assert abs(getattr(c, name) / true - 1.0) < 0.003, name
        assert abs(getattr(c, name) - true) < 3.0 * result.std[name], name
    grid = image_grid((1280, 720), (33, 19))
    difference = np.linalg.norm(distortion_displacement_px(c, grid) - distortion_displacement_px(cam, grid), axis=1)
    assert np.sqrt(np.mean(difference ** 2)) < 0.1
    assert difference.max() < 0.5
    k = cam.camera_matrix
    radius = lambda uv: np.hypot((uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1])  # noqa: E731
    reached = radius(np.concatenate([v.image_points_px for v in views])).max()
    inside = radius(grid) <= reached
    assert difference[inside].max() < 0.25
