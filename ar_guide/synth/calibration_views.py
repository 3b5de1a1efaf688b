"""Synthetic photos of a calibration board through a known camera (calibration ground truth).

Each image pixel is supersampled; every sample's ray (undistorted with the camera's own model,
:func:`ar_guide.geometry.projection.pixels_to_normalized`) is intersected with the board plane and
looks up the board's printed pattern (:meth:`CalibrationBoard.black_rectangles_mm`, rasterised
finely), so the corners in the image are exactly where ``cv2.projectPoints`` puts them, blurred
only by the supersampling box, a small optical blur and sensor noise.
"""

from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

from ar_guide.calibration.boards import CalibrationBoard
from ar_guide.camera import CameraModel
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import look_at, make_transform, rotation_from_rotvec


@dataclasses.dataclass(frozen=True)
class ViewSettings:
    """How the synthetic photos are made."""

    supersample: int = 3            # samples per pixel along each axis
    texture_px_per_mm: float = 12.0
    quiet_zone_squares: float = 1.0  # white margin around the pattern, in squares (or 10 mm)
    blur_sigma_px: float = 0.5
    noise_sigma: float = 2.0        # grey levels
    paper: int = 235
    ink: int = 25
    background: int = 95


@functools.lru_cache(maxsize=4)
def _rays(camera_key, supersample: int):
    camera, = camera_key
    w, h = camera.image_size
    offsets = (np.arange(supersample) + 0.5) / supersample - 0.5
    u = (np.arange(w)[None, :, None, None] + offsets[None, None, None, :])
    v = (np.arange(h)[:, None, None, None] + offsets[None, None, :, None])
    uu = np.broadcast_to(u, (h, w, supersample, supersample)).reshape(-1)
    vv = np.broadcast_to(v, (h, w, supersample, supersample)).reshape(-1)
    xy = projection.pixels_to_normalized(np.column_stack([uu, vv]), camera.camera_matrix, camera.distortion)
    return xy.astype(np.float64)


class _CameraKey(tuple):
    """Hashable wrapper so that ray grids are cached per camera object."""

    def __hash__(self):
        return id(self[0])

    def __eq__(self, other):
        return isinstance(other, _CameraKey) and self[0] is other[0]


@functools.lru_cache(maxsize=8)
def _texture(board_key, px_per_mm: float, margin_mm: float):
    board, = board_key
    x0, y0, x1, y1 = board.extent_mm
    x0, y0, x1, y1 = x0 - margin_mm, y0 - margin_mm, x1 + margin_mm, y1 + margin_mm
    w = int(np.ceil((x1 - x0) * px_per_mm))
    h = int(np.ceil((y1 - y0) * px_per_mm))
    # Anti-aliased rasterisation: fill at 4x, then area-average.
    k = 4
    big = np.ones((h * k, w * k), np.float32)
    for a, b, c, d in board.black_rectangles_mm():
        r0, r1 = int(round((b - y0) * px_per_mm * k)), int(round((d - y0) * px_per_mm * k))
        c0, c1 = int(round((a - x0) * px_per_mm * k)), int(round((c - x0) * px_per_mm * k))
        big[r0:r1, c0:c1] = 0.0
    texture = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    return texture, (x0, y0)


