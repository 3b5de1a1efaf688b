"""Rigid bodies of ArUco markers: ChArUco boards, marker grids, marker maps, SciKit-Surgery files.

A :class:`RigidBody` holds, for each marker id, the marker's four corners in the body frame
(mm, OpenCV corner order: the marker's top-left, top-right, bottom-right, bottom-left as seen
from the front, i.e. clockwise in the image).  OpenCV's board frame has its origin at the
board's top-left outer corner, x to the right, y down the printed board and z into it, so a
board seen face-on has ``camera_from_body`` close to a pure translation.

SciKit-Surgery rigid-body files (``reference.txt``, ``pointer.txt`` of scikit-surgeryarucotracker)
list the corners in the same order: fitting frame 0 of their ``multipattern.avi`` with the
rows as read gives 0.9 px RMS, any other order 24-39 px (tests/test_tracking_real_data.py).

Scene and board files use a YAML shorthand, parsed by :func:`body_from_config`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from pathlib import Path

import numpy as np

from ar_guide.constants import BodyTolerances
from ar_guide.errors import InputError
from ar_guide.io.textfiles import load_yaml, read_text
from ar_guide.tracking import aruco

BODY_TYPES = ("charuco", "aruco_grid", "marker_map", "sksurgery")
_TOL = BodyTolerances()


@dataclasses.dataclass(frozen=True, eq=False)
class RigidBody:
    """Markers fixed to one rigid object, with their corners in the body frame.

    name : the body's name in the scene ("reference", a tool's name)
    dictionary : canonical ArUco dictionary name, e.g. "DICT_6X6_250"
    markers_body : marker id -> (4, 3) float64 corners in the body frame, mm, OpenCV order
    charuco_corners_body : (M, 3) float64 chessboard corners (mm) of a ChArUco board, else None;
        row i is ChArUco corner id i
    board : the cv2 board object (ChArUco corner interpolation, printing), else None; opaque
    source : the file the body came from, for messages
    """

    name: str
    dictionary: str
    markers_body: dict
    charuco_corners_body: np.ndarray | None = None
    board: object | None = None
    source: str | None = None

    def __post_init__(self):
        dictionary = aruco.canonical_dictionary_name(self.dictionary, path=self.source)
        object.__setattr__(self, "dictionary", dictionary)
        markers = _checked_markers(self.markers_body, dictionary, self.source, key="markers")
        object.__setattr__(self, "markers_body", markers)
        if self.charuco_corners_body is not None:
            corners = np.array(self.charuco_corners_body, dtype=np.float64).reshape(-1, 3)
            if corners.shape[0] == 0 or not np.all(np.isfinite(corners)):
                raise InputError("ChArUco corners must be a non-empty (M, 3) array of finite numbers",
                                 path=self.source, key="charuco_corners")
            corners.setflags(write=False)
            object.__setattr__(self, "charuco_corners_body", corners)

    # ------------------------------------------------------------------ derived geometry

    @property
    def marker_ids(self) -> tuple[int, ...]:
        """Sorted marker ids."""
        return tuple(sorted(self.markers_body))

    @property
    def is_charuco(self) -> bool:
        return self.charuco_corners_body is not None and self.board is not None

    @functools.cached_property
    def points_body(self) -> np.ndarray:
        """(K, 3) every marker corner (by sorted id) then every ChArUco corner, mm."""
        parts = [self.markers_body[i] for i in self.marker_ids]
        if self.charuco_corners_body is not None:
            parts.append(self.charuco_corners_body)
        out = np.concatenate(parts, axis=0)
        out.setflags(write=False)
        return out

    @functools.cached_property
    def centre_body(self) -> np.ndarray:
        """(3,) centroid of all corners, mm: the point whose motion the jump gate watches."""
        out = self.points_body.mean(axis=0)
        out.setflags(write=False)
        return out

    @functools.cached_property
    def extent_mm(self) -> float:
        """Largest distance between two corners of the body (its diameter), mm."""
        p = self.points_body
        d = p[:, None, :] - p[None, :, :]
        return float(np.sqrt(np.max(np.einsum("ijk,ijk->ij", d, d))))

    @functools.cached_property
    def marker_side_mm(self) -> float:
        """Shortest marker side of the body, mm (sets the smallest marker the detector must find)."""
        return float(min(_side_lengths(c).min() for c in self.markers_body.values()))

    @functools.cached_property
    def plane_distance_mm(self) -> float:
        """Largest distance of a corner from the body's best-fit plane, mm."""
        return plane_fit(self.points_body)[1]

    @property
    def is_planar(self) -> bool:
        """All corners within BodyTolerances.planar_mm of one plane (IPPE applies)."""
        return self.plane_distance_mm <= _TOL.planar_mm

    def __repr__(self) -> str:
        kind = "ChArUco" if self.is_charuco else ("planar" if self.is_planar else "3-D")
        return (f"RigidBody({self.name!r}, {self.dictionary}, {len(self.markers_body)} markers, {kind}, "
                f"extent {self.extent_mm:.1f} mm)")


def plane_fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Best-fit plane of (N, 3) points: ``plane_from_points`` (4, 4) with the plane at z = 0, and
    the largest distance (mm) of a point from it.  The plane frame's x axis follows the first
    principal direction; z is the normal."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    centre = p.mean(axis=0)
    _, s, vt = np.linalg.svd(p - centre, full_matrices=True)
    axes = vt.copy()
    if np.linalg.det(axes) < 0:
        axes[2] = -axes[2]
    distance = float(np.max(np.abs((p - centre) @ axes[2]))) if len(p) else 0.0
    plane_from_points = np.eye(4)
    plane_from_points[:3, :3] = axes
    plane_from_points[:3, 3] = -axes @ centre
    return plane_from_points, distance


def _side_lengths(corners: np.ndarray) -> np.ndarray:
    return np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)


def _checked_markers(markers, dictionary: str, source, key: str) -> dict:
    """Validated, read-only copies: ids within the dictionary, (4, 3) finite corners, real sides."""
    if not isinstance(markers, dict) or not markers:
        raise InputError("a body needs at least one marker", path=source, key=key)
    size = aruco.dictionary_size(dictionary)
    out = {}
    for marker_id, corners in markers.items():
        if isinstance(marker_id, bool) or not isinstance(marker_id, (int, np.integer)):
            raise InputError(f"marker id must be an integer, got {marker_id!r}", path=source, key=key)
        marker_id = int(marker_id)
        if not 0 <= marker_id < size:
            raise InputError(f"marker id {marker_id} is not in {dictionary} (ids 0..{size - 1})",
                             path=source, key=key)
        try:
            c = np.array(corners, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"marker {marker_id}: corners must be 4 rows of [x, y, z] numbers",
                             path=source, key=key) from None
        if c.shape != (4, 3):
            raise InputError(f"marker {marker_id}: corners must be 4 rows of [x, y, z] (shape (4, 3)), "
                             f"got shape {c.shape}", path=source, key=key)
        if not np.all(np.isfinite(c)):
            raise InputError(f"marker {marker_id}: corners contain NaN or infinite values", path=source, key=key)
        if _side_lengths(c).min() < _TOL.min_marker_side_mm:
            raise InputError(f"marker {marker_id}: a side is shorter than {_TOL.min_marker_side_mm:g} mm "
                             f"(corners repeated, or not in millimetres?)", path=source, key=key)
        c.setflags(write=False)
        out[marker_id] = c
    return out


# ---------------------------------------------------------------------------- constructors


def charuco_body(name: str, squares_xy, square_mm: float, marker_mm: float, dictionary: str,
                 legacy_pattern: bool = False, source=None) -> RigidBody:
    """A ChArUco board (OpenCV's layout and board frame; markers ids 0..n-1).

    squares_xy : (squares along x, squares along y), each >= 2
    square_mm, marker_mm : chessboard square and marker sides, 0 < marker_mm < square_mm
    legacy_pattern : the layout of OpenCV before 4.6 for boards with an even number of rows
    """
    nx, ny = (int(v) for v in squares_xy)
    if nx < 2 or ny < 2:
        raise InputError(f"a ChArUco board needs at least 2x2 squares, got {nx}x{ny}", path=source, key="squares")
    if not (square_mm > 0 and marker_mm > 0):
        raise InputError("square_mm and marker_mm must be positive", path=source, key="square_mm")
    if marker_mm >= square_mm:
        raise InputError(f"marker_mm ({marker_mm:g}) must be smaller than square_mm ({square_mm:g})",
                         path=source, key="marker_mm")
    dictionary = aruco.canonical_dictionary_name(dictionary, path=source)
    needed = (nx * ny) // 2
    if needed > aruco.dictionary_size(dictionary):
        raise InputError(f"a {nx}x{ny} ChArUco board needs {needed} markers but {dictionary} has only "
                         f"{aruco.dictionary_size(dictionary)}", path=source, key="dictionary")
    board = aruco.make_charuco_board((nx, ny), square_mm, marker_mm, dictionary, legacy_pattern)
    markers, chessboard = aruco.charuco_layout(board)
    return RigidBody(name, dictionary, markers, chessboard, board, None if source is None else str(source))


