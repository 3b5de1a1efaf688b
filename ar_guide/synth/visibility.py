"""Ground-truth visibility of the reference board: which markers and corners the camera can see.

Geometric, not from pixels: a board point is visible when the printed face looks towards the
camera, the point projects inside the image (``optics.project_in_image``), and the line of
sight from the camera centre to it misses every capsule of the hand.  Nothing else can come
between: the board stands on its post above the torso and the camera is always above it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.geometry.transforms import transform_points
from ar_guide.synth.optics import Canvas, project_in_image
from ar_guide.synth.segments import segment_segment_distance


@dataclasses.dataclass(frozen=True)
class BoardVisibility:
    """visible_markers : markers with every sample inside the image and unoccluded;
    visible_corners : ChArUco chessboard corners inside the image and unoccluded;
    hand_covering : the hand hides some part of the squares area that is inside the image."""

    visible_markers: int
    visible_corners: int
    hand_covering: bool


class BoardVisibilityModel:
    """Precomputed sample points of one board.

    markers_reference : {id: (4, 3) corners, mm}; corners_reference : (M, 3) mm;
    board_size_mm : (w, h) of the squares area; grid : samples per marker side.
    """

    def __init__(self, markers_reference: dict, corners_reference: np.ndarray,
                 board_size_mm: tuple[float, float], grid: int = 5, area_step_mm: float = 5.0):
        s = np.linspace(0.0, 1.0, int(grid))
        a, b = np.meshgrid(s, s, indexing="ij")
        a, b = a.ravel()[:, None], b.ravel()[:, None]
        samples = []
        for _id, c in sorted(markers_reference.items()):
            c = np.asarray(c, dtype=np.float64)
            # Bilinear over the marker's corners (clockwise from top-left).
            samples.append((1 - a) * (1 - b) * c[0] + a * (1 - b) * c[1] + a * b * c[2] + (1 - a) * b * c[3])
        self.marker_samples = np.stack(samples)  # (n_markers, grid*grid, 3)
        self.corners = np.asarray(corners_reference, dtype=np.float64).reshape(-1, 3)
        w, h = board_size_mm
        gx, gy = np.meshgrid(np.linspace(0, w, int(w / area_step_mm) + 1),
                             np.linspace(0, h, int(h / area_step_mm) + 1))
        self.area = np.column_stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)])

    def evaluate(self, camera_from_reference: np.ndarray, camera: CameraModel, canvas: Canvas,
                 capsules_camera: list | None = None) -> BoardVisibility:
        """capsules_camera : [(p0 (3,), p1 (3,), radius)] in the camera frame (mm), or None."""
        # Camera centre in the board frame; the printed face looks along -z.
        reference_from_camera_t = -camera_from_reference[:3, :3].T @ camera_from_reference[:3, 3]
        if reference_from_camera_t[2] >= 0.0:
            return BoardVisibility(0, 0, False)
        n_markers, per_marker, _ = self.marker_samples.shape
        points = np.vstack([self.marker_samples.reshape(-1, 3), self.corners, self.area])
        points_camera = transform_points(camera_from_reference, points)
        _uv, inside = project_in_image(points_camera, camera, canvas)
        hidden = occluded(points_camera, capsules_camera) if capsules_camera else np.zeros(len(points), bool)
        ok = inside & ~hidden
        m = n_markers * per_marker
        markers_ok = ok[:m].reshape(n_markers, per_marker).all(axis=1)
        corners_ok = ok[m:m + len(self.corners)]
        area = slice(m + len(self.corners), None)
        covering = bool(np.any(inside[area] & hidden[area]))
        return BoardVisibility(int(markers_ok.sum()), int(corners_ok.sum()), covering)


def occluded(points_camera: np.ndarray, capsules_camera: list) -> np.ndarray:
    """(N,) bool: the segment from the camera centre to each point passes through a capsule."""
    p = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
    c0 = np.array([c[0] for c in capsules_camera], dtype=np.float64)
    c1 = np.array([c[1] for c in capsules_camera], dtype=np.float64)
    r = np.array([c[2] for c in capsules_camera], dtype=np.float64)
    d = segment_segment_distance(np.zeros((1, 1, 3)), p[:, None, :], c0[None], c1[None])
    return np.any(d < r[None], axis=1)
