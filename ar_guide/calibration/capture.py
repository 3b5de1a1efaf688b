"""The capture policy of the live calibration session: which views to take, and when there are enough.

Pure logic on detected board views (no camera, window or clock: timestamps are passed in), so
that ``calibrate run --camera`` and its tests share it.

A view is taken automatically when

- it has enough corners (``CaptureSettings.min_corners``),
- the board is steady: every corner moved less than ``steady_px`` over the last ``steady_s``
  (no motion blur, no rolling-shutter skew),
- it is not a near-duplicate of a view already taken (RMS image displacement of their common
  corners under ``near_duplicate_fraction`` of the image diagonal and a tilt within
  ``near_duplicate_tilt_deg``), and
- it adds coverage: a new cell of the image grid, a new bin of the tilt map, or a distinctly new
  pose (displacement of at least ``distinct_pose_fraction``).

Coverage is sufficient with ``min_views`` views, ``min_cell_fraction`` of the image cells touched,
every region of the image touched (its corner cells, its edges and its centre, as
in the calibration report: :data:`coverage.REGION_NAMES`), and strong tilts (>= ``strong_tilt_deg``)
towards at least ``min_tilt_directions`` of the four directions.  Zhang (2000, "A flexible new
technique for camera calibration", IEEE TPAMI 22(11), section 3.3) shows why tilts matter: views of
parallel planes add no constraint on the intrinsics.

Tilts follow :mod:`ar_guide.calibration.coverage` (one convention for the report, the quality
warnings and this session): with the board normal ``n`` (its z axis, pointing away from the
camera), ``tilt_x_deg = atan2(-n_y, n_z)`` is positive when the board's lower edge (in the image) is
farther from the camera, ``tilt_y_deg = atan2(n_x, n_z)`` positive when its left edge is farther.
On the tilt map a view is a dot towards the edge that is farther away.
"""

from __future__ import annotations

import collections
import dataclasses
import math

import numpy as np

from ar_guide.calibration import coverage
from ar_guide.calibration.coverage import REGION_NAMES
from ar_guide.constants import CaptureSettings

#: The four tilt directions, named by the image edge of the board that is farther away.
TILT_DIRECTIONS = ("top", "right", "bottom", "left")
#: Fewest common corners for two views to be compared (pose distance, steadiness).
_MIN_SHARED_CORNERS = 4


@dataclasses.dataclass(frozen=True, eq=False)
class ViewFeatures:
    """What the capture policy knows about one view of the board.

    corner_ids : (K,) int64, the board's corner ids seen
    image_points_px : (K, 2) float64, their pixels (OpenCV centres)
    cells : frozenset of (row, column) cells of the coverage grid that hold a corner of the view
    tilt_deg : (tilt_x_deg, tilt_y_deg), see the module docstring; None if unknown
    timestamp_s : capture time of the frame (s)
    """

    corner_ids: np.ndarray
    image_points_px: np.ndarray
    cells: frozenset
    tilt_deg: tuple[float, float] | None
    timestamp_s: float = 0.0


@dataclasses.dataclass(frozen=True)
class CaptureDecision:
    """Whether a view is taken, and why (one short phrase a user reads)."""

    take: bool
    reason: str
    new_cells: int = 0
    new_tilt_bin: bool = False
    nearest_view: int | None = None          # index of the most similar view taken
    pose_distance: float = math.inf          # to it, fraction of the image diagonal


# -- features ------------------------------------------------------------------------------------


def tilt_from_pose(camera_from_board: np.ndarray) -> tuple[float, float]:
    """(tilt_x_deg, tilt_y_deg) of a board at ``camera_from_board`` (4, 4), coverage's convention."""
    return coverage.tilts_from_rotation(np.asarray(camera_from_board, dtype=np.float64)[:3, :3])


