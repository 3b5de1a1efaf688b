"""How well a set of board views covers the image and the range of board tilts (pure numpy).

Two things make a calibration observable (Zhang 2000, sec. 3-5; Hartley and Zisserman 2004,
sec. 8.8): corners over the whole image, above all its corners and edges where distortion is
largest, and board planes at different orientations (views of parallel planes add nothing
about the focal length).  The functions here measure both for reports, quality warnings and
the live session's capture policy, and pick well-spread views from many candidates.

Tilts are the board plane's rotation (right-handed) about the camera's x axis (``tilt_x_deg``:
positive when the lower part of the board in the image is farther from the camera) and y axis
(``tilt_y_deg``: positive when its left part is farther), from the pose of the board.
"""

from __future__ import annotations

import numpy as np

from ar_guide.constants import CalibrationSettings

#: Names of the 3x3 image regions, row by row (for hints: "cover the top-left corner").
REGION_NAMES = (("top-left corner", "top edge", "top-right corner"),
                ("left edge", "centre", "right edge"),
                ("bottom-left corner", "bottom edge", "bottom-right corner"))


def _points(views) -> np.ndarray:
    parts = [np.asarray(v.image_points_px, dtype=np.float64).reshape(-1, 2) for v in views]
    return np.concatenate(parts) if parts else np.zeros((0, 2))


def image_coverage(views, image_size: tuple[int, int], grid: tuple[int, int] = (8, 6)) -> np.ndarray:
    """(rows, cols) int64 counts of corners in each cell of a ``grid`` = (cols, rows) grid laid
    over the ``image_size`` = (w, h) image, summed over ``views`` (BoardView-like: anything with
    ``image_points_px`` (K, 2))."""
    w, h = image_size
    cols, rows = grid
    uv = _points(views)
    counts = np.zeros((rows, cols), dtype=np.int64)
    if len(uv) == 0:
        return counts
    # OpenCV pixel centres: the image spans [-0.5, w - 0.5).
    c = np.clip(np.floor((uv[:, 0] + 0.5) / w * cols).astype(int), 0, cols - 1)
    r = np.clip(np.floor((uv[:, 1] + 0.5) / h * rows).astype(int), 0, rows - 1)
    np.add.at(counts, (r, c), 1)
    return counts


def guess_camera_matrix(image_size: tuple[int, int]) -> np.ndarray:
    """(3, 3) float64 rough intrinsics before calibration: f = the longer image side (a 53 degree
    field of view across it, typical of webcams), principal point at the image centre."""
    w, h = image_size
    f = float(max(w, h))
    return np.array([[f, 0.0, (w - 1) / 2.0], [0.0, f, (h - 1) / 2.0], [0.0, 0.0, 1.0]])


def homography(points_board: np.ndarray, uv_px: np.ndarray) -> np.ndarray:
    """(3, 3) float64 H with uv ~ H [x, y, 1] from (N, 2) board points (mm) and (N, 2) pixels,
    N >= 4, by the normalised DLT (Hartley and Zisserman 2004, alg. 4.2)."""
    def normaliser(p):
        centre = p.mean(axis=0)
        scale = np.sqrt(2.0) / max(np.mean(np.linalg.norm(p - centre, axis=1)), 1e-12)
        return np.array([[scale, 0, -scale * centre[0]], [0, scale, -scale * centre[1]], [0, 0, 1.0]])

    src = np.asarray(points_board, dtype=np.float64)[:, :2]
    dst = np.asarray(uv_px, dtype=np.float64)[:, :2]
    ts, td = normaliser(src), normaliser(dst)
    s = src @ ts[:2, :2].T + ts[:2, 2]
    d = dst @ td[:2, :2].T + td[:2, 2]
    n = len(s)
    a = np.zeros((2 * n, 9))
    a[0::2, 0:2] = s
    a[0::2, 2] = 1
    a[0::2, 6:8] = -d[:, :1] * s
    a[0::2, 8] = -d[:, 0]
    a[1::2, 3:5] = s
    a[1::2, 5] = 1
    a[1::2, 6:8] = -d[:, 1:2] * s
    a[1::2, 8] = -d[:, 1]
    _, _, vt = np.linalg.svd(a)
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ hn @ ts
    return h / h[2, 2]


def rotation_from_homography(h: np.ndarray, camera_matrix: np.ndarray) -> np.ndarray:
    """(3, 3) camera_from_board rotation of a plane z = 0 seen through ``camera_matrix`` with
    homography ``h`` (Zhang 2000, sec. 2.3 and appendix C: r1, r2 from K^-1 H, then the nearest
    rotation), with the board in front of the camera."""
    m = np.linalg.solve(camera_matrix, h)
    scale = 2.0 / (np.linalg.norm(m[:, 0]) + np.linalg.norm(m[:, 1]))
    if m[2, 2] * scale < 0:  # the board's origin must be in front (z > 0)
        scale = -scale
    r1, r2 = m[:, 0] * scale, m[:, 1] * scale
    q = np.column_stack([r1, r2, np.cross(r1, r2)])
    u, _, vt = np.linalg.svd(q)
    r = u @ vt
    if np.linalg.det(r) < 0:
        r = u @ np.diag([1.0, 1.0, -1.0]) @ vt
    return r