def aruco_grid_body(name: str, markers_xy, marker_mm: float, separation_mm: float, dictionary: str,
                    first_id: int = 0, source=None) -> RigidBody:
    """A grid of markers (OpenCV GridBoard layout: marker (col, row) has its top-left corner at
    (col, row) * (marker_mm + separation_mm), ids row by row from ``first_id``)."""
    nx, ny = (int(v) for v in markers_xy)
    if nx < 1 or ny < 1:
        raise InputError(f"a marker grid needs at least 1x1 markers, got {nx}x{ny}", path=source, key="markers")
    if not marker_mm > 0:
        raise InputError("marker_mm must be positive", path=source, key="marker_mm")
    if not separation_mm > 0:
        raise InputError("separation_mm must be positive (markers must not touch)", path=source, key="separation_mm")
    dictionary = aruco.canonical_dictionary_name(dictionary, path=source)
    first_id = int(first_id)
    size = aruco.dictionary_size(dictionary)
    if first_id < 0 or first_id + nx * ny > size:
        raise InputError(f"ids {first_id}..{first_id + nx * ny - 1} do not fit {dictionary} (ids 0..{size - 1})",
                         path=source, key="first_id")
    board = aruco.make_grid_board((nx, ny), marker_mm, separation_mm, dictionary, first_id)
    markers = aruco.board_markers(board)
    return RigidBody(name, dictionary, markers, None, board, None if source is None else str(source))


def marker_map_body(name: str, dictionary: str, markers: dict, source=None) -> RigidBody:
    """A body from explicit corners: marker id -> (4, 3) corners in the body frame (mm)."""
    return RigidBody(name, dictionary, dict(markers), None, None, None if source is None else str(source))


def load_sksurgery_body(path, name: str, dictionary: str) -> RigidBody:
    """Read a SciKit-Surgery rigid-body file: per row id, centre xyz, 4 corners xyz (mm).

    Numbers are separated by whitespace or commas; blank lines and lines starting with # are
    skipped.  The corners are in OpenCV order already (see the module docstring).
    """
    path = Path(path)
    text = read_text(path, "rigid-body file")
    markers = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            values = [float(v) for v in line.replace(",", " ").split()]
        except ValueError:
            raise InputError(f"line {number}: expected 16 numbers (id, centre xyz, 4 corners xyz), "
                             f"got {line[:60]!r}", path=path) from None
        if len(values) != 16:
            raise InputError(f"line {number}: expected 16 numbers (id, centre xyz, 4 corners xyz), "
                             f"got {len(values)}", path=path)
        if not values[0].is_integer():
            raise InputError(f"line {number}: marker id must be an integer, got {values[0]:g}", path=path)
        marker_id = int(values[0])
        if marker_id in markers:
            raise InputError(f"line {number}: marker id {marker_id} appears twice", path=path)
        centre = np.array(values[1:4])
        corners = np.array(values[4:16]).reshape(4, 3)
        mismatch = float(np.linalg.norm(corners.mean(axis=0) - centre))
        if mismatch > _TOL.centre_mismatch_mm:
            raise InputError(f"line {number}: marker {marker_id} centre {centre.tolist()} is {mismatch:.3g} mm "
                             f"from the mean of its corners (columns out of order?)", path=path)
        markers[marker_id] = corners
    if not markers:
        raise InputError("no markers in rigid-body file", path=path)
    return RigidBody(name, aruco.canonical_dictionary_name(dictionary, path=path), markers, None, None, str(path))


# ---------------------------------------------------------------------------- YAML shorthand

_COMMON_KEYS = {"type", "name", "description"}
_KEYS = {
    "charuco": {"squares", "square_mm", "marker_mm", "dictionary", "legacy_pattern"},
    "aruco_grid": {"markers", "marker_mm", "separation_mm", "dictionary", "first_id"},
    "marker_map": {"dictionary", "markers"},
    "sksurgery": {"file", "dictionary"},
}
_MAX_FILE_DEPTH = 4


