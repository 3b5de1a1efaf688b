"""The synthetic camera: its calibration, the pinhole canvas it is rendered on, and the remap.

Frames are rendered through exactly the calibration's model (OpenCV's, as ``cv2.projectPoints``):
the scene is drawn by an ideal pinhole camera onto a *canvas* that covers the undistorted
footprint of the image, then ``cv2.remap`` moves every image pixel to where its undistorted ray
meets the canvas.  The maps come from :func:`ar_guide.geometry.projection.pixels_to_normalized`.

Pixel centres follow OpenCV (the top-left pixel's centre is (0, 0)) in the image and the canvas.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.geometry import projection

#: The lens of the demo camera at its native 1280x720 (a wide-angle webcam-like lens with clear
#: barrel distortion; values of the order OpenCV's calibrations of such cameras give).
BASE_SIZE = (1280, 720)
BASE_CAMERA_MATRIX = np.array([[1046.3, 0.0, 643.7], [0.0, 1044.8, 355.2], [0.0, 0.0, 1.0]])
#: k1, k2, p1, p2, k3 (OpenCV order).
BASE_DISTORTION = np.array([-0.284, 0.105, 0.0007, -0.0005, -0.012])


def synthetic_camera(width: int, height: int) -> CameraModel:
    """The demo camera's calibration for a ``width`` x ``height`` image.

    The 1280x720 lens is rescaled explicitly (CameraModel.scaled: the same sensor area sampled
    with fewer or more pixels), so every spec size sees the same optics.
    """
    base = CameraModel(BASE_CAMERA_MATRIX, BASE_DISTORTION, BASE_SIZE,
                       {"source": "ar_guide synthetic phantom camera (exact model)"})
    if (int(width), int(height)) == BASE_SIZE:
        return base
    return base.scaled(int(width), int(height))


@dataclasses.dataclass(frozen=True, eq=False)
class Canvas:
    """The pinhole canvas and the maps that distort it into the camera image.

    camera_matrix : (3, 3) float64, the canvas's pinhole intrinsics (px; same focal lengths as the
        calibration, principal point moved so that the footprint fits)
    size : (Wc, Hc) px
    map_x, map_y : (H, W) float32, canvas pixel (OpenCV centres) seen by each image pixel
    normalized_xy : (H, W, 2) float32, undistorted normalised coordinates (x/z, y/z) of each image
        pixel (for vignetting, which depends on the field angle)
    footprint_min, footprint_max : (2,) float64, bounding box of the undistorted normalised
        coordinates of the image (half a pixel beyond the outer pixel centres)
    """

    camera_matrix: np.ndarray
    size: tuple[int, int]
    map_x: np.ndarray
    map_y: np.ndarray
    normalized_xy: np.ndarray
    footprint_min: np.ndarray
    footprint_max: np.ndarray


def make_canvas(camera: CameraModel, margin_px: int = 4) -> Canvas:
    """Canvas for ``camera`` (which must know its image size), ``margin_px`` beyond the footprint."""
    w, h = camera.image_size
    k = camera.camera_matrix
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    xy = projection.pixels_to_normalized(np.column_stack([u.ravel(), v.ravel()]), k, camera.distortion)
    # Footprint bounds from the image's outer boundary (pixel edges, half a pixel out).
    edge = _boundary_pixels(w, h)
    edge_xy = projection.pixels_to_normalized(edge, k, camera.distortion)
    lo = np.minimum(edge_xy.min(axis=0), xy.min(axis=0))
    hi = np.maximum(edge_xy.max(axis=0), xy.max(axis=0))
    fx, fy, skew = k[0, 0], k[1, 1], k[0, 1]
    if abs(skew) > 1e-9:
        raise ValueError("the synthetic camera has no skew")
    pad = float(margin_px) + 1.0
    cx = -lo[0] * fx + pad
    cy = -lo[1] * fy + pad
    wc = int(np.ceil(hi[0] * fx + cx + pad))
    hc = int(np.ceil(hi[1] * fy + cy + pad))
    kc = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    map_x = (fx * xy[:, 0] + cx).reshape(h, w).astype(np.float32)
    map_y = (fy * xy[:, 1] + cy).reshape(h, w).astype(np.float32)
    return Canvas(kc, (wc, hc), map_x, map_y, xy.reshape(h, w, 2).astype(np.float32), lo, hi)


def _boundary_pixels(w: int, h: int, step: int = 4) -> np.ndarray:
    xs = np.append(np.arange(-0.5, w - 0.5, step), w - 0.5)
    ys = np.append(np.arange(-0.5, h - 0.5, step), h - 0.5)
    top = np.column_stack([xs, np.full_like(xs, -0.5)])
    bottom = np.column_stack([xs, np.full_like(xs, h - 0.5)])
    left = np.column_stack([np.full_like(ys, -0.5), ys])
    right = np.column_stack([np.full_like(ys, w - 0.5), ys])
    return np.vstack([top, bottom, left, right])


def remap_to_image(canvas_image: np.ndarray, canvas: Canvas) -> np.ndarray:
    """Distort a canvas render (Hc, Wc, C) into the camera image (H, W, C), bilinear."""
    return cv2.remap(canvas_image, canvas.map_x, canvas.map_y, cv2.INTER_LINEAR,
                     borderMode=cv2.BORDER_REPLICATE)


def project_in_image(points_camera: np.ndarray, camera: CameraModel,
                     canvas: Canvas) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) camera-frame points (mm); also say which land inside the image.

    Returns (uv_px (N, 2) float64, inside (N,) bool).  A point is inside when it is in front of
    the camera, its undistorted direction lies within the image footprint (beyond it OpenCV's
    polynomial can fold back into the image) and its pixel lies within the outer pixel edges.
    """
    p = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
    uv = camera.project(p)
    w, h = camera.image_size
    with np.errstate(divide="ignore", invalid="ignore"):
        xy = p[:, :2] / p[:, 2:3]
    front = p[:, 2] > 1e-6
    in_footprint = np.all((xy >= canvas.footprint_min) & (xy <= canvas.footprint_max), axis=1)
    in_pixels = ((uv[:, 0] >= -0.5) & (uv[:, 0] <= w - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= h - 0.5))
    inside = front & in_footprint & np.nan_to_num(in_pixels, nan=False).astype(bool)
    return uv, inside