def tilts_from_rotation(camera_from_board_rotation: np.ndarray) -> tuple[float, float]:
    """(tilt_x_deg, tilt_y_deg) of a board with this camera_from_board rotation: the angles of
    its normal (board z, pointing away from the camera for a visible board) about the camera's
    x and y axes.  A fronto-parallel board gives (0, 0); a board rotated by a about the camera
    x axis gives (a, 0)."""
    n = np.asarray(camera_from_board_rotation, dtype=np.float64)[:, 2]
    if n[2] < 0:  # the normal's sign is arbitrary for a plane; take the one facing away
        n = -n
    tilt_x = np.degrees(np.arctan2(-n[1], n[2]))
    tilt_y = np.degrees(np.arctan2(n[0], n[2]))
    return float(tilt_x), float(tilt_y)


def tilt_of_view(view, camera_matrix_guess: np.ndarray | None = None) -> tuple[float, float]:
    """(tilt_x_deg, tilt_y_deg) of the board in ``view`` (see the module docstring), from the
    homography of its corners under ``camera_matrix_guess`` ((3, 3); default
    :func:`guess_camera_matrix`); distortion is ignored, so a few degrees approximate."""
    k = guess_camera_matrix(view.image_size) if camera_matrix_guess is None else np.asarray(camera_matrix_guess)
    h = homography(view.object_points_mm, view.image_points_px)
    return tilts_from_rotation(rotation_from_homography(h, k))


def _regions(counts: np.ndarray) -> np.ndarray:
    """(3, 3) bool: whether each region (REGION_NAMES) of the grid holds corners.  Corner
    regions are the grid's corner cells; edges its other outer cells; centre the inner cells."""
    rows, cols = counts.shape
    rbands = [slice(0, 1), slice(1, rows - 1), slice(rows - 1, rows)]
    cbands = [slice(0, 1), slice(1, cols - 1), slice(cols - 1, cols)]
    return np.array([[counts[rb, cb].sum() > 0 for cb in cbands] for rb in rbands])


def coverage_summary(views, image_size: tuple[int, int], camera_matrix: np.ndarray | None = None,
                     rotations=None, settings: CalibrationSettings = CalibrationSettings()) -> dict:
    """Coverage of the image and of tilts by ``views``.

    camera_matrix : (3, 3) for the tilts (default: :func:`guess_camera_matrix`)
    rotations : optional (3, 3) camera_from_board rotations of the views (from a solved
        calibration), used instead of the homography estimates

    Returns a dict: ``grid`` (cols, rows), ``counts`` ((rows, cols) list), ``covered_fraction``
    (cells with corners), ``regions_missing`` (names from REGION_NAMES without corners),
    ``tilts_deg`` ((N, 2) list of tilt_x, tilt_y), ``tilted_x_views`` / ``tilted_y_views``
    (views tilted beyond ``settings.tilt_deg`` about each axis, either way), ``max_tilt_deg``
    (angle between a board normal and the optical axis), ``tilt_spread_deg`` (RMS distance of
    the (tilt_x, tilt_y) points from their mean), and ``tilt_directions`` (which of "top away",
    "bottom away", "left away", "right away" have views tilted beyond ``settings.tilt_deg``).
    """
    grid = tuple(settings.coverage_grid)
    counts = image_coverage(views, image_size, grid)
    regions = _regions(counts)
    missing = [REGION_NAMES[r][c] for r in range(3) for c in range(3) if not regions[r, c]]
    if rotations is not None:
        tilts = np.array([tilts_from_rotation(r) for r in rotations], dtype=np.float64).reshape(-1, 2)
    else:
        k = guess_camera_matrix(image_size) if camera_matrix is None else camera_matrix
        tilts = np.array([tilt_of_view(v, k) for v in views], dtype=np.float64).reshape(-1, 2)
    limit = settings.tilt_deg
    total = np.degrees(np.arctan(np.hypot(np.tan(np.radians(tilts[:, 0])), np.tan(np.radians(tilts[:, 1])))))
    directions = []
    if len(tilts):
        for name, mask in (("bottom away", tilts[:, 0] >= limit), ("top away", tilts[:, 0] <= -limit),
                           ("left away", tilts[:, 1] >= limit), ("right away", tilts[:, 1] <= -limit)):
            if mask.any():
                directions.append(name)
    return {
        "grid": grid,
        "counts": counts.tolist(),
        "covered_fraction": float((counts > 0).mean()),
        "regions_missing": missing,
        "tilts_deg": tilts.tolist(),
        "tilted_x_views": int(np.sum(np.abs(tilts[:, 0]) >= limit)),
        "tilted_y_views": int(np.sum(np.abs(tilts[:, 1]) >= limit)),
        "max_tilt_deg": float(total.max()) if len(total) else 0.0,
        "tilt_spread_deg": float(np.sqrt(np.mean(np.sum((tilts - tilts.mean(axis=0)) ** 2, axis=1))))
        if len(tilts) else 0.0,
        "tilt_directions": directions,
    }


