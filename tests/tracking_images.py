"""Test helper: images of flat printed targets (boards, markers) seen by a distorted camera.

Each output pixel is split into ``supersample`` x ``supersample`` sub-pixels; every sub-pixel's
ray is undistorted (cv2.undistortPoints, iterated to 1e-12), intersected with the target's
plane and looked up in the target's texture; the sub-pixels are then averaged (INTER_AREA).
Coordinates follow OpenCV's pixel-centre convention on both sides, so the projection of a point
of the target by ``CameraModel.project`` lands exactly where the image shows it.
"""

from __future__ import annotations

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.tracking import aruco


def render_plane(texture: np.ndarray, mm_per_px: float, camera: CameraModel, camera_from_plane: np.ndarray,
                 image_size: tuple[int, int], supersample: int = 3, background: int = 255,
                 origin_mm=(0.0, 0.0)) -> np.ndarray:
    """(H, W) uint8 image of a flat texture lying on z = 0 of the plane frame.

    texture : (h, w) uint8; its pixel (i, j) covers plane x in [x0 + j, x0 + j + 1) * mm_per_px
        and y in [y0 + i, y0 + i + 1) * mm_per_px, (x0, y0) = origin_mm / mm_per_px
    """
    w, h = image_size
    k = int(supersample)
    # Full-resolution coordinate of sub-pixel i: (i + 0.5) / k - 0.5.
    us = (np.arange(w * k) + 0.5) / k - 0.5
    vs = (np.arange(h * k) + 0.5) / k - 0.5
    uu, vv = np.meshgrid(us, vs)
    pts = np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2)
    criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
    xy = cv2.undistortPoints(pts, camera.camera_matrix, camera.distortion, criteria=criteria).reshape(-1, 2)
    rays = np.column_stack([xy, np.ones(len(xy))])
    r = camera_from_plane[:3, :3]
    t = camera_from_plane[:3, 3]
    normal = r[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (normal @ t) / (rays @ normal)
    points_camera = rays * s[:, None]
    points_plane = (points_camera - t) @ r
    bad = ~(s > 0)
    tex_u = (points_plane[:, 0] - origin_mm[0]) / mm_per_px - 0.5
    tex_v = (points_plane[:, 1] - origin_mm[1]) / mm_per_px - 0.5
    tex_u[bad] = -1e6
    tex_v[bad] = -1e6
    map_x = tex_u.reshape(h * k, w * k).astype(np.float32)
    map_y = tex_v.reshape(h * k, w * k).astype(np.float32)
    big = cv2.remap(texture.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                    borderValue=float(background))
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def degrade(gray: np.ndarray, rng: np.random.Generator, blur_sigma_px: float = 0.6, noise: float = 2.0,
            black: float = 25.0, white: float = 225.0) -> np.ndarray:
    """Print contrast (black/white levels), optical blur and sensor noise."""
    img = black + gray.astype(np.float32) / 255.0 * (white - black)
    if blur_sigma_px > 0:
        img = cv2.GaussianBlur(img, (0, 0), blur_sigma_px)
    img = img + rng.normal(0.0, noise, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def board_texture(board, square_mm: float, squares_xy, px_per_square: int = 100) -> tuple[np.ndarray, float]:
    """(texture, mm_per_px) of a ChArUco board from aruco.board_image, exactly covering the board.

    Choose ``px_per_square`` so that the marker side and its margin are whole pixels (OpenCV
    rounds them when drawing): e.g. 100 for 25 mm squares with 18 mm markers (72 px, 14 px).
    """
    nx, ny = squares_xy
    texture = aruco.board_image(board, (nx * px_per_square, ny * px_per_square), margin_px=0)
    return texture, square_mm / px_per_square


def marker_sheet(dictionary: str, ids, columns: int, marker_mm: float, gap_cells: int = 3,
                 px_per_cell: int = 10, inverted: bool = False) -> tuple[np.ndarray, float, dict]:
    """(texture, mm_per_px, markers_plane) of markers in a grid on a white sheet.

    Markers are ``gap_cells`` cells apart and as far from the sheet's edge; markers_plane maps
    id -> (4, 3) corners (mm, OpenCV order, z = 0) in the sheet frame (origin: sheet corner).
    ``inverted`` prints white-on-black markers on a black sheet.
    """
    cells = aruco.get_dictionary(dictionary).markerSize + 2
    side = cells * px_per_cell
    gap = gap_cells * px_per_cell
    rows = -(-len(ids) // columns)
    sheet = np.full((gap + rows * (side + gap), gap + columns * (side + gap)), 255, np.uint8)
    mm_per_px = marker_mm / side
    markers = {}
    for k, marker_id in enumerate(ids):
        r, c = divmod(k, columns)
        x0, y0 = gap + c * (side + gap), gap + r * (side + gap)
        sheet[y0:y0 + side, x0:x0 + side] = aruco.marker_image(dictionary, int(marker_id), side)
        corners = np.array([[x0, y0], [x0 + side, y0], [x0 + side, y0 + side], [x0, y0 + side]], np.float64)
        markers[int(marker_id)] = np.column_stack([corners * mm_per_px, np.zeros(4)])
    if inverted:
        sheet = 255 - sheet
    return sheet, mm_per_px, markers