def tilt_magnitude_deg(tilt_deg) -> float:
    """Angle between the board and the image plane (deg), from the two tilt components."""
    tx, ty = np.radians(tilt_deg)
    # n = (tan(ty), -tan(tx), 1) normalised: the angle of n from the optical axis.
    return math.degrees(math.atan(math.hypot(math.tan(tx), math.tan(ty))))


def _normal(tilt_deg) -> np.ndarray:
    tx, ty = np.radians(tilt_deg)
    n = np.array([math.tan(ty), -math.tan(tx), 1.0])
    return n / np.linalg.norm(n)


def tilt_difference_deg(a, b) -> float:
    """Angle (deg) between the board planes of two tilts; 0 if either is unknown."""
    if a is None or b is None:
        return 0.0
    return math.degrees(math.acos(float(np.clip(_normal(a) @ _normal(b), -1.0, 1.0))))


def tilt_direction(tilt_deg, min_tilt_deg: float) -> str | None:
    """"top", "right", "bottom" or "left": the edge farther away, if tilted >= ``min_tilt_deg``."""
    if tilt_deg is None or tilt_magnitude_deg(tilt_deg) < min_tilt_deg:
        return None
    tx, ty = tilt_deg
    if abs(ty) >= abs(tx):
        return "left" if ty > 0 else "right"
    return "bottom" if tx > 0 else "top"


