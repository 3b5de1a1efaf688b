"""Synthetic calibration sessions for the calibration tests: boards, a view plan, rendered photos.

The photos come from ar_guide.synth.calibration_views (exact projection through the demo lens,
ar_guide.synth.optics.synthetic_camera).  ``covering_poses`` plans what a careful user does:
the board's outer edge pushed into each image corner and against each edge (ChArUco views may
be partial), plus views near the centre, every view tilted; ``random_board_poses`` keeps the
whole board inside the central part of the image instead, so the image corners stay empty.
Renders are cached per session (they cost 0.05-0.3 s each, plus a few seconds for the first
view of a camera).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from ar_guide.calibration.boards import board_from_mapping
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import look_at, make_transform, rotation_from_rotvec
from ar_guide.synth.calibration_views import ViewSettings, render_board_view
from ar_guide.synth.optics import synthetic_camera

#: (image target as fractions of (w, h), board anchor in half-extents of the pattern):
#: the board's outer corner / edge midpoint / centre placed at that image position.
CORNERS = [((0.01, 0.01), (-1, -1)), ((0.99, 0.01), (1, -1)), ((0.01, 0.99), (-1, 1)), ((0.99, 0.99), (1, 1))]
EDGES = [((0.5, 0.01), (0, -1)), ((0.5, 0.99), (0, 1)), ((0.01, 0.5), (-1, 0)), ((0.99, 0.5), (1, 0))]
CENTRE = [((0.5, 0.5), (0, 0))]
#: 20 views: each corner 3 times, each edge twice.
PLAN_20 = CORNERS * 3 + EDGES * 2
#: 12 views: each corner twice, each edge once.
PLAN_12 = CORNERS * 2 + EDGES


@functools.lru_cache(maxsize=None)
def camera(width: int, height: int):
    return synthetic_camera(width, height)


@functools.lru_cache(maxsize=None)
def charuco(squares=(7, 5), square_mm=30.0, marker_mm=22.0, dictionary="DICT_5X5_100", legacy=False):
    return board_from_mapping({"type": "charuco", "squares": list(squares), "square_mm": square_mm,
                               "marker_mm": marker_mm, "dictionary": dictionary, "legacy_pattern": legacy})


@functools.lru_cache(maxsize=None)
def chessboard(inner=(9, 6), square_mm=25.0):
    return board_from_mapping({"type": "chessboard", "inner_corners": list(inner), "square_mm": square_mm})


@functools.lru_cache(maxsize=None)
def grid(markers=(4, 3), marker_mm=40.0, separation_mm=10.0, dictionary="DICT_4X4_50"):
    return board_from_mapping({"type": "aruco_grid", "markers": list(markers), "marker_mm": marker_mm,
                               "separation_mm": separation_mm, "dictionary": dictionary})


def covering_poses(board, cam, plan, seed: int, distance_mm=(280.0, 420.0), tilt_deg=(25.0, 50.0),
                   spin_deg=10.0) -> list[np.ndarray]:
    """camera_from_board (4, 4) per plan entry: the board anchor (its outer corner, edge midpoint
    or centre) seen at the planned image position, at a random distance along that ray, tilted
    by a random angle about a random in-plane axis, spun a little."""
    rng = np.random.default_rng(seed)
    w, h = cam.image_size
    x0, y0, x1, y1 = board.extent_mm
    mid = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2, 0.0])
    poses = []
    for (u, v), (ax, ay) in plan:
        anchor = mid + np.array([ax, ay, 0.0]) * half
        uv = np.array([[u * w, v * h]])
        ray = np.append(projection.pixels_to_normalized(uv, cam.camera_matrix, cam.distortion)[0], 1.0)
        centre = ray / np.linalg.norm(ray) * rng.uniform(*distance_mm)
        facing = look_at(np.zeros(3), centre, up=(0.0, -1.0, 0.0))[:3, :3]
        axis = rng.normal(size=2)
        axis /= np.linalg.norm(axis)
        tilt = np.radians(rng.uniform(*tilt_deg))
        spin = np.radians(rng.uniform(-spin_deg, spin_deg))
        r = facing @ rotation_from_rotvec([axis[0] * tilt, axis[1] * tilt, 0.0]) @ rotation_from_rotvec([0, 0, spin])
        poses.append(make_transform(r, centre - r @ anchor))
    return poses


def fronto_parallel_poses(board, cam, count: int, seed: int, distance_mm=(350.0, 500.0)) -> list[np.ndarray]:
    """Poses of a board facing the camera squarely (tilt under 3 degrees), whole board in view,
    spread over the image: the degenerate session (focal length and distance inseparable)."""
    rng = np.random.default_rng(seed)
    w, h = cam.image_size
    x0, y0, x1, y1 = board.extent_mm
    mid = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    poses = []
    while len(poses) < count:
        uv = np.array([[rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h]])
        ray = np.append(projection.pixels_to_normalized(uv, cam.camera_matrix, cam.distortion)[0], 1.0)
        centre = ray / ray[2] * rng.uniform(*distance_mm)
        r = rotation_from_rotvec([*np.radians(rng.uniform(-3, 3, 2)), np.radians(rng.uniform(-20, 20))])
        poses.append(make_transform(r, centre - r @ mid))
    return poses


_RENDERS = {}


def render(board, cam, pose: np.ndarray, seed: int, blur_sigma_px: float = 0.5) -> np.ndarray:
    """(H, W) uint8 photo, cached by board, camera, pose bytes, seed and blur."""
    key = (id(board), id(cam), pose.tobytes(), seed, blur_sigma_px)
    image = _RENDERS.get(key)
    if image is None:
        settings = ViewSettings(blur_sigma_px=blur_sigma_px)
        image = render_board_view(board, cam, pose, np.random.default_rng(seed), settings)
        image.setflags(write=False)
        _RENDERS[key] = image
    return image


def render_all(board, cam, poses, seed: int = 0, blur_sigma_px: float = 0.5) -> list[np.ndarray]:
    return [render(board, cam, p, 1000 * seed + i, blur_sigma_px) for i, p in enumerate(poses)]


def truth_px(board, cam, pose, corner_ids) -> np.ndarray:
    """(K, 2) exact projections of the board's corners ``corner_ids`` at ``pose``."""
    pts = board.corners_mm[np.asarray(corner_ids)] @ pose[:3, :3].T + pose[:3, 3]
    return cam.project(pts)


def write_images(folder, images, prefix="view", suffix=".png") -> list:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{prefix}{i:02d}{suffix}"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths
