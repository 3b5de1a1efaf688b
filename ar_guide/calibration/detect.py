"""Board corners in one image: the views a calibration is solved from, and why an image gave none.

* ChArUco: markers with the project's :class:`~ar_guide.tracking.aruco.MarkerDetector` (default
  settings: sub-pixel corners fitted to the marker edges), then the chessboard corners between
  them with OpenCV's CharucoDetector (cornerSubPix-refined).  Partial views are fine.
* ArUco grid: the marker corners themselves, matched to the board by marker id.
* Chessboard: ``cv2.findChessboardCornersSB`` (Duda and Frese 2018, "Accurate detection and
  localization of checkerboard corners for calibration", BMVC), falling back to
  ``findChessboardCorners`` + ``cornerSubPix`` when SB finds nothing.  SB was chosen by
  measurement: on the SciKit-Surgery webcam set it gives 0.33 px RMS over all 12 views where the
  classic detector mis-assigns corners in the two steepest views (1.41 px), and on the blurred
  laparoscope set 1.02 px against 1.46 px; cornerSubPix after SB made both worse (0.34-1.4 px
  and 1.3-2.2 px depending on the window).  On sharp synthetic views both are within 0.02-0.07 px
  of the truth.

A view needs ``CalibrationSettings.min_corners`` corners not on a line.  When an image gives no
view, :attr:`BoardDetector.last_failure` says why in a few words, and
:meth:`BoardDetector.diagnose` (slower: it tries other board parameters) says what to change in
the board file: squares swapped, the legacy ChArUco layout, another dictionary, another
chessboard size, or a different kind of board.
"""

from __future__ import annotations

import collections
import dataclasses

import cv2
import numpy as np

from ar_guide.calibration.boards import CalibrationBoard
from ar_guide.constants import CalibrationSettings
from ar_guide.errors import InputError
from ar_guide.tracking import aruco
from ar_guide.tracking.bodies import charuco_body

#: findChessboardCornersSB flags: EXHAUSTIVE (search harder, fewer false negatives on blurred or
#: steep views) and ACCURACY (up-sampled refinement).
_SB_FLAGS = cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
_CLASSIC_FLAGS = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
_SUBPIX_CRITERIA = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 0.001)
#: Largest dictionary of each marker family, scanned when an image shows no marker of the board's
#: dictionary (a dictionary's first ids are those of every smaller one of its family).
_DICTIONARY_FAMILIES = ("DICT_4X4_1000", "DICT_5X5_1000", "DICT_6X6_1000", "DICT_7X7_1000",
                        "DICT_ARUCO_ORIGINAL", "DICT_ARUCO_MIP_36h12", "DICT_APRILTAG_16h5",
                        "DICT_APRILTAG_25h9", "DICT_APRILTAG_36h10", "DICT_APRILTAG_36h11")


@dataclasses.dataclass(frozen=True, eq=False)
class BoardView:
    """The board's corners found in one image.

    source : file name or "frame 123" (for messages and reports)
    image_size : (w, h) px of the image
    corner_ids : (K,) int32, rows of ``board.corners_mm``
    image_points_px : (K, 2) float32, sub-pixel, OpenCV pixel centres
    object_points_mm : (K, 3) float32, the same corners in the board frame (z = 0), mm
    markers_found : ArUco markers of the board seen (0 for chessboards)
    """

    source: str
    image_size: tuple[int, int]
    corner_ids: np.ndarray
    image_points_px: np.ndarray
    object_points_mm: np.ndarray
    markers_found: int = 0

    def __post_init__(self):
        ids = np.ascontiguousarray(self.corner_ids, dtype=np.int32).reshape(-1)
        uv = np.ascontiguousarray(self.image_points_px, dtype=np.float32).reshape(-1, 2)
        obj = np.ascontiguousarray(self.object_points_mm, dtype=np.float32).reshape(-1, 3)
        if not (len(ids) == len(uv) == len(obj)):
            raise ValueError(f"corner_ids, image_points_px and object_points_mm differ in length: "
                             f"{len(ids)}, {len(uv)}, {len(obj)}")
        for a in (ids, uv, obj):
            a.setflags(write=False)
        object.__setattr__(self, "corner_ids", ids)
        object.__setattr__(self, "image_points_px", uv)
        object.__setattr__(self, "object_points_mm", obj)
        object.__setattr__(self, "image_size", (int(self.image_size[0]), int(self.image_size[1])))

    def __len__(self) -> int:
        return int(self.corner_ids.size)

    def __repr__(self) -> str:
        return f"BoardView({self.source!r}, {len(self)} corners, {self.markers_found} markers)"


def corner_spread(object_points_mm: np.ndarray) -> float:
    """Second over first singular value of the centred board (x, y) coordinates: 0 for points on
    a line, 1 for an isotropic spread."""
    xy = np.asarray(object_points_mm, dtype=np.float64)[:, :2]
    if len(xy) < 3:
        return 0.0
    s = np.linalg.svd(xy - xy.mean(axis=0), compute_uv=False)
    return float(s[1] / s[0]) if s[0] > 0 else 0.0


def _gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim != 2 or image.dtype != np.uint8:
        raise ValueError(f"expected a (H, W) uint8 grey image, got {image.shape} {image.dtype}")
    return image


def id_ranges(ids) -> str:
    """"0-16, 20" from a set of ids."""
    ids = sorted(set(int(i) for i in ids))
    parts = []
    start = prev = None
    for i in ids:
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            parts.append(f"{start}-{prev}" if prev > start else f"{start}")
            start = prev = i
    if start is not None:
        parts.append(f"{start}-{prev}" if prev > start else f"{start}")
    return ", ".join(parts)


class BoardDetector:
    """Finds a calibration board's corners in grey images.

    ``detect`` returns a :class:`BoardView`, or None with :attr:`last_failure` saying why ("no
    markers of DICT_6X6_250", "3 ChArUco corners (< 6)" ...).  :attr:`foreign_ids` counts
    markers of the board's dictionary whose ids the board does not have (a sign that the board
    file describes a smaller board).
    """

    def __init__(self, board: CalibrationBoard, settings: CalibrationSettings = CalibrationSettings(),
                 detector_settings: aruco.DetectorSettings = aruco.DetectorSettings()):
        self.board = board
        self.settings = settings
        self.detector_settings = detector_settings
        self.last_failure = ""
        self.foreign_ids: collections.Counter = collections.Counter()
        self._corners_mm = np.asarray(board.corners_mm, dtype=np.float64)
        if board.kind in ("charuco", "aruco_grid"):
            self._markers = aruco.MarkerDetector(board.body.dictionary, detector_settings)
            self._board_ids = np.array(board.body.marker_ids, dtype=np.int32)
        if board.kind == "charuco":
            self._interpolator = aruco.CharucoInterpolator(board.body.board)

    # -- detection ---------------------------------------------------------------------------

    def detect(self, gray: np.ndarray, source: str = "") -> BoardView | None:
        """gray : (H, W) uint8 (a BGR image is converted).  A view, or None (see last_failure)."""
        gray = _gray(gray)
        self.last_failure = ""
        if self.board.kind == "chessboard":
            found = self._chessboard(gray)
            markers = 0
        else:
            found, markers = self._markers_view(gray)
        if found is None:
            return None
        ids, uv = found
        obj = self._corners_mm[ids]
        if corner_spread(obj) < self.settings.min_corner_spread:
            self.last_failure = f"{len(ids)} corners, nearly on one line"
            return None
        return BoardView(source, (gray.shape[1], gray.shape[0]), ids, uv, obj, markers)

    def _markers_view(self, gray):
        board = self.board
        detections = self._markers.detect(gray)
        dictionary = board.body.dictionary
        if len(detections) == 0:
            self.last_failure = f"no markers of {dictionary}"
            return None, 0
        on_board = np.isin(detections.ids, self._board_ids)
        foreign = detections.ids[~on_board]
        self.foreign_ids.update(int(i) for i in foreign)
        n_on = int(on_board.sum())
        if n_on == 0:
            self.last_failure = (f"{len(detections)} markers of {dictionary} but none of the ids of the board "
                                 f"({id_ranges(self._board_ids)}); found ids {id_ranges(foreign)}")
            return None, 0
        kept = aruco.Detections(dictionary, detections.ids[on_board], detections.corners_px[on_board])
        minimum = self.settings.min_corners
        if board.kind == "charuco":
            ids, uv = self._interpolator(gray, kept)
            if len(ids) < minimum:
                self.last_failure = f"{len(ids)} ChArUco corners (< {minimum}) from {n_on} markers"
                return None, n_on
            return (ids, uv), n_on
        # ArUco grid: corner id 4 k + c for the k-th marker (sorted ids) and its corner c.
        index = np.searchsorted(self._board_ids, kept.ids)
        ids = (4 * index[:, None] + np.arange(4)[None, :]).reshape(-1).astype(np.int32)
        uv = kept.corners_px.reshape(-1, 2)
        if len(ids) < minimum:
            self.last_failure = f"{len(ids)} marker corners (< {minimum}) from {n_on} markers"
            return None, n_on
        return (ids, uv), n_on

    def _chessboard(self, gray):
        cols, rows = self.board.inner_corners
        corners = _find_chessboard(gray, (cols, rows))
        if corners is None:
            self.last_failure = f"no {cols}x{rows} chessboard"
            return None
        return np.arange(cols * rows, dtype=np.int32), corners

    # -- diagnosis -----------------------------------------------------------------------------

    def diagnose(self, gray: np.ndarray) -> str | None:
        """What to change in the board file so that this image shows the board, or None.

        Tries, as applicable: the squares swapped, the other ChArUco layout (legacy_pattern),
        other marker dictionaries, the chessboard's real size, a different kind of board.  Slow
        (up to a second per image): for failed images of a whole set, not per live frame.
        """
        gray = _gray(gray)
        if self.board.kind == "charuco":
            return self._diagnose_charuco(gray)
        if self.board.kind == "aruco_grid":
            return self._diagnose_grid(gray)
        return self._diagnose_chessboard(gray)

    def _diagnose_charuco(self, gray) -> str | None:
        p = self.board.parameters
        nx, ny = p["squares"]
        legacy = bool(p.get("legacy_pattern", False))
        detections = self._markers.detect(gray)
        if len(detections) == 0:
            return self._other_dictionary(gray) or self._other_kind(gray)
        minimum = self.settings.min_corners
        here, _ = self._markers_view(gray)
        best = (len(here[0]) if here is not None else 0, None)
        candidates = [((ny, nx), legacy), ((nx, ny), not legacy), ((ny, nx), not legacy)]
        for squares, leg in candidates:
            if squares == (nx, ny) and leg == legacy:
                continue
            try:
                body = charuco_body("board", squares, p["square_mm"], p["marker_mm"], p["dictionary"], leg)
            except InputError:  # the alternative does not fit the dictionary: not a candidate
                continue
            ids = np.array(body.marker_ids, dtype=np.int32)
            on = np.isin(detections.ids, ids)
            if not on.any():
                continue
            kept = aruco.Detections(detections.dictionary, detections.ids[on], detections.corners_px[on])
            corner_ids, _ = aruco.CharucoInterpolator(body.board)(gray, kept)
            if len(corner_ids) >= minimum and len(corner_ids) > best[0]:
                best = (len(corner_ids), (squares, leg))
        if best[1] is not None:
            (sx, sy), leg = best[1]
            changes = []
            if (sx, sy) != (nx, ny):
                changes.append(f"did you swap squares: [{nx}, {ny}] for [{sx}, {sy}]?")
            if leg != legacy:
                changes.append(f"the board uses {'the legacy (pre-OpenCV 4.6)' if leg else 'the current'} "
                               f"ChArUco layout: set legacy_pattern: {'true' if leg else 'false'}")
            return (f"{'; '.join(changes)} With squares: [{sx}, {sy}], legacy_pattern: "
                    f"{'true' if leg else 'false'} the board is found ({best[0]} corners)")
        foreign = sorted(set(int(i) for i in detections.ids) - set(int(i) for i in self._board_ids))
        if foreign:
            return (f"markers with ids {id_ranges(foreign)} are in view but a {nx}x{ny} ChArUco board has only "
                    f"ids {id_ranges(self._board_ids)}: the printed board is larger; count its squares")
        return None

    def _diagnose_grid(self, gray) -> str | None:
        detections = self._markers.detect(gray)
        if len(detections) == 0:
            return self._other_dictionary(gray) or self._other_kind(gray)
        p = self.board.parameters
        found = set(int(i) for i in detections.ids)
        board_ids = set(int(i) for i in self._board_ids)
        if not found & board_ids:
            return (f"markers with ids {id_ranges(found)} are in view but the ids of the grid are "
                    f"{id_ranges(board_ids)}: set first_id: {min(found)} (or check markers: {p['markers']})")
        return None

    def _diagnose_chessboard(self, gray) -> str | None:
        cols, rows = self.board.inner_corners
        markers = self._other_dictionary(gray, board_has_markers=False)
        if markers:  # a ChArUco board (its squares also look like small chessboards)
            return markers
        # SB with CALIB_CB_LARGER finds a board larger than the pattern asked for and reports
        # its size in the meta array (rows, columns).
        ok, corners, meta = cv2.findChessboardCornersSBWithMeta(gray, (3, 3), _SB_FLAGS | cv2.CALIB_CB_LARGER)
        if ok and meta is not None:
            r, c = meta.shape[:2]
            if {int(c), int(r)} != {cols, rows}:
                hint = ""
                if {int(c) - 1, int(r) - 1} == {cols, rows} or {int(c) + 1, int(r) + 1} == {cols, rows}:
                    hint = " (inner corners are where four squares meet: the squares along a side minus one)"
                return (f"a chessboard of {max(c, r)}x{min(c, r)} inner corners is in view but the board file says "
                        f"inner_corners: [{cols}, {rows}]{hint}")
        return None

    def _other_dictionary(self, gray, board_has_markers: bool = True) -> str | None:
        """Name the marker dictionary (family) seen in the image, if it is not the board's."""
        best = (0, None, None)
        for family in _DICTIONARY_FAMILIES:
            detections = aruco.MarkerDetector(family, self.detector_settings).detect(gray)
            if len(detections) > best[0]:
                best = (len(detections), family, detections.ids)
        count, family, ids = best
        if count < self.settings.min_markers_to_name_dictionary:
            return None
        name = _smallest_dictionary(family, int(ids.max()))
        if not board_has_markers:
            return (f"{count} ArUco markers of {name} are in view but the board file describes a plain "
                    f"chessboard: for a ChArUco board set type: charuco, squares, square_mm, marker_mm, "
                    f"dictionary: {name}")
        said = self.board.body.dictionary
        if _family(name) == _family(said):
            return (f"{count} markers of {name} with ids {id_ranges(ids)} are in view but the board file says "
                    f"dictionary: {said} (ids 0-{aruco.dictionary_size(said) - 1}): set dictionary: {name}")
        larger = f" (or a larger {_family(name)} dictionary)" if _family(name) != name else ""
        return (f"markers of {name} are in view ({count}, ids {id_ranges(ids)}), the board file says "
                f"dictionary: {said}: set dictionary: {name}{larger}")

    def _other_kind(self, gray) -> str | None:
        ok, corners, meta = cv2.findChessboardCornersSBWithMeta(gray, (3, 3), _SB_FLAGS | cv2.CALIB_CB_LARGER)
        if ok and meta is not None:
            r, c = meta.shape[:2]
            return (f"a plain chessboard of {max(c, r)}x{min(c, r)} inner corners is in view, without markers: "
                    f"set type: chessboard, inner_corners: [{max(c, r)}, {min(c, r)}]")
        return None