def tilt_bin(tilt_deg, settings: CaptureSettings = CaptureSettings()) -> tuple[int, int] | None:
    """(ring, sector) of the tilt map: ring 0 is face-on (one bin), sectors split the rest by
    direction (sector 0 centred on "right", counting towards "top").  None if the tilt is unknown."""
    if tilt_deg is None:
        return None
    ring = int(np.searchsorted(settings.tilt_rings_deg, tilt_magnitude_deg(tilt_deg), side="right"))
    if ring == 0:
        return (0, 0)
    tx, ty = tilt_deg
    azimuth = math.atan2(-tx, -ty) % (2 * math.pi)   # 0 = right edge farther, pi/2 = top
    width = 2 * math.pi / settings.tilt_sectors
    return (ring, int(((azimuth + width / 2) % (2 * math.pi)) // width))


def cells_of_points(image_points_px: np.ndarray, image_size: tuple[int, int],
                    grid: tuple[int, int]) -> frozenset:
    """Cells (row, column) of a ``grid`` = (columns, rows) over the image that hold a corner: the
    cells of the calibration report's coverage map (:func:`coverage.image_coverage`)."""
    pts = np.asarray(image_points_px, dtype=np.float64).reshape(-1, 2)
    counts = coverage.image_coverage([_Points(pts)], image_size, grid)
    rows, cols = np.nonzero(counts)
    return frozenset(zip(rows.tolist(), cols.tolist()))


@dataclasses.dataclass(frozen=True)
class _Points:
    image_points_px: np.ndarray


def features_from_points(corner_ids, image_points_px, image_size, tilt_deg, timestamp_s: float = 0.0,
                         settings: CaptureSettings = CaptureSettings()) -> ViewFeatures:
    """ViewFeatures from a view's corners (ids (K,), pixels (K, 2)) and its tilt (deg)."""
    ids = np.asarray(corner_ids, dtype=np.int64).reshape(-1)
    pts = np.asarray(image_points_px, dtype=np.float64).reshape(-1, 2)
    tilt = None if tilt_deg is None else (float(tilt_deg[0]), float(tilt_deg[1]))
    return ViewFeatures(ids, pts, cells_of_points(pts, image_size, settings.grid), tilt, float(timestamp_s))


def estimate_tilt(object_points_mm: np.ndarray, image_points_px: np.ndarray,
                  camera_matrix: np.ndarray) -> tuple[float, float] | None:
    """Tilt (deg, module convention) of a planar board view under ``camera_matrix``, distortion
    ignored: the rotation from the homography of its corners (Zhang 2000, via
    :mod:`ar_guide.calibration.coverage`).  None for fewer than 4 corners or a degenerate view."""
    obj = np.asarray(object_points_mm, dtype=np.float64).reshape(-1, 3)
    img = np.asarray(image_points_px, dtype=np.float64).reshape(-1, 2)
    if len(obj) < 4:
        return None
    with np.errstate(all="ignore"):
        try:
            h = coverage.homography(obj, img)
            rotation = coverage.rotation_from_homography(h, camera_matrix)
        except np.linalg.LinAlgError:
            return None
    if not np.all(np.isfinite(rotation)):
        return None
    pose = np.eye(4)
    pose[:3, :3] = rotation
    return tilt_from_pose(pose)


def features_of_view(view, image_size: tuple[int, int], camera_matrix: np.ndarray | None = None,
                     timestamp_s: float = 0.0, settings: CaptureSettings = CaptureSettings()) -> ViewFeatures:
    """ViewFeatures of a detected view (anything with corner_ids, image_points_px and
    object_points_mm, e.g. :class:`ar_guide.calibration.detect.BoardView`); tilts are measured
    under ``camera_matrix`` (default :func:`coverage.guess_camera_matrix`)."""
    k = coverage.guess_camera_matrix(image_size) if camera_matrix is None else np.asarray(camera_matrix, np.float64)
    tilt = estimate_tilt(view.object_points_mm, view.image_points_px, k)
    return features_from_points(view.corner_ids, view.image_points_px, image_size, tilt, timestamp_s, settings)


def pose_distance_px(a: ViewFeatures, b: ViewFeatures) -> float:
    """RMS image displacement (px) of the corners two views share; inf if they share fewer than 4.

    RMS rather than median: moving closer or turning the board about its centre moves the outer
    corners most, and those must count."""
    common, ia, ib = np.intersect1d(a.corner_ids, b.corner_ids, assume_unique=True, return_indices=True)
    if len(common) < _MIN_SHARED_CORNERS:
        return math.inf
    shift = a.image_points_px[ia] - b.image_points_px[ib]
    return float(np.sqrt(np.mean(np.sum(shift ** 2, axis=1))))


# -- steadiness ----------------------------------------------------------------------------------


class SteadinessTracker:
    """Says whether the board has been still for ``steady_s``: every corner it shares with the
    newest view moved less than ``steady_px`` in every view of that interval.  A frame without
    the board, or a board that changed (fewer than half its corners shared), starts over."""

    def __init__(self, settings: CaptureSettings = CaptureSettings()):
        self.settings = settings
        self._history: collections.deque[ViewFeatures] = collections.deque()

    def reset(self) -> None:
        self._history.clear()

    def update(self, features: ViewFeatures | None) -> bool:
        if features is None:
            self._history.clear()
            return False
        t = features.timestamp_s
        history = self._history
        if history and t < history[-1].timestamp_s:
            history.clear()  # the clock went back (a new source): start over
        history.append(features)
        horizon = t - self.settings.steady_s
        # Keep the newest view at or before the horizon (it spans the interval) and all later ones.
        while len(history) >= 2 and history[1].timestamp_s <= horizon:
            history.popleft()
        moved = [i for i, old in enumerate(list(history)[:-1]) if self._moved(old, features)]
        if moved:
            # The still interval starts after the last view that differs from the newest.
            for _ in range(moved[-1] + 1):
                history.popleft()
        return len(history) >= 2 and history[0].timestamp_s <= horizon

    def still_for_s(self) -> float:
        """How long (s) the board has been steady up to the newest view."""
        if len(self._history) < 2:
            return 0.0
        return self._history[-1].timestamp_s - self._history[0].timestamp_s

    def _moved(self, old: ViewFeatures, new: ViewFeatures) -> bool:
        common, ia, ib = np.intersect1d(old.corner_ids, new.corner_ids, assume_unique=True, return_indices=True)
        if len(common) < max(_MIN_SHARED_CORNERS, len(new.corner_ids) // 2):
            return True
        shift = np.linalg.norm(old.image_points_px[ia] - new.image_points_px[ib], axis=1)
        return bool(shift.max() >= self.settings.steady_px)


# -- coverage ------------------------------------------------------------------------------------


class CapturePolicy:
    """The views taken so far, what they cover, and whether a new view adds to it.

    image_size : (width, height) px; board_corners : number of corners of the board (caps
    ``min_corners`` at half of it); settings : CaptureSettings.
    """

    def __init__(self, image_size: tuple[int, int], board_corners: int | None = None,
                 settings: CaptureSettings = CaptureSettings()):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.settings = settings
        self.min_corners = int(settings.min_corners)
        if board_corners is not None:
            self.min_corners = max(_MIN_SHARED_CORNERS, min(self.min_corners, int(board_corners) // 2))
        self.diagonal_px = math.hypot(*self.image_size)
        cols, rows = settings.grid
        self.cell_counts = np.zeros((rows, cols), dtype=np.int64)
        self.tilt_bins: collections.Counter = collections.Counter()
        self.views: list[ViewFeatures] = []
        # The regions of the report (coverage.REGION_NAMES): the grid's corner cells, the rest of
        # its outer rows and columns, and the inner cells.
        rbands = [range(0, 1), range(1, rows - 1), range(rows - 1, rows)]
        cbands = [range(0, 1), range(1, cols - 1), range(cols - 1, cols)]
        self._regions = [[(r, c) for r in rb for c in cb] for rb in rbands for cb in cbands]

    # -- decisions

    def consider(self, features: ViewFeatures) -> CaptureDecision:
        """Would ``features`` be taken (steadiness aside)?  Never changes the state."""
        count = len(features.corner_ids)
        if count < self.min_corners:
            return CaptureDecision(False, f"too few corners ({count} < {self.min_corners})")
        if len(self.views) >= self.settings.max_views:
            return CaptureDecision(False, f"{self.settings.max_views} views already taken")
        nearest, distance = self.nearest(features)
        new_cells = sum(1 for cell in features.cells if self.cell_counts[cell] == 0)
        bin_ = tilt_bin(features.tilt_deg, self.settings)
        new_bin = bin_ is not None and self.tilt_bins[bin_] == 0
        common = dict(new_cells=new_cells, new_tilt_bin=new_bin, nearest_view=nearest, pose_distance=distance)
        duplicate = self.duplicate_of(features)
        if duplicate is not None:
            return CaptureDecision(False, f"same pose as view {duplicate + 1}", **common)
        if new_cells:
            return CaptureDecision(True, f"{new_cells} new image cell{'s' if new_cells > 1 else ''}", **common)
        if new_bin:
            return CaptureDecision(True, "new tilt", **common)
        if distance >= self.settings.distinct_pose_fraction:
            return CaptureDecision(True, "new pose", **common)
        return CaptureDecision(False, "adds no coverage", **common)

    def nearest(self, features: ViewFeatures) -> tuple[int | None, float]:
        """(index, distance as a fraction of the image diagonal) of the most similar view taken."""
        best, best_d = None, math.inf
        for i, view in enumerate(self.views):
            d = pose_distance_px(features, view) / self.diagonal_px
            if d < best_d:
                best, best_d = i, d
        return best, best_d

    def duplicate_of(self, features: ViewFeatures) -> int | None:
        """Index of a view taken with nearly the same pose: corners within
        ``near_duplicate_fraction`` of the diagonal (RMS) and a tilt within
        ``near_duplicate_tilt_deg``; None if there is none.  The tilt matters on its own: turning
        the board by 35 degrees about its centre moves its corners by only ~1.5 % of the diagonal."""
        s = self.settings
        for i, view in enumerate(self.views):
            if pose_distance_px(features, view) / self.diagonal_px >= s.near_duplicate_fraction:
                continue
            if tilt_difference_deg(features.tilt_deg, view.tilt_deg) < s.near_duplicate_tilt_deg:
                return i
        return None

    def add(self, features: ViewFeatures) -> None:
        self.views.append(features)
        for cell in features.cells:
            self.cell_counts[cell] += 1
        bin_ = tilt_bin(features.tilt_deg, self.settings)
        if bin_ is not None:
            self.tilt_bins[bin_] += 1

    def undo(self) -> ViewFeatures | None:
        """Removes the last view taken; returns it (None if there was none)."""
        if not self.views:
            return None
        features = self.views.pop()
        for cell in features.cells:
            self.cell_counts[cell] -= 1
        bin_ = tilt_bin(features.tilt_deg, self.settings)
        if bin_ is not None:
            self.tilt_bins[bin_] -= 1
            if self.tilt_bins[bin_] == 0:
                del self.tilt_bins[bin_]
        return features

    # -- coverage figures

    @property
    def cell_fraction(self) -> float:
        return float(np.count_nonzero(self.cell_counts)) / self.cell_counts.size

    def region_fractions(self) -> dict[str, float]:
        """Fraction of the cells touched in each region of the image (corner cells, edges, centre)."""
        names = [n for row in REGION_NAMES for n in row]
        return {name: float(np.mean([self.cell_counts[c] > 0 for c in cells]))
                for name, cells in zip(names, self._regions)}

    def tilt_directions(self) -> set[str]:
        """Directions ("top", ...) with a view tilted at least ``strong_tilt_deg`` that way."""
        found = (tilt_direction(v.tilt_deg, self.settings.strong_tilt_deg) for v in self.views)
        return {d for d in found if d is not None}

    def is_sufficient(self) -> bool:
        s = self.settings
        return (len(self.views) >= s.min_views and self.cell_fraction >= s.min_cell_fraction
                and all(f > 0 for f in self.region_fractions().values())
                and len(self.tilt_directions()) >= s.min_tilt_directions)

    def missing(self, limit: int = 3) -> list[str]:
        """What is still missing for sufficient coverage, most useful first, as plain-language
        instructions ("cover the top-left corner of the image"); empty when sufficient."""
        s = self.settings
        hints = []
        regions = self.region_fractions()
        if self.cell_fraction < s.min_cell_fraction or min(regions.values()) == 0:
            # The emptiest regions first; corners before edges before the centre on a tie.
            order = {name: k for k, name in enumerate(
                ["top-left corner", "top-right corner", "bottom-right corner", "bottom-left corner",
                 "top edge", "right edge", "bottom edge", "left edge", "centre"])}
            # Enough cells overall: only the regions still untouched.
            wanted = s.min_cell_fraction if self.cell_fraction < s.min_cell_fraction else 1e-9
            for name, fraction in sorted(regions.items(), key=lambda kv: (kv[1], order[kv[0]])):
                if fraction >= wanted:
                    break
                hints.append(f"cover the {name} of the image")
        directions = self.tilt_directions()
        if len(directions) < s.min_tilt_directions:
            for direction in TILT_DIRECTIONS:
                if direction not in directions:
                    hints.append(f"tilt the board {s.strong_tilt_deg:.0f}-40 deg: {direction} edge farther away")
        if len(self.views) < s.min_views:
            more = s.min_views - len(self.views)
            hints.append(f"take {more} more view{'s' if more > 1 else ''} ({len(self.views)} of {s.min_views})")
        # Regions, then tilts, then the count, but never more than ``limit`` lines; keep one of
        # each kind where possible so that a user sees every kind of gap.
        kinds = [[h for h in hints if h.startswith("cover")], [h for h in hints if h.startswith("tilt")],
                 [h for h in hints if h.startswith("take")]]
        chosen = [k[0] for k in kinds if k]
        rest = [h for k in kinds for h in k[1:]]
        chosen += rest[:max(0, limit - len(chosen))]
        chosen.sort(key=hints.index)
        return chosen[:limit]

    def summary(self) -> dict:
        """Coverage figures for reports and progress lines."""
        return {
            "views": len(self.views),
            "cell_fraction": self.cell_fraction,
            "regions": self.region_fractions(),
            "tilt_directions": sorted(self.tilt_directions(), key=TILT_DIRECTIONS.index),
            "tilt_bins": len(self.tilt_bins),
            "sufficient": self.is_sufficient(),
            "missing": self.missing(limit=10),
        }


# -- the session ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the session made of one detection result.

    state : "no board", "too few corners", "moving", "steady", "captured"
    decision : the capture decision (None without a board)
    hint : the line to show the user now
    """

    state: str
    captured: bool
    decision: CaptureDecision | None
    hint: str


class CaptureSession:
    """Detection results in, views taken out: steadiness, the policy, manual capture and undo.

    ``features`` turns a view into ViewFeatures (default :func:`features_of_view` with guessed
    intrinsics).  ``views`` are the views taken, in order (the objects passed in).
    """

    def __init__(self, image_size: tuple[int, int], board_corners: int | None = None,
                 settings: CaptureSettings = CaptureSettings(), features=None):
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.settings = settings
        self.policy = CapturePolicy(self.image_size, board_corners, settings)
        self.steadiness = SteadinessTracker(settings)
        self.views: list = []
        self.capture_times_s: list[float] = []
        k = coverage.guess_camera_matrix(self.image_size)
        self._features = features or (lambda view, t: features_of_view(view, self.image_size, k, t, settings))
        self.last_features: ViewFeatures | None = None
        self.last_view = None

    def observe(self, view, timestamp_s: float, auto: bool = True) -> Observation:
        """One detection result (a view, or None when the board was not found)."""
        if view is None:
            self.steadiness.update(None)
            self.last_features = self.last_view = None
            return Observation("no board", False, None, "show the board to the camera")
        features = self._features(view, timestamp_s)
        self.last_features, self.last_view = features, view
        steady = self.steadiness.update(features)
        decision = self.policy.consider(features)
        if len(features.corner_ids) < self.policy.min_corners:
            return Observation("too few corners", False, decision,
                               f"bring more of the board into view ({len(features.corner_ids)} corners, "
                               f"need {self.policy.min_corners})")
        if not steady:
            return Observation("moving", False, decision, self._next_hint("hold the board still"))
        if auto and decision.take:
            self._take(view, features)
            return Observation("captured", True, decision, self._next_hint(f"view {len(self.views)} taken"))
        return Observation("steady", False, decision, self._next_hint(f"{decision.reason}: move the board"))

    def capture_now(self) -> CaptureDecision:
        """Takes the last view observed, on the user's request, unless there is none or it has too
        few corners.  Near-duplicates are taken too (the user asked); the reason says so."""
        view, features = self.last_view, self.last_features
        if view is None or features is None:
            return CaptureDecision(False, "no board in view")
        decision = self.policy.consider(features)
        if len(features.corner_ids) < self.policy.min_corners:
            return decision
        self._take(view, features)
        return dataclasses.replace(decision, take=True)

    def undo(self) -> bool:
        """Drops the last view taken; False if there was none."""
        if self.policy.undo() is None:
            return False
        self.views.pop()
        self.capture_times_s.pop()
        return True

    def is_sufficient(self) -> bool:
        return self.policy.is_sufficient()

    def _take(self, view, features: ViewFeatures) -> None:
        self.policy.add(features)
        self.views.append(view)
        self.capture_times_s.append(features.timestamp_s)
        # The next auto capture needs the board to settle again somewhere else.
        self.steadiness.reset()

    def _next_hint(self, prefix: str) -> str:
        if self.policy.is_sufficient():
            return f"{prefix}; coverage is sufficient"
        missing = self.policy.missing(limit=1)
        return f"{prefix}; next: {missing[0]}" if missing else prefix