def render_board_view(board: CalibrationBoard, camera: CameraModel, camera_from_board: np.ndarray,
                      rng: np.random.Generator | None = None, settings: ViewSettings = ViewSettings()) -> np.ndarray:
    """(H, W) uint8 grey photo of ``board`` seen by ``camera`` at ``camera_from_board`` (mm)."""
    if camera.image_size is None:
        raise ValueError("the camera needs an image size")
    w, h = camera.image_size
    s = settings.supersample
    xy = _rays(_CameraKey((camera,)), s)
    r = camera_from_board[:3, :3]
    t = camera_from_board[:3, 3]
    normal = r[:, 2]
    rays = np.column_stack([xy, np.ones(len(xy))])
    denom = rays @ normal
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (normal @ t) / denom
    hit = np.isfinite(depth) & (depth > 0)
    points_camera = rays * depth[:, None]
    points_board = (points_camera - t) @ r          # R^T (p - t), row vectors
    margin = settings.quiet_zone_squares * (board.square_mm or 10.0)
    texture, (tx0, ty0) = _texture((board,), settings.texture_px_per_mm, margin)
    # Texture pixel centres: texel (i, j) covers [i, i+1) / px_per_mm from the origin.
    map_x = ((points_board[:, 0] - tx0) * settings.texture_px_per_mm - 0.5).astype(np.float32)
    map_y = ((points_board[:, 1] - ty0) * settings.texture_px_per_mm - 0.5).astype(np.float32)
    map_x[~hit] = -10.0
    map_y[~hit] = -10.0
    # remap wants maps under 32767 on a side: one row per image row (samples along it).
    value = cv2.remap(texture, map_x.reshape(h, -1), map_y.reshape(h, -1), cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=-1.0).reshape(-1)
    on_board = value >= 0.0
    grey = np.where(on_board, settings.ink + (settings.paper - settings.ink) * value, settings.background)
    image = grey.reshape(h, w, s, s).mean(axis=(2, 3)).astype(np.float32)
    if settings.blur_sigma_px > 0:
        image = cv2.GaussianBlur(image, (0, 0), settings.blur_sigma_px)
    if rng is not None and settings.noise_sigma > 0:
        image = image + rng.normal(0.0, settings.noise_sigma, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def random_board_poses(board: CalibrationBoard, camera: CameraModel, count: int, seed: int = 0,
                       distance_mm: tuple[float, float] = (300.0, 600.0), max_tilt_deg: float = 50.0,
                       min_tilt_deg: float = 5.0) -> list[np.ndarray]:
    """``count`` poses ``camera_from_board`` that keep the whole board in view, spread over the
    image (its centre anywhere in the central 70%) and over tilts (``min..max_tilt_deg`` about a
    random in-plane axis) — what a careful user's calibration session looks like."""
    rng = np.random.default_rng(seed)
    w, h = camera.image_size
    x0, y0, x1, y1 = board.extent_mm
    centre_board = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    outline = np.array([[x0, y0, 0], [x1, y0, 0], [x1, y1, 0], [x0, y1, 0]], dtype=np.float64)
    poses = []
    attempts = 0
    while len(poses) < count:
        attempts += 1
        if attempts > 2000 * count:
            raise RuntimeError("could not place the board in view; widen the distance range")
        uv = np.array([rng.uniform(0.15, 0.85) * w, rng.uniform(0.15, 0.85) * h])
        ray = np.append(projection.pixels_to_normalized(uv[None], camera.camera_matrix, camera.distortion)[0], 1.0)
        distance = rng.uniform(*distance_mm)
        centre_camera = ray / np.linalg.norm(ray) * distance
        # Face the camera, then tilt about a random in-plane axis and spin about the normal.
        world_from_facing = look_at(np.zeros(3), centre_camera, up=(0.0, -1.0, 0.0))
        facing = world_from_facing[:3, :3]            # columns: x, y, z(=towards the board)
        axis = rng.normal(size=2)
        axis = axis / np.linalg.norm(axis)
        tilt = np.radians(rng.uniform(min_tilt_deg, max_tilt_deg))
        spin = np.radians(rng.uniform(-30.0, 30.0))
        r = facing @ rotation_from_rotvec([axis[0] * tilt, axis[1] * tilt, 0.0]) @ rotation_from_rotvec([0, 0, spin])
        camera_from_board = make_transform(r, centre_camera - r @ centre_board)
        corners_uv = camera.project((outline @ r.T) + camera_from_board[:3, 3])
        if np.all(np.isfinite(corners_uv)) and np.all(corners_uv > 10) and np.all(corners_uv[:, 0] < w - 10) \
                and np.all(corners_uv[:, 1] < h - 10):
            poses.append(camera_from_board)
    return poses