def _family(name: str) -> str:
    """"DICT_6X6" for "DICT_6X6_250"; the name itself for dictionaries without sizes."""
    parts = name.split("_")
    if len(parts) == 3 and parts[1][0].isdigit() and parts[2].isdigit():
        return "_".join(parts[:2])
    return name


def _smallest_dictionary(family_dictionary: str, max_id: int) -> str:
    """The smallest predefined dictionary of the family that holds ``max_id``."""
    family = _family(family_dictionary)
    if family == family_dictionary:
        return family_dictionary
    for size in (50, 100, 250, 1000):
        name = f"{family}_{size}"
        if name in aruco.DICTIONARY_NAMES and max_id < size:
            return name
    return family_dictionary


def _find_chessboard(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """(cols * rows, 2) float32 inner corners, row by row, or None."""
    ok, corners = cv2.findChessboardCornersSB(gray, pattern, flags=_SB_FLAGS)
    if ok and corners is not None:
        return corners.reshape(-1, 2).astype(np.float32)
    ok, corners = cv2.findChessboardCorners(gray, pattern, flags=_CLASSIC_FLAGS)
    if not ok or corners is None:
        return None
    corners = corners.reshape(-1, 2)
    # cornerSubPix's window must stay inside one square: 0.35 of the smallest corner spacing.
    grid = corners.reshape(pattern[1], pattern[0], 2)
    spacing = min(np.linalg.norm(np.diff(grid, axis=1), axis=2).min(),
                  np.linalg.norm(np.diff(grid, axis=0), axis=2).min())
    half = int(max(2, min(11, 0.35 * spacing)))
    refined = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2).astype(np.float32), (half, half), (-1, -1),
                               _SUBPIX_CRITERIA)
    return refined.reshape(-1, 2).astype(np.float32)


