"""A synthetic video of a calibration board moved over the image, held still at key poses.

Used by tests/test_calibration_live.py (the live session on a video given as a camera, and
``calibrate check --video``) and for the live-session benchmark in docs/benchmarks.md.  Frames
are rendered through the synthetic lens (ar_guide.synth.optics.synthetic_camera, exact OpenCV
model) with ar_guide.synth.calibration_views.render_board_view; a held pose is rendered once and
given fresh sensor noise in each frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ar_guide.calibration.boards import board_from_mapping
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from ar_guide.synth.optics import synthetic_camera

#: The board of the video: landscape ChArUco, 175 x 125 mm.
BOARD_CONFIG = {"type": "charuco", "squares": [7, 5], "square_mm": 25, "marker_mm": 18, "dictionary": "DICT_5X5_100"}
#: Key poses: board centre at (u, v) as fractions of the image, distance (mm), tilt axis in the
#: board plane, tilt (deg), spin about the normal (deg).  Corners first, then tilts four ways,
#: edges, nearer and farther, then mixed tilts.  With the capture policy's defaults, each of them
#: adds coverage, and coverage is sufficient after the 15th.
KEY_POSES = [
    (0.50, 0.50, 420, (1, 0), 5, 0),
    (0.22, 0.27, 400, (1, 1), 15, 5),
    (0.78, 0.27, 400, (1, -1), 15, -5),
    (0.78, 0.73, 400, (1, 1), -15, 5),
    (0.22, 0.73, 400, (1, -1), -15, -5),
    (0.50, 0.50, 380, (1, 0), 35, 0),
    (0.50, 0.50, 380, (0, 1), 35, 0),
    (0.50, 0.50, 380, (1, 0), -35, 0),
    (0.50, 0.50, 380, (0, 1), -35, 0),
    (0.50, 0.25, 400, (1, 0), 20, 10),
    (0.50, 0.50, 300, (1, 1), -12, 30),
    (0.50, 0.75, 400, (1, 0), -20, 10),
    (0.50, 0.50, 520, (1, -1), 12, -30),
    (0.35, 0.40, 330, (1, 1), 28, 15),
    (0.65, 0.60, 330, (1, -1), 28, -15),
    (0.40, 0.60, 460, (1, 1), -28, 20),
    (0.60, 0.40, 460, (1, -1), -28, -20),
]


def board(config: dict = BOARD_CONFIG):
    return board_from_mapping(dict(config))


def key_pose(camera, board_, fu, fv, distance_mm, axis, tilt_deg, spin_deg) -> np.ndarray:
    """camera_from_board with the board's centre on the ray of pixel (fu * w, fv * h)."""
    w, h = camera.image_size
    x0, y0, x1, y1 = board_.extent_mm
    centre_board = np.array([(x0 + x1) / 2, (y0 + y1) / 2, 0.0])
    xy = projection.pixels_to_normalized(np.array([[fu * w, fv * h]]), camera.camera_matrix, camera.distortion)[0]
    ray = np.append(xy, 1.0)
    centre = ray / np.linalg.norm(ray) * distance_mm
    a = np.array([axis[0], axis[1], 0.0], dtype=np.float64)
    a /= np.linalg.norm(a)
    r = rotation_from_rotvec(a * np.radians(tilt_deg)) @ rotation_from_rotvec([0.0, 0.0, np.radians(spin_deg)])
    return make_transform(r, centre - r @ centre_board)


def _interpolate(a: np.ndarray, b: np.ndarray, s: float) -> np.ndarray:
    """Pose between a (s = 0) and b (s = 1): translation linear, rotation along the geodesic."""
    delta, _ = cv2.Rodrigues(a[:3, :3].T @ b[:3, :3])
    r = a[:3, :3] @ rotation_from_rotvec(delta.ravel() * s)
    return make_transform(r, (1 - s) * a[:3, 3] + s * b[:3, 3])


def write_board_video(path: Path, size=(640, 360), fps: float = 15.0, hold_frames: int = 8, move_frames: int = 2,
                      key_poses=KEY_POSES, seed: int = 0, crf: int = 12, board_config: dict = BOARD_CONFIG) -> Path:
    """Writes the video (H.264) and returns its path.  Each key pose is held for ``hold_frames``
    frames, with ``move_frames`` frames of motion between key poses."""
    from ar_guide.io.writers import VideoWriter
    from ar_guide.synth.calibration_views import ViewSettings, render_board_view

    # 2 x 2 samples per pixel instead of 3 x 3: half the time, corners still exact to ~0.02 px.
    view_settings = ViewSettings(supersample=2)

    camera = synthetic_camera(*size)
    b = board(board_config)
    poses = [key_pose(camera, b, *k) for k in key_poses]
    rng = np.random.default_rng(seed)
    path = Path(path)
    tmp = path.with_name(path.stem + ".part" + path.suffix)

    def frame(grey: np.ndarray) -> np.ndarray:
        noisy = np.clip(grey + rng.normal(0.0, 2.0, grey.shape), 0, 255).astype(np.uint8)
        return np.dstack([noisy, noisy, noisy])

    with VideoWriter(tmp, fps, size, crf=crf) as writer:
        for k, pose in enumerate(poses):
            still = render_board_view(b, camera, pose, settings=view_settings).astype(np.float64)
            for _ in range(hold_frames):
                writer.write(frame(still))
            if k + 1 < len(poses):
                for m in range(move_frames):
                    s = (m + 1) / (move_frames + 1)
                    moving = render_board_view(b, camera, _interpolate(pose, poses[k + 1], s),
                                               settings=view_settings).astype(np.float64)
                    writer.write(frame(moving))
    tmp.replace(path)
    return path