def body_from_config(config, base_dir, name: str, source=None, key: str | None = None) -> RigidBody:
    """A RigidBody from a scene's or board file's shorthand (see DESIGN.md, "Files").

    config : the mapping read from YAML, one of
        {type: charuco, squares: [nx, ny], square_mm, marker_mm, dictionary, legacy_pattern: false}
        {type: aruco_grid, markers: [nx, ny], marker_mm, separation_mm, dictionary, first_id: 0}
        {type: marker_map, dictionary, markers: [{id, corners: [[x, y, z] x 4]}, ...]}
        {type: sksurgery, file: reference.txt, dictionary}
        {file: board.yaml}   (a board file holding one of the above)
    base_dir : folder that relative file names are resolved against (the scene file's folder)
    name : the body's name; source : the file ``config`` came from (for messages)
    key : where ``config`` sits in that file (default ``name``), e.g. "reference" or "tools[0].body"

    Raises InputError naming the file and key for every problem.
    """
    return _body_from_config(config, Path(base_dir), name, source, key or name, depth=0)


def _body_from_config(config, base_dir: Path, name, source, key, depth):
    if not isinstance(config, dict):
        raise InputError(f"expected a mapping with 'type' ({', '.join(BODY_TYPES)}) or 'file', "
                         f"got {type(config).__name__}", path=source, key=key)
    kind = config.get("type")
    if kind is None:
        if "file" not in config:
            raise InputError(f"missing 'type' ({', '.join(BODY_TYPES)}) or 'file' (a board file)",
                             path=source, key=key)
        extra = set(config) - {"file", "name", "description"}
        if extra:
            raise InputError(f"a board-file reference holds only 'file'; unexpected {sorted(extra)} "
                             f"(give either 'file' or a 'type' with its fields)", path=source, key=key)
        return _body_from_board_file(config["file"], base_dir, name, source, key, depth)
    if not isinstance(kind, str):
        raise InputError(f"expected one of {', '.join(BODY_TYPES)}, got {kind!r}", path=source, key=f"{key}.type")
    if kind == "chessboard":
        raise InputError("a chessboard has no coded markers, so it cannot be tracked as a rigid body "
                         "(it is a camera-calibration target); use charuco, aruco_grid, marker_map or "
                         "sksurgery", path=source, key=f"{key}.type")
    if kind not in _KEYS:
        raise InputError(f"unknown body type {kind!r}; expected one of {', '.join(BODY_TYPES)}",
                         path=source, key=f"{key}.type")
    allowed = _KEYS[kind] | _COMMON_KEYS
    unknown = sorted(set(config) - allowed)
    if unknown:
        raise InputError(f"unexpected key {unknown[0]!r} for a {kind} body; expected "
                         f"{', '.join(sorted(_KEYS[kind]))}", path=source, key=f"{key}.{unknown[0]}")
    fields = _Fields(config, source, key)
    try:
        dictionary = aruco.canonical_dictionary_name(fields.string("dictionary"), path=source)
    except InputError as exc:
        raise InputError(exc.detail, path=source, key=f"{key}.dictionary") from None
    if kind == "charuco":
        squares = fields.int_pair("squares", minimum=2)
        square_mm = fields.positive("square_mm")
        marker_mm = fields.positive("marker_mm")
        if marker_mm >= square_mm:
            raise InputError(f"must be smaller than square_mm ({square_mm:g}), got {marker_mm:g}",
                             path=source, key=f"{key}.marker_mm")
        legacy = fields.boolean("legacy_pattern", default=False)
        return _with_key(source, key, charuco_body, name, squares, square_mm, marker_mm, dictionary, legacy,
                         source=source)
    if kind == "aruco_grid":
        grid = fields.int_pair("markers", minimum=1)
        marker_mm = fields.positive("marker_mm")
        separation_mm = fields.positive("separation_mm")
        first_id = fields.integer("first_id", default=0, minimum=0)
        return _with_key(source, key, aruco_grid_body, name, grid, marker_mm, separation_mm, dictionary,
                         first_id, source=source)
    if kind == "marker_map":
        markers = _marker_list(config.get("markers"), source, f"{key}.markers")
        return _with_key(source, key, marker_map_body, name, dictionary, markers, source=source)
    # sksurgery
    file_name = fields.string("file")
    return load_sksurgery_body(_resolve(file_name, base_dir, source, f"{key}.file"), name, dictionary)