def edge_blur_px(gray: np.ndarray, view: BoardView) -> float:
    """Gaussian blur sigma (px) of the board's edges, estimated in the corners' bounding box.

    Across an edge of contrast C blurred by sigma, the gradient g integrates to C and g^2 to
    C^2 / (2 sigma sqrt(pi)); so sigma = C sum|g| / (2 sqrt(pi) sum g^2) over the edges.  C is
    the 5-95 percentile range of the grey levels.  Independent of the board's size in the
    image, so frames at different distances compare.  Approximate (the pixel grid, the gradient
    stencil and sensor noise bias it): use it to compare frames of one camera.
    """
    gray = _gray(gray)
    uv = view.image_points_px
    h, w = gray.shape
    x0, y0 = np.floor(uv.min(axis=0)).astype(int)
    x1, y1 = np.ceil(uv.max(axis=0)).astype(int)
    x0, y0 = max(x0, 0), max(y0, 0)
    x1, y1 = min(x1 + 1, w), min(y1 + 1, h)
    crop = gray[y0:y1, x0:x1].astype(np.float32)
    if crop.shape[0] < 4 or crop.shape[1] < 4:
        return float("nan")
    gy, gx = np.gradient(crop)
    g = np.hypot(gx, gy).ravel()
    contrast = float(np.percentile(crop, 95) - np.percentile(crop, 5))
    # Only pixels on edges (noise in flat areas would dominate sum|g|): above a fixed fraction
    # of the strongest gradients, so that the same part of every edge profile counts (about
    # +-1.8 sigma) whatever the blur.
    edge = g > 0.2 * np.percentile(g, 99)
    if contrast <= 0 or not edge.any():
        return float("nan")
    return float(contrast * g[edge].sum() / (2.0 * np.sqrt(np.pi) * np.square(g[edge]).sum()))
