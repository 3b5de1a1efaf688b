"""The only module that calls ``cv2.aruco``.

OpenCV's ArUco API changed in 4.7 (object API: ArucoDetector, CharucoDetector) and again in 5.0
(the module-level free functions were removed).  ar_guide supports opencv-contrib-python 4.10 and
later; everything else in the package goes through the functions below.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

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


@dataclasses.dataclass(frozen=True)
class DetectorSettings:
    """Detector parameters that matter for accuracy and speed (see FIELD-NOTES.md).

    Sub-pixel refinement costs little and gave the best corner accuracy; AprilTag refinement is
    slow and biased, so it is not offered.  ArUco3 mode searches a downscaled image first; the
    smallest marker it finds is ``min_marker_side_fraction`` of the longer image side.
    """

    subpixel: bool = True
    aruco3: bool = True
    min_marker_side_fraction: float = 0.02
    subpixel_window_px: int = 5
    detect_inverted: bool = False


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


def _detector_parameters(settings: DetectorSettings):
    p = _aruco.DetectorParameters()
    if settings.subpixel:
        p.cornerRefinementMethod = _aruco.CORNER_REFINE_SUBPIX
        p.cornerRefinementWinSize = int(settings.subpixel_window_px)
        p.cornerRefinementMaxIterations = 30
        p.cornerRefinementMinAccuracy = 0.01
    else:
        p.cornerRefinementMethod = _aruco.CORNER_REFINE_NONE
    p.useAruco3Detection = bool(settings.aruco3)
    if settings.aruco3:
        # Perimeter of the smallest marker searched for, as a fraction of the longer side (x4).
        p.minMarkerLengthRatioOriginalImg = float(settings.min_marker_side_fraction)
        p.minSideLengthCanonicalImg = 16
    p.detectInvertedMarker = bool(settings.detect_inverted)
    return p


class MarkerDetector:
    """Detects the markers of one dictionary in grey images."""

    def __init__(self, dictionary: str, settings: DetectorSettings = DetectorSettings()):
        self.dictionary = canonical_dictionary_name(dictionary)
        self.settings = settings
        self._detector = _aruco.ArucoDetector(get_dictionary(self.dictionary), _detector_parameters(settings))

    def detect(self, gray: np.ndarray) -> Detections:
        """gray : (H, W) uint8.  Returns the markers found (possibly none)."""
        corners, ids, _rejected = self._detector.detectMarkers(gray)
        if ids is None or len(ids) == 0:
            return Detections.empty(self.dictionary)
        return Detections(
            self.dictionary,
            ids.reshape(-1).astype(np.int32),
            np.asarray(corners, dtype=np.float32).reshape(-1, 4, 2),
        )


def make_charuco_board(squares_xy: tuple[int, int], square_mm: float, marker_mm: float,
                       dictionary: str, legacy_pattern: bool = False):
    """A cv2.aruco.CharucoBoard; ``legacy_pattern`` selects the pre-4.6 layout (even rows)."""
    board = _aruco.CharucoBoard(
        (int(squares_xy[0]), int(squares_xy[1])), float(square_mm), float(marker_mm),
        get_dictionary(dictionary),
    )
    board.setLegacyPattern(bool(legacy_pattern))
    return board


def charuco_layout(board) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Marker corners by id ((4, 3) mm each) and chessboard corners ((M, 3) mm) of a board.

    Coordinates are OpenCV's board frame: origin at the board's top-left outer corner, x along
    the squares' first axis, y along the second, z = 0 on the board surface.
    """
    obj = board.getObjPoints()
    ids = np.asarray(board.getIds()).ravel()
    markers = {int(i): np.asarray(c, dtype=np.float64).reshape(4, 3) for i, c in zip(ids, obj)}
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


def board_image(board, size_px: tuple[int, int], margin_px: int = 0) -> np.ndarray:
    """(H, W) uint8 image of a board (ChArUco or grid), white background."""
    return board.generateImage((int(size_px[0]), int(size_px[1])), marginSize=int(margin_px), borderBits=1)
