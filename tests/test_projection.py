"""The numpy camera model against cv2.projectPoints, and its inverse."""

import cv2
import numpy as np
import pytest

from ar_guide.geometry import projection

# OpenCV's model has no skew (projectPoints ignores K[0, 1]); CameraModel refuses one.
K = np.array([[1050.0, 0.0, 645.2], [0.0, 1047.5, 356.9], [0.0, 0.0, 1.0]])
DISTORTIONS = {
    "none": np.zeros(5),
    "4": np.array([-0.28, 0.09, 1e-3, -5e-4]),
    "5": np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01]),
    "8 rational": np.array([0.12, -0.3, 1e-3, 2e-3, 0.05, 0.4, -0.2, 0.1]),
    "12 thin prism": np.array([0.12, -0.3, 1e-3, 2e-3, 0.05, 0.4, -0.2, 0.1, 1e-3, -2e-4, 5e-4, 1e-4]),
}


@pytest.mark.parametrize("name", DISTORTIONS)
def test_project_points_matches_opencv(name):
    rng = np.random.default_rng(10)
    points = rng.uniform([-300, -200, 400], [300, 200, 1200], size=(2000, 3))
    expected, _ = cv2.projectPoints(points, np.zeros(3), np.zeros(3), K, DISTORTIONS[name])
    uv = projection.project_points(points, K, DISTORTIONS[name])
    np.testing.assert_allclose(uv, expected.reshape(-1, 2), atol=1e-9)


@pytest.mark.parametrize("name", DISTORTIONS)
def test_pixels_to_normalized_inverts_projection(name):
    rng = np.random.default_rng(11)
    points = rng.uniform([-300, -200, 400], [300, 200, 1200], size=(2000, 3))
    uv = projection.project_points(points, K, DISTORTIONS[name])
    xy = projection.pixels_to_normalized(uv, K, DISTORTIONS[name])
    np.testing.assert_allclose(xy, points[:, :2] / points[:, 2:], atol=1e-10)


def test_points_behind_camera_are_nan_not_mirrored():
    uv = projection.project_points(np.array([[10.0, 0, -100], [10.0, 0, 100]]), K, DISTORTIONS["5"])
    assert np.all(np.isnan(uv[0]))
    assert np.all(np.isfinite(uv[1]))


def test_rejects_unsupported_distortion_length():
    with pytest.raises(ValueError, match="coefficients, got 14"):
        projection.full_distortion(np.zeros(14))
