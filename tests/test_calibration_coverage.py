"""Image and tilt coverage of board views (pure numpy): counts, tilts from exact projections,
the homography, the summary, and the choice of well-spread views."""

from __future__ import annotations

import numpy as np
import pytest

from ar_guide.calibration import coverage
from ar_guide.calibration.detect import BoardView
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec

K = np.array([[800.0, 0.0, 319.5], [0.0, 800.0, 239.5], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
BOARD_MM = np.array([[x, y, 0.0] for y in range(0, 150, 30) for x in range(0, 210, 30)], dtype=np.float64)


def _view(points_px, name="v", size=SIZE, obj=None):
    uv = np.asarray(points_px, dtype=np.float64)
    obj = np.zeros((len(uv), 3)) if obj is None else obj
    return BoardView(name, size, np.arange(len(uv)), uv, obj)


def _projected_view(camera_from_board, name="v"):
    p = BOARD_MM @ camera_from_board[:3, :3].T + camera_from_board[:3, 3]
    uv = (p[:, :2] / p[:, 2:]) * [K[0, 0], K[1, 1]] + K[:2, 2]
    return BoardView(name, SIZE, np.arange(len(uv)), uv, BOARD_MM)


def _pose(tilt_x_deg=0.0, tilt_y_deg=0.0, spin_deg=0.0, distance=600.0, offset=(0.0, 0.0)):
    r = rotation_from_rotvec([np.radians(tilt_x_deg), 0, 0]) @ rotation_from_rotvec([0, np.radians(tilt_y_deg), 0]) \
        @ rotation_from_rotvec([0, 0, np.radians(spin_deg)])
    centre = BOARD_MM.mean(axis=0)
    return make_transform(r, np.array([offset[0], offset[1], distance]) - r @ centre)


def test_image_coverage_counts_cells():
    # Cells of an 8x6 grid over 640x480 are 80 px; pixel centres run from -0.5 to 639.5.
    view = _view([[-0.5, -0.5], [79.4, 0], [79.6, 0], [639.49, 479.49], [320, 240], [320, 240]])
    counts = coverage.image_coverage([view], SIZE, (8, 6))
    assert counts.shape == (6, 8) and counts.sum() == 6
    assert counts[0, 0] == 2 and counts[0, 1] == 1 and counts[5, 7] == 1 and counts[3, 4] == 2


def test_homography_exact():
    pose = _pose(30, -20, 15)
    view = _projected_view(pose)
    h = coverage.homography(view.object_points_mm, view.image_points_px)
    mapped = np.column_stack([BOARD_MM[:, :2], np.ones(len(BOARD_MM))]) @ h.T
    np.testing.assert_allclose(mapped[:, :2] / mapped[:, 2:], view.image_points_px, atol=1e-6)


@pytest.mark.parametrize("tilt_x, tilt_y", [(0.0, 0.0), (30.0, 0.0), (0.0, -40.0), (25.0, 35.0), (-45.0, 10.0)])
def test_tilt_of_view_recovers_the_pose(tilt_x, tilt_y):
    pose = _pose(tilt_x, tilt_y, spin_deg=20.0)
    tx, ty = coverage.tilt_of_view(_projected_view(pose), K)
    # The board normal R[:, 2] = Rx(a) Ry(b) e_z = (sin b, -sin a cos b, cos a cos b): its angle
    # about x is a exactly, about y atan(tan b / cos a).  BoardView keeps float32 pixels
    # (1e-5 px at 300 px), hence 1e-4 degrees.
    assert tx == pytest.approx(tilt_x, abs=1e-4)
    assert ty == pytest.approx(np.degrees(np.arctan(np.tan(np.radians(tilt_y)) / np.cos(np.radians(tilt_x)))),
                               abs=1e-4)


def test_tilt_sign_convention():
    """Positive tilt_x: the lower part of the board is farther away; positive tilt_y: the left."""
    pose = _pose(30.0, 0.0)
    p = BOARD_MM @ pose[:3, :3].T + pose[:3, 3]
    lower = p[:, 1] > np.median(p[:, 1])
    assert p[lower, 2].mean() > p[~lower, 2].mean()
    assert coverage.tilt_of_view(_projected_view(pose), K)[0] > 0
    pose = _pose(0.0, 30.0)
    p = BOARD_MM @ pose[:3, :3].T + pose[:3, 3]
    left = p[:, 0] < np.median(p[:, 0])
    assert p[left, 2].mean() > p[~left, 2].mean()
    assert coverage.tilt_of_view(_projected_view(pose), K)[1] > 0


def test_coverage_summary_of_centre_views():
    views = [_projected_view(_pose(t, 0.0, distance=900.0), f"v{t}") for t in (0.0, 10.0, 25.0, 30.0)]
    summary = coverage.coverage_summary(views, SIZE, K)
    assert summary["grid"] == (8, 6)
    assert set(summary["regions_missing"]) == {"top-left corner", "top-right corner", "bottom-left corner",
                                               "bottom-right corner", "left edge", "right edge",
                                               "top edge", "bottom edge"}
    assert 0 < summary["covered_fraction"] < 0.5
    assert summary["tilted_x_views"] == 2 and summary["tilted_y_views"] == 0
    assert summary["max_tilt_deg"] == pytest.approx(30.0, abs=1e-4)
    assert summary["tilt_directions"] == ["bottom away"]
    tilts = np.array(summary["tilts_deg"])
    np.testing.assert_allclose(tilts[:, 0], [0.0, 10.0, 25.0, 30.0], atol=1e-4)


def test_coverage_summary_uses_given_rotations():
    views = [_projected_view(_pose(), "a")]
    summary = coverage.coverage_summary(views, SIZE, rotations=[rotation_from_rotvec([0.0, np.radians(-40.0), 0.0])])
    assert summary["tilts_deg"][0] == pytest.approx([0.0, -40.0])
    assert summary["tilt_directions"] == ["right away"]


def test_hull_area():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [5, 5], [2, 8]], dtype=float)
    assert coverage._hull_area(square) == pytest.approx(100.0)


def test_select_views_drops_duplicates_and_spreads():
    poses = [_pose(0, 0), _pose(0.5, 0.3), _pose(30, 0), _pose(-30, 0), _pose(0, 35), _pose(0, 0, offset=(100, 0))]
    views = [_projected_view(p, f"v{i}") for i, p in enumerate(poses)]
    features = np.array([coverage.view_features(v, K) for v in views])
    # View 1 is view 0 tilted half a degree: a duplicate.
    assert coverage.is_duplicate(features[0], features[1])
    assert not coverage.is_duplicate(features[0], features[2])
    chosen = coverage.select_views(features, 10)
    assert chosen == [0, 2, 3, 4, 5]
    # Preference order: the first preferred view is always kept.
    assert 1 in coverage.select_views(features, 10, order=[1, 0, 2, 3, 4, 5])
    # At most max_views, farthest first: after view 0, the strongest tilts.
    two = coverage.select_views(features, 2)
    assert len(two) == 2 and 0 in two and two[1] in (2, 3, 4)
    assert coverage.select_views(features, 10, drop_duplicates=False) == [0, 1, 2, 3, 4, 5]