def _with_key(file, key, function, *args, **kwargs):
    """Call a constructor; prefix the key of an InputError it raises about ``file`` with ``key``."""
    try:
        return function(*args, **kwargs)
    except InputError as exc:
        same_file = exc.path == (None if file is None else os.fspath(file))
        if same_file and exc.key is not None:
            raise InputError(exc.detail, path=exc.path, key=f"{key}.{exc.key}") from None
        raise


def _resolve(file_name, base_dir: Path, source, key) -> Path:
    if not isinstance(file_name, str) or not file_name.strip():
        raise InputError("expected a file name", path=source, key=key)
    path = Path(file_name).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    if not path.is_file():
        raise InputError(f"file not found: {path}", path=source, key=key)
    return path


def _body_from_board_file(file_name, base_dir, name, source, key, depth):
    if depth >= _MAX_FILE_DEPTH:
        raise InputError(f"board files refer to each other more than {_MAX_FILE_DEPTH} deep (a loop?)",
                         path=source, key=f"{key}.file")
    path = _resolve(file_name, base_dir, source, f"{key}.file")
    data = load_yaml(path, "board file")
    if isinstance(data, dict) and isinstance(data.get("board"), dict) and "type" not in data:
        data = data["board"]  # a board file may hold its shorthand under 'board'
    return _body_from_config(data, path.parent, name, path, "board", depth + 1)


def _marker_list(items, source, key) -> dict:
    if not isinstance(items, list) or not items:
        raise InputError("expected a list of {id, corners} entries", path=source, key=key)
    markers = {}
    for index, item in enumerate(items):
        where = f"{key}[{index}]"
        if not isinstance(item, dict) or "id" not in item or "corners" not in item:
            raise InputError("expected a mapping with 'id' and 'corners'", path=source, key=where)
        unknown = sorted(set(item) - {"id", "corners"})
        if unknown:
            raise InputError(f"unexpected key {unknown[0]!r}; expected id and corners", path=source, key=where)
        marker_id = item["id"]
        if isinstance(marker_id, bool) or not isinstance(marker_id, int):
            raise InputError(f"expected an integer, got {marker_id!r}", path=source, key=f"{where}.id")
        if marker_id in markers:
            raise InputError(f"duplicate marker id {marker_id}", path=source, key=f"{where}.id")
        corners = item["corners"]
        ok = (isinstance(corners, list) and len(corners) == 4
              and all(isinstance(c, list) and len(c) == 3 and all(_is_number(v) for v in c) for c in corners))
        if not ok:
            raise InputError("expected 4 corners of [x, y, z] numbers (mm)", path=source, key=f"{where}.corners")
        markers[marker_id] = np.array(corners, dtype=np.float64)
    return markers


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Fields:
    """Typed access to a shorthand's fields with InputErrors naming file and key."""

    def __init__(self, config: dict, source, key: str):
        self.config = config
        self.source = source
        self.key = key

    def _get(self, field, default=dataclasses.MISSING):
        if field not in self.config:
            if default is dataclasses.MISSING:
                raise InputError("missing", path=self.source, key=f"{self.key}.{field}")
            return default
        return self.config[field]

    def _fail(self, field, expected, value):
        raise InputError(f"expected {expected}, got {value!r}", path=self.source, key=f"{self.key}.{field}")

    def string(self, field):
        value = self._get(field)
        if not isinstance(value, str) or not value.strip():
            self._fail(field, "a string", value)
        return value

    def positive(self, field):
        value = self._get(field)
        if not _is_number(value) or not math.isfinite(value) or value <= 0:
            self._fail(field, "a positive number (mm)", value)
        return float(value)

    def integer(self, field, default=dataclasses.MISSING, minimum=None):
        value = self._get(field, default)
        if isinstance(value, bool) or not isinstance(value, int) or (minimum is not None and value < minimum):
            self._fail(field, "an integer" + ("" if minimum is None else f" >= {minimum}"), value)
        return value

    def boolean(self, field, default=dataclasses.MISSING):
        value = self._get(field, default)
        if not isinstance(value, bool):
            self._fail(field, "true or false", value)
        return value

    def int_pair(self, field, minimum):
        value = self._get(field)
        if (not isinstance(value, (list, tuple)) or len(value) != 2
                or any(isinstance(v, bool) or not isinstance(v, int) or v < minimum for v in value)):
            self._fail(field, f"two integers >= {minimum}, e.g. [5, 7]", value)
        return int(value[0]), int(value[1])
