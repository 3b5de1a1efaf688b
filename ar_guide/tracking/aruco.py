"""The only module that calls ``cv2.aruco``.

OpenCV's ArUco API changed in 4.7 (object API: ArucoDetector, CharucoDetector) and again in 5.0
(the module-level free functions were removed).  ar_guide supports opencv-contrib-python 4.10 and
later; everything else in the package goes through the functions below.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from ar_guide.constants import EdgeRefinement
from ar_guide.errors import InputError

_aruco = cv2.aruco

#: Names accepted in scene and board files, e.g. "DICT_6X6_250", "DICT_ARUCO_ORIGINAL".
DICTIONARY_NAMES = tuple(sorted(n for n in dir(_aruco) if n.startswith("DICT_")))


def get_dictionary(name: str, path=None):
    """The predefined cv2.aruco dictionary called ``name``; InputError if there is none."""
    key = str(name).strip().upper()
    if not key.startswith("DICT_"):
        key = "DICT_" + key
    if key not in DICTIONARY_NAMES:
        raise InputError(
            f"unknown ArUco dictionary {name!r}; expected one of {', '.join(DICTIONARY_NAMES)}",
            path=path, key="dictionary",
        )
    return _aruco.getPredefinedDictionary(getattr(_aruco, key))


def canonical_dictionary_name(name: str, path=None) -> str:
    get_dictionary(name, path)
    key = str(name).strip().upper()
    return key if key.startswith("DICT_") else "DICT_" + key


def dictionary_size(name: str, path=None) -> int:
    """Number of markers (ids 0..n-1) in the predefined dictionary ``name``."""
    return int(get_dictionary(name, path).bytesList.shape[0])


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """Detector parameters that matter for accuracy and speed (see FIELD-NOTES.md).

    subpixel : refine corners with cornerSubPix (costs little; best corner accuracy in a probe,
        0.30 px vs 0.83 px).  AprilTag refinement is slow and biased, so it is not offered.
    subpixel_window_px : largest half-window of cornerSubPix; OpenCV shrinks it to 0.3 of a
        marker cell (``relativeCornerRefinmentWinSize``) so that small markers stay accurate.
    min_marker_side_px : smallest marker searched for, as its mean side in pixels of the full
        image; smaller candidates are dropped before decoding.  For a given body and working
        distance, :func:`smallest_marker_side_px` says how small its markers get.  The default,
        16 px, is about the smallest that decodes reliably (6x6 markers: 2 px per cell).
    threshold_windows_px : adaptive-threshold window sizes (odd, >= 3, an arithmetic
        progression; OpenCV runs one threshold + contour pass per window, in parallel).  With
        the edge refinement the corners no longer depend on the window, only which markers are
        found and how fast.  One 7 px window found every marker of the real photos and of the
        20-40 px synthetic frames, and large markers blurred by up to 1.5 px, in 5.6 ms at 720p
        (24 markers) and 8.6 ms at 1080p; (5, 15) also keeps large markers blurred by 2 px but
        costs 7.8 and 13.3 ms; (5,) is fastest (4.1 and 5.5 ms) but loses large markers blurred
        by 1.25 px or more; OpenCV's (3, 13, 23) costs 9.0 and 15.2 ms.
        See benchmarks/detector_settings.md.
    aruco3 : OpenCV's ArUco3 mode (Romero-Ramirez et al. 2018): contours are searched on an
        image downscaled so that a ``min_marker_side_px`` marker becomes
        ``aruco3_canonical_side_px`` px.  It only pays off when the smallest marker is large in
        the image (min side several times the canonical side); for 20-40 px markers it saves
        little and loses markers, so it is off by default.
    detect_inverted : also find white-on-black markers.
    refine_edges : after OpenCV's detection, move each corner to the intersection of lines
        fitted to the marker's outer edges next to it (:func:`refine_marker_corners`); about
        10x more accurate than cornerSubPix on 20-40 px markers.
    edge_refinement : its parameters (ar_guide.constants.EdgeRefinement)
    """

    subpixel: bool = True
    subpixel_window_px: int = 5
    min_marker_side_px: float = 16.0
    threshold_windows_px: tuple[int, ...] = (7,)
    aruco3: bool = False
    aruco3_canonical_side_px: int = 16
    detect_inverted: bool = False
    refine_edges: bool = True
    edge_refinement: EdgeRefinement = EdgeRefinement()

    def __post_init__(self):
        windows = tuple(int(w) for w in self.threshold_windows_px)
        if not windows or any(w < 3 or w % 2 == 0 for w in windows):
            raise ValueError(f"threshold_windows_px must be odd sizes >= 3, got {self.threshold_windows_px}")
        steps = {b - a for a, b in zip(windows, windows[1:])}
        if len(steps) > 1 or any(d <= 0 for d in steps):
            raise ValueError(f"threshold_windows_px must be increasing with a constant step (OpenCV runs "
                             f"min..max by step), got {self.threshold_windows_px}")
        object.__setattr__(self, "threshold_windows_px", windows)
        if not self.min_marker_side_px >= 0:
            raise ValueError(f"min_marker_side_px must be >= 0, got {self.min_marker_side_px}")
        if self.subpixel_window_px < 1:
            raise ValueError(f"subpixel_window_px must be >= 1, got {self.subpixel_window_px}")
        if self.aruco3_canonical_side_px < 4:
            raise ValueError(f"aruco3_canonical_side_px must be >= 4, got {self.aruco3_canonical_side_px}")


@dataclasses.dataclass(frozen=True, eq=False)
class Detections:
    """Markers of one dictionary found in one image.

    ids : (N,) int32
    corners_px : (N, 4, 2) float32, OpenCV order (clockwise from the marker's top-left)
    """

    dictionary: str
    ids: np.ndarray
    corners_px: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.size)

    @staticmethod
    def empty(dictionary: str) -> "Detections":
        return Detections(dictionary, np.zeros(0, np.int32), np.zeros((0, 4, 2), np.float32))


def smallest_marker_side_px(marker_mm: float, focal_px: float, max_distance_mm: float,
                            max_view_angle_deg: float = 60.0) -> float:
    """The mean side (px) of a ``marker_mm`` marker at ``max_distance_mm``, seen up to
    ``max_view_angle_deg`` off its normal: what DetectorSettings.min_marker_side_px should be at
    most for a body at that working distance.  A tilted square's mean side shrinks by about
    (1 + cos angle) / 2.  Examples: the SciKit-Surgery reference (14.5 mm markers, f 560 px) at
    600 mm and 60 deg: 10 px, below the default 16 px (and hard to decode at all); 18 mm ChArUco
    markers, f 1000 px, 600 mm, 50 deg: 25 px."""
    angle = np.radians(float(max_view_angle_deg))
    return float(focal_px) * float(marker_mm) / float(max_distance_mm) * (1.0 + np.cos(angle)) / 2.0


#: cornerSubPix stops when a corner moves less than this (px) or after this many iterations.
_SUBPIX_EPSILON_PX = 0.01
_SUBPIX_ITERATIONS = 30
#: A square rotated 45 degrees has a CHAIN_APPROX_NONE contour of about 4 * side / sqrt(2)
#: points, so the contour-length test allows that much less than 4 * side.
_DIAGONAL_CONTOUR_FACTOR = 0.7


def detector_parameters(settings: DetectorSettings, image_size: tuple[int, int]):
    """cv2.aruco.DetectorParameters for ``settings`` on images of ``image_size`` (w, h).

    OpenCV states marker sizes relative to the longer image side, so the parameters depend on
    the image size; :class:`MarkerDetector` builds them once per size.
    """
    longer = float(max(image_size))
    p = _aruco.DetectorParameters()
    if settings.subpixel:
        p.cornerRefinementMethod = _aruco.CORNER_REFINE_SUBPIX
        p.cornerRefinementWinSize = int(settings.subpixel_window_px)
        p.cornerRefinementMaxIterations = _SUBPIX_ITERATIONS
        p.cornerRefinementMinAccuracy = _SUBPIX_EPSILON_PX
    else:
        p.cornerRefinementMethod = _aruco.CORNER_REFINE_NONE
    windows = settings.threshold_windows_px
    p.adaptiveThreshWinSizeMin = windows[0]
    p.adaptiveThreshWinSizeMax = windows[-1]
    p.adaptiveThreshWinSizeStep = (windows[1] - windows[0]) if len(windows) > 1 else 10
    side = float(settings.min_marker_side_px)
    p.useAruco3Detection = bool(settings.aruco3)
    if settings.aruco3:
        # OpenCV: segmentation image scale = c / (c + ratio * longer); a marker of side
        # c + ratio * longer px then has side c there (Romero-Ramirez et al. 2018, eq. 2).
        canonical = int(settings.aruco3_canonical_side_px)
        p.minSideLengthCanonicalImg = canonical
        p.minMarkerLengthRatioOriginalImg = max(side - canonical, 0.0) / longer
    else:
        rate = 4.0 * _DIAGONAL_CONTOUR_FACTOR * side / longer
        p.minMarkerPerimeterRate = max(rate, 1e-3)
    p.detectInvertedMarker = bool(settings.detect_inverted)
    return p


class MarkerDetector:
    """Detects the markers of one dictionary in grey images."""

    def __init__(self, dictionary: str, settings: DetectorSettings = DetectorSettings()):
        self.dictionary = canonical_dictionary_name(dictionary)
        self.settings = settings
        self._dictionary = get_dictionary(self.dictionary)
        self._cells = int(self._dictionary.markerSize) + 2  # bits plus a one-cell border each side
        self._detectors = {}  # image (w, h) -> cv2.aruco.ArucoDetector

    def detect(self, gray: np.ndarray) -> Detections:
        """gray : (H, W) uint8.  Returns the markers found (possibly none)."""
        if gray.ndim != 2 or gray.dtype != np.uint8:
            raise ValueError(f"expected a (H, W) uint8 grey image, got {gray.shape} {gray.dtype}")
        size = (gray.shape[1], gray.shape[0])
        detector = self._detectors.get(size)
        if detector is None:
            detector = _aruco.ArucoDetector(self._dictionary, detector_parameters(self.settings, size))
            self._detectors[size] = detector
        corners, ids, _rejected = detector.detectMarkers(gray)
        if ids is None or len(ids) == 0:
            return Detections.empty(self.dictionary)
        corners_px = np.asarray(corners, dtype=np.float32).reshape(-1, 4, 2)
        if self.settings.refine_edges:
            corners_px = refine_marker_corners(gray, corners_px, self._cells, self.settings.edge_refinement)
        return Detections(self.dictionary, ids.reshape(-1).astype(np.int32), corners_px)


def refine_marker_corners(gray: np.ndarray, corners_px: np.ndarray, cells: int,
                          settings: EdgeRefinement = EdgeRefinement()) -> np.ndarray:
    """Marker corners moved to the intersections of their outer edges (sub-pixel).

    gray : (H, W) uint8; corners_px : (N, 4, 2) float32, OpenCV order; cells : marker side in
    cells (bits + 2 border cells).  Returns (N, 4, 2) float32.

    For each corner, the two sides that meet there are sampled near it: profiles across the
    edge (bicubic), the edge point of each profile is the centroid of its strong intensity
    gradients from the dark border to the light surround (polarity by majority per marker, so
    inverted markers work too), a line is fitted to the edge points of each side segment (total
    least squares, one refit without outliers), and the corner is where the two lines cross.
    Like OpenCV's CORNER_REFINE_CONTOUR, but on sub-pixel edge points instead of the integer
    contour.  Re-centring the profiles on the new lines and repeating removes the bias of the
    first guess.  A corner whose lines are missing (occlusion, image border) or that would move
    implausibly far keeps OpenCV's position.
    """
    c0 = np.asarray(corners_px, dtype=np.float64).reshape(-1, 4, 2)
    if len(c0) == 0:
        return np.asarray(corners_px, dtype=np.float32).reshape(-1, 4, 2)
    out = c0.copy()
    active = np.arange(len(c0))
    for round_ in range(settings.max_iterations):
        moved = _refine_round(gray, out[active], c0[active], cells, settings)
        change = np.max(np.abs(moved - out[active]), axis=(1, 2))
        out[active] = moved
        if round_ + 1 >= settings.iterations:
            # Further rounds only for markers whose corners still move.
            active = active[change >= settings.converged_px]
            if len(active) == 0:
                break
    return out.astype(np.float32)


def _refine_round(gray, out, c0, cells, s):
    """One round of :func:`refine_marker_corners` on (n, 4, 2) corners; returns the new corners."""
    n = len(out)
    frac = np.linspace(0.0, 1.0, s.profiles_per_segment)
    start = out
    end = np.roll(out, -1, axis=1)                 # side j runs from corner j to corner j + 1
    along = end - start
    length = np.linalg.norm(along, axis=2)         # (N, 4)
    direction = along / np.maximum(length, 1e-9)[..., None]
    normal = np.stack([direction[..., 1], -direction[..., 0]], axis=2)
    outward = np.sign(np.einsum("njk,njk->nj", normal, (start + end) / 2 - out.mean(axis=1, keepdims=True)))
    normal *= np.where(outward == 0, 1.0, outward)[..., None]
    cell = length.mean(axis=1) / cells             # (N,) px per cell
    # Across side j the border cell is as deep as the neighbouring sides are long / cells
    # (perspective makes it thinner than along the side).
    depth = (np.roll(length, 1, axis=1) + np.roll(length, -1, axis=1)) / (2 * cells)   # (N, 4)
    first = np.maximum(s.segment_start_px, s.segment_start_cells * cell)[:, None]
    last = np.minimum(length / 2, s.segment_max_px)
    last = np.maximum(last, first)
    dist = first[..., None] + (last - first)[..., None] * frac       # (N, 4, S)
    # Half 0 of side j lies next to corner j, half 1 next to corner j + 1.
    base = np.stack([start[:, :, None, :] + dist[..., None] * direction[:, :, None, :],
                     end[:, :, None, :] - dist[..., None] * direction[:, :, None, :]], axis=2)
    reach = np.minimum(s.profile_cells * depth, s.profile_max_px)   # (N, 4)
    steps = int(np.ceil(2 * reach.max() / s.profile_step_px)) + 1
    offsets = -reach[..., None] + 2 * reach[..., None] * np.linspace(0.0, 1.0, steps)   # (N, 4, P)
    points = (base[:, :, :, :, None, :]
              + offsets[:, :, None, None, :, None] * normal[:, :, None, None, None, :])
    map_x = points[..., 0].reshape(-1, steps).astype(np.float32)
    map_y = points[..., 1].reshape(-1, steps).astype(np.float32)
    profile = cv2.remap(gray, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    profile = profile.reshape(n, 4, 2, s.profiles_per_segment, steps).astype(np.float64)
    ends = max(1, steps // 6)
    contrast = profile[..., -ends:].mean(-1) - profile[..., :ends].mean(-1)
    # Polarity per marker, by majority: dark border in a light surround, or the reverse for
    # inverted markers.  (Per profile it would flip where the inner end meets a white bit.)
    polarity = np.where(np.median(contrast.reshape(n, -1), axis=1) >= 0, 1.0, -1.0)[:, None, None, None]
    rise = np.maximum(np.diff(profile, axis=-1) * polarity[..., None], 0.0)
    # Only the edge itself: noise in the flat parts would pull the centroid to the middle.
    rise = np.where(rise >= s.edge_fraction * rise.max(axis=-1, keepdims=True), rise, 0.0)
    mid = (offsets[..., 1:] + offsets[..., :-1]) / 2                  # (N, 4, P - 1)
    weight = rise.sum(-1)
    edge = (rise * mid[:, :, None, None, :]).sum(-1) / np.maximum(weight, 1e-9)
    strength = contrast * polarity
    median = np.median(strength.reshape(n, -1), axis=1)[:, None, None, None]
    good = (strength >= s.min_contrast) & (strength >= s.min_contrast_fraction * median)
    edge_points = base + edge[..., None] * normal[:, :, None, None, :]    # (N, 4, 2, S, 2)
    centre, line_dir, good = _fit_lines(edge_points, good, s.max_line_residual_px)
    # Corner k: the end half of side k - 1 and the start half of side k.
    p1 = np.roll(centre[:, :, 1], 1, axis=1)
    d1 = np.roll(line_dir[:, :, 1], 1, axis=1)
    p2 = centre[:, :, 0]
    d2 = line_dir[:, :, 0]
    det = d1[..., 1] * d2[..., 0] - d1[..., 0] * d2[..., 1]
    rhs = p2 - p1
    t1 = (rhs[..., 1] * d2[..., 0] - rhs[..., 0] * d2[..., 1]) / np.where(np.abs(det) < 1e-9, np.nan, det)
    corner = p1 + t1[..., None] * d1
    count = good.sum(-1)
    ok = (np.roll(count[:, :, 1], 1, axis=1) >= 4) & (count[:, :, 0] >= 4) & np.all(np.isfinite(corner), axis=-1)
    limit = np.maximum(s.max_shift_px, s.max_shift_cells * cell)[:, None]
    ok &= np.linalg.norm(corner - c0, axis=-1) <= limit
    return np.where(ok[..., None], corner, out)


def _fit_lines(points, good, max_residual):
    """Total-least-squares lines through (..., S, 2) points with (..., S) masks; one refit
    without points further than ``max_residual``.  Returns centre (..., 2), direction (..., 2)
    and the final mask."""
    for _ in range(2):
        w = good.astype(np.float64)
        total = np.maximum(w.sum(-1, keepdims=True), 1e-9)
        centre = (points * w[..., None]).sum(-2) / total
        d = points - centre[..., None, :]
        sxx = (w * d[..., 0] * d[..., 0]).sum(-1)
        syy = (w * d[..., 1] * d[..., 1]).sum(-1)
        sxy = (w * d[..., 0] * d[..., 1]).sum(-1)
        angle = 0.5 * np.arctan2(2.0 * sxy, sxx - syy)   # principal axis of the 2x2 scatter matrix
        direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
        normal = np.stack([-direction[..., 1], direction[..., 0]], axis=-1)
        residual = np.abs(np.einsum("...sk,...k->...s", points - centre[..., None, :], normal))
        good = good & (residual <= max_residual)
    return centre, direction, good


def make_charuco_board(squares_xy: tuple[int, int], square_mm: float, marker_mm: float,
                       dictionary: str, legacy_pattern: bool = False):
    """A cv2.aruco.CharucoBoard; ``legacy_pattern`` selects the pre-4.6 layout (even rows)."""
    board = _aruco.CharucoBoard(
        (int(squares_xy[0]), int(squares_xy[1])), float(square_mm), float(marker_mm),
        get_dictionary(dictionary),
    )
    board.setLegacyPattern(bool(legacy_pattern))
    return board


def make_grid_board(markers_xy: tuple[int, int], marker_mm: float, separation_mm: float, dictionary: str,
                    first_id: int = 0):
    """A cv2.aruco.GridBoard: markers row by row, ids ``first_id`` onwards."""
    nx, ny = int(markers_xy[0]), int(markers_xy[1])
    ids = np.arange(int(first_id), int(first_id) + nx * ny, dtype=np.int32)
    return _aruco.GridBoard((nx, ny), float(marker_mm), float(separation_mm), get_dictionary(dictionary), ids)


def board_markers(board) -> dict[int, np.ndarray]:
    """Marker corners by id ((4, 3) float64 mm each, OpenCV order) of any cv2 board."""
    obj = board.getObjPoints()
    ids = np.asarray(board.getIds()).ravel()
    return {int(i): np.asarray(c, dtype=np.float64).reshape(4, 3) for i, c in zip(ids, obj)}


def charuco_layout(board) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Marker corners by id ((4, 3) mm each) and chessboard corners ((M, 3) mm) of a board.

    Coordinates are OpenCV's board frame: origin at the board's top-left outer corner, x along
    the squares' first axis, y along the second, z = 0 on the board surface.
    """
    markers = board_markers(board)
    chessboard = np.asarray(board.getChessboardCorners(), dtype=np.float64).reshape(-1, 3)
    return markers, chessboard


class CharucoInterpolator:
    """Finds ChArUco chessboard corners from already detected markers (sub-pixel refined)."""

    def __init__(self, board):
        self.board = board
        self._detector = _aruco.CharucoDetector(board)

    def __call__(self, gray: np.ndarray, detections: Detections):
        """Returns (corner_ids (K,) int32, corners_px (K, 2) float32); K may be 0."""
        if len(detections) == 0:
            return np.zeros(0, np.int32), np.zeros((0, 2), np.float32)
        corners = [c.reshape(1, 4, 2) for c in detections.corners_px]
        ids = detections.ids.reshape(-1, 1)
        ch_corners, ch_ids, _, _ = self._detector.detectBoard(gray, markerCorners=corners, markerIds=ids)
        if ch_ids is None or len(ch_ids) == 0:
            return np.zeros(0, np.int32), np.zeros((0, 2), np.float32)
        return ch_ids.reshape(-1).astype(np.int32), np.asarray(ch_corners, np.float32).reshape(-1, 2)


def marker_image(dictionary: str, marker_id: int, side_px: int, border_bits: int = 1) -> np.ndarray:
    """(side_px, side_px) uint8 image of one marker, black border included."""
    return _aruco.generateImageMarker(get_dictionary(dictionary), int(marker_id), int(side_px),
                                      borderBits=int(border_bits))


def marker_cells(dictionary: str, marker_id: int) -> np.ndarray:
    """(n + 2, n + 2) bool, True where a cell of the marker is black (its 1-cell border included),
    row 0 at the marker's top edge, column 0 at its left edge (corner 0 is the top-left)."""
    n = int(get_dictionary(dictionary).markerSize) + 2
    return marker_image(dictionary, marker_id, n, border_bits=1) < 128


def board_image(board, size_px: tuple[int, int], margin_px: int = 0) -> np.ndarray:
    """(H, W) uint8 image of a board (ChArUco or grid), white background."""
    return board.generateImage((int(size_px[0]), int(size_px[1])), marginSize=int(margin_px), borderBits=1)