# ---------------------------------------------------------------------------- view selection


def view_features(view, camera_matrix_guess: np.ndarray | None = None) -> np.ndarray:
    """(5,) float64 pose descriptor of a view: board centre (u, v) as fractions of the image
    diagonal, log of the board's apparent size (square root of its corners' hull area over the
    image area), tilt_x and tilt_y (deg)."""
    w, h = view.image_size
    diagonal = float(np.hypot(w, h))
    uv = np.asarray(view.image_points_px, dtype=np.float64)
    centre = uv.mean(axis=0) / diagonal
    area = _hull_area(uv)
    size = np.log(max(np.sqrt(area / (w * h)), 1e-6))
    tx, ty = tilt_of_view(view, camera_matrix_guess)
    return np.array([centre[0], centre[1], size, tx, ty])


def _cross2(a: np.ndarray, b: np.ndarray) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (N, 2) points (monotone chain, then the shoelace formula)."""
    p = np.unique(np.asarray(points, dtype=np.float64), axis=0)
    if len(p) < 3:
        return 0.0
    p = p[np.lexsort((p[:, 1], p[:, 0]))]

    def half(seq):
        out = []
        for q in seq:
            while len(out) >= 2 and _cross2(out[-1] - out[-2], q - out[-2]) <= 0:
                out.pop()
            out.append(q)
        return out

    hull = np.array(half(p)[:-1] + half(p[::-1])[:-1])
    x, y = hull[:, 0], hull[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def is_duplicate(features_a: np.ndarray, features_b: np.ndarray,
                 settings: CalibrationSettings = CalibrationSettings()) -> bool:
    """Whether two views (:func:`view_features`) show nearly the same board pose."""
    a, b = np.asarray(features_a), np.asarray(features_b)
    return bool(np.hypot(*(a[:2] - b[:2])) <= settings.duplicate_centre_fraction
                and abs(a[2] - b[2]) <= np.log(settings.duplicate_size_ratio)
                and np.all(np.abs(a[3:5] - b[3:5]) <= settings.duplicate_tilt_deg))


def _normalised(features: np.ndarray, settings: CalibrationSettings) -> np.ndarray:
    """Features scaled so that the duplicate thresholds are 1 in each coordinate."""
    scale = np.array([settings.duplicate_centre_fraction, settings.duplicate_centre_fraction,
                      np.log(settings.duplicate_size_ratio), settings.duplicate_tilt_deg,
                      settings.duplicate_tilt_deg])
    return np.asarray(features, dtype=np.float64) / scale


def select_views(features: np.ndarray, max_views: int, order=None, drop_duplicates: bool = True,
                 settings: CalibrationSettings = CalibrationSettings()) -> list[int]:
    """Indices of at most ``max_views`` views spread over poses.

    features : (N, 5) from :func:`view_features`
    order : preference order of the candidates (e.g. sharpest first); default 0..N-1
    drop_duplicates : leave out views that duplicate an already chosen one (:func:`is_duplicate`)

    Greedy farthest-point sampling (Gonzalez 1985) in the feature space scaled by the duplicate
    thresholds: the first preferred view, then repeatedly the view farthest from all chosen
    ones.  Returned in the candidates' original order.
    """
    f = np.asarray(features, dtype=np.float64).reshape(-1, 5)
    n = len(f)
    if n == 0 or max_views <= 0:
        return []
    order = list(range(n)) if order is None else [int(i) for i in order]
    rank = np.empty(n)
    rank[order] = np.arange(n)
    z = _normalised(f, settings)
    chosen = [order[0]]
    distance = np.linalg.norm(z - z[order[0]], axis=1)
    available = np.ones(n, dtype=bool)
    available[order[0]] = False
    if drop_duplicates:
        available &= ~np.array([is_duplicate(f[i], f[order[0]], settings) for i in range(n)])
    while len(chosen) < max_views and available.any():
        # Farthest first; ties (e.g. all equally far) go to the preferred candidate.
        score = np.where(available, distance - 1e-9 * rank, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        distance = np.minimum(distance, np.linalg.norm(z - z[best], axis=1))
        if drop_duplicates:
            available &= ~np.array([is_duplicate(f[i], f[best], settings) if available[i] else False
                                    for i in range(n)])
    return sorted(chosen)
