"""OpenCV's pinhole camera model with lens distortion, in numpy.

Implements the model of ``cv2.projectPoints`` for 4, 5, 8, 12 coefficient vectors
(k1, k2, p1, p2[, k3[, k4, k5, k6[, s1, s2, s3, s4]]]); the tilted-sensor terms (14
coefficients) are refused.  Pixel centres follow OpenCV: the top-left pixel's centre is (0, 0).
Reference: OpenCV documentation, "Camera Calibration and 3D Reconstruction" (calib3d).
"""

from __future__ import annotations

import numpy as np

SUPPORTED_DISTORTION_LENGTHS = (0, 4, 5, 8, 12)


def full_distortion(distortion) -> np.ndarray:
    """The 12 coefficients (k1 k2 p1 p2 k3 k4 k5 k6 s1 s2 s3 s4), zero-padded."""
    d = np.asarray(distortion, dtype=np.float64).ravel()
    if d.size not in SUPPORTED_DISTORTION_LENGTHS:
        raise ValueError(
            f"distortion must have one of {SUPPORTED_DISTORTION_LENGTHS} coefficients, got {d.size}"
        )
    out = np.zeros(12)
    out[: d.size] = d
    return out


def distort_normalized(xy: np.ndarray, distortion) -> np.ndarray:
    """Apply lens distortion to (N, 2) normalised image coordinates (x/z, y/z)."""
    k1, k2, p1, p2, k3, k4, k5, k6, s1, s2, s3, s4 = full_distortion(distortion)
    x = xy[:, 0]
    y = xy[:, 1]
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    radial = (1.0 + k1 * r2 + k2 * r4 + k3 * r6) / (1.0 + k4 * r2 + k5 * r4 + k6 * r6)
    xd = x * radial + 2.0 * p1 * x * y + p2 * (r2 + 2.0 * x * x) + s1 * r2 + s2 * r4
    yd = y * radial + p1 * (r2 + 2.0 * y * y) + 2.0 * p2 * x * y + s3 * r2 + s4 * r4
    return np.column_stack([xd, yd])


def undistort_normalized(xy_distorted: np.ndarray, distortion, iterations: int = 50,
                         tolerance: float = 1e-12) -> np.ndarray:
    """Invert :func:`distort_normalized` by Gauss-Newton with a numerical Jacobian.

    Converges to ~1e-12 in normalised units for the distortion of real lenses inside their
    calibrated field; points where the model folds back keep the best iterate.
    """
    target = np.asarray(xy_distorted, dtype=np.float64).reshape(-1, 2)
    xy = target.copy()
    h = 1e-7
    for _ in range(iterations):
        f = distort_normalized(xy, distortion) - target
        if np.max(np.abs(f), initial=0.0) < tolerance:
            break
        fx = (distort_normalized(xy + [h, 0.0], distortion) - target - f) / h
        fy = (distort_normalized(xy + [0.0, h], distortion) - target - f) / h
        a, c = fx[:, 0], fx[:, 1]
        b, d = fy[:, 0], fy[:, 1]
        det = a * d - b * c
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        dx = (d * f[:, 0] - b * f[:, 1]) / det
        dy = (-c * f[:, 0] + a * f[:, 1]) / det
        xy = xy - np.column_stack([dx, dy])
    return xy


def project_points(points_camera: np.ndarray, camera_matrix: np.ndarray, distortion) -> np.ndarray:
    """(N, 3) points in the OpenCV camera frame (mm) to (N, 2) pixels ``uv_px``.

    Points at or behind the camera plane give NaN rather than a mirrored pixel.
    """
    p = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
    z = p[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = p[:, :2] / z[:, None]
    xy[z <= 0] = np.nan
    xyd = distort_normalized(xy, distortion)
    k = camera_matrix
    u = k[0, 0] * xyd[:, 0] + k[0, 1] * xyd[:, 1] + k[0, 2]
    v = k[1, 1] * xyd[:, 1] + k[1, 2]
    return np.column_stack([u, v])


def pixels_to_normalized(uv_px: np.ndarray, camera_matrix: np.ndarray, distortion) -> np.ndarray:
    """(N, 2) distorted pixels to undistorted normalised coordinates (x/z, y/z)."""
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    k = camera_matrix
    yd = (uv[:, 1] - k[1, 2]) / k[1, 1]
    xd = (uv[:, 0] - k[0, 2] - k[0, 1] * yd) / k[0, 0]
    return undistort_normalized(np.column_stack([xd, yd]), distortion)
