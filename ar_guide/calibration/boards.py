"""Calibration boards: the board file, its geometry in mm, and its printed pattern as rectangles.

Board files are YAML (DESIGN.md, "Files"; used everywhere a board is needed)::

    type: charuco            # or: chessboard, aruco_grid
    squares: [5, 7]          # charuco: squares along x and y
    square_mm: 40
    marker_mm: 20
    dictionary: DICT_6X6_250
    legacy_pattern: false    # charuco: OpenCV's pre-4.6 layout (matters for an even number of rows)
    # chessboard instead: type: chessboard, inner_corners: [9, 6], square_mm: 25
    # aruco_grid:         type: aruco_grid, markers: [4, 5], marker_mm: 30, separation_mm: 6,
    #                     dictionary: DICT_4X4_50, first_id: 0

ChArUco and ArUco-grid boards are parsed by the tracking module (one parser for every board,
:func:`ar_guide.tracking.bodies.body_from_config`); chessboards here.  Coordinates are OpenCV's
board frame: x to the right along the printed rows, y down, z = 0 on the board, mm.  For a
chessboard the origin is its first inner corner, as ``findChessboardCorners`` numbers them.
"""

from __future__ import annotations

import dataclasses
import math
import os
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError
from ar_guide.io.textfiles import load_yaml
from ar_guide.tracking import aruco
from ar_guide.tracking.bodies import RigidBody, body_from_config

BOARD_TYPES = ("charuco", "chessboard", "aruco_grid")
_CHESSBOARD_KEYS = {"type", "inner_corners", "square_mm", "name", "description"}


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationBoard:
    """A printed calibration target.

    kind : "charuco", "chessboard" or "aruco_grid"
    parameters : the board file's values, normalised (for reports and the calibration file)
    body : the markers as a RigidBody (charuco, aruco_grid), else None
    inner_corners : (columns, rows) of a chessboard, else None
    square_mm : chessboard and charuco square side
    source : the board file, for messages
    """

    kind: str
    parameters: dict
    body: RigidBody | None = None
    inner_corners: tuple[int, int] | None = None
    square_mm: float | None = None
    source: str | None = None

    # -- geometry -------------------------------------------------------------------------

    @property
    def corners_mm(self) -> np.ndarray:
        """(N, 3) float64: every point a view can provide, indexed by corner id.

        charuco: the chessboard (saddle) corners, ChArUco corner ids; chessboard: the inner
        corners row by row (findChessboardCorners' order); aruco_grid: marker corners, id
        ``4 * k + c`` for the k-th marker of the board (sorted by marker id) and its corner c.
        """
        if self.kind == "charuco":
            return self.body.charuco_corners_body
        if self.kind == "chessboard":
            cols, rows = self.inner_corners
            j, i = np.mgrid[0:rows, 0:cols]
            return np.column_stack([i.ravel() * self.square_mm, j.ravel() * self.square_mm,
                                    np.zeros(rows * cols)]).astype(np.float64)
        return np.concatenate([self.body.markers_body[m] for m in self.body.marker_ids])

    @property
    def extent_mm(self) -> tuple[float, float, float, float]:
        """(x0, y0, x1, y1) of the printed pattern in the board frame, mm (no quiet zone)."""
        if self.kind == "chessboard":
            s = self.square_mm
            cols, rows = self.inner_corners
            return (-s, -s, cols * s, rows * s)
        if self.kind == "charuco":
            nx, ny = self.parameters["squares"]
            s = self.square_mm
            return (0.0, 0.0, nx * s, ny * s)
        points = np.concatenate(list(self.body.markers_body.values()))
        return (float(points[:, 0].min()), float(points[:, 1].min()),
                float(points[:, 0].max()), float(points[:, 1].max()))

    @property
    def size_mm(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.extent_mm
        return (x1 - x0, y1 - y0)

    def black_rectangles_mm(self) -> np.ndarray:
        """(R, 4) float64 (x0, y0, x1, y1) of every black area of the printed pattern, mm.

        The exact vector description of the board: printable as SVG/PDF, rasterised as PNG,
        rendered in synthetic views.  Marker bits are merged into horizontal runs per row.
        """
        rects = []
        if self.kind in ("chessboard", "charuco"):
            x0, y0, x1, y1 = self.extent_mm
            s = self.square_mm
            nx, ny = int(round((x1 - x0) / s)), int(round((y1 - y0) / s))
            white = set()
            if self.kind == "charuco":
                for corners in self.body.markers_body.values():
                    centre = corners[:, :2].mean(axis=0)
                    white.add((int((centre[0] - x0) // s), int((centre[1] - y0) // s)))
            for j in range(ny):
                for i in range(nx):
                    black = (i, j) not in white if self.kind == "charuco" else (i + j) % 2 == 0
                    if black:
                        rects.append((x0 + i * s, y0 + j * s, x0 + (i + 1) * s, y0 + (j + 1) * s))
        if self.body is not None:
            for marker_id, corners in self.body.markers_body.items():
                rects.extend(_marker_rectangles(self.body.dictionary, marker_id, corners))
        return np.array(rects, dtype=np.float64).reshape(-1, 4)

    def describe(self) -> str:
        """One line a person reads: "ChArUco 5x7 squares, 40/20 mm, DICT_6X6_250"."""
        p = self.parameters
        if self.kind == "charuco":
            legacy = ", legacy layout" if p.get("legacy_pattern") else ""
            return (f"ChArUco {p['squares'][0]}x{p['squares'][1]} squares, {p['square_mm']:g}/{p['marker_mm']:g} mm, "
                    f"{p['dictionary']}{legacy}")
        if self.kind == "chessboard":
            return f"chessboard {p['inner_corners'][0]}x{p['inner_corners'][1]} inner corners, {p['square_mm']:g} mm"
        return (f"ArUco grid {p['markers'][0]}x{p['markers'][1]} markers, {p['marker_mm']:g} mm, "
                f"{p['separation_mm']:g} mm apart, {p['dictionary']}, ids from {p.get('first_id', 0)}")


def _marker_rectangles(dictionary: str, marker_id: int, corners: np.ndarray) -> list:
    cells = aruco.marker_cells(dictionary, marker_id)
    n = cells.shape[0]
    x0, y0 = corners[0, 0], corners[0, 1]
    side_x = (corners[1, 0] - corners[0, 0]) / n
    side_y = (corners[3, 1] - corners[0, 1]) / n
    if abs(corners[1, 1] - corners[0, 1]) > 1e-9 or abs(corners[3, 0] - corners[0, 0]) > 1e-9:
        raise ValueError("board markers must be axis-aligned in the board frame")
    rects = []
    for r in range(n):
        c = 0
        while c < n:
            if cells[r, c]:
                start = c
                while c < n and cells[r, c]:
                    c += 1
                rects.append((x0 + start * side_x, y0 + r * side_y, x0 + c * side_x, y0 + (r + 1) * side_y))
            else:
                c += 1
    return rects


def board_from_mapping(data, source=None, base_dir=None) -> CalibrationBoard:
    """A CalibrationBoard from a board file's mapping; InputError naming ``source`` and the key.

    The shorthand may sit at the top of the file or under ``board:``; error keys name it as it
    is in the file ('marker_mm', or 'board.marker_mm' when nested).
    """
    if not isinstance(data, dict):
        raise InputError(f"expected a mapping with 'type' ({', '.join(BOARD_TYPES)})", path=source)
    prefix = ""
    if isinstance(data.get("board"), dict) and "type" not in data:
        data, prefix = data["board"], "board."
    kind = data.get("type")
    if kind is None:
        raise InputError(f"missing; expected one of {', '.join(BOARD_TYPES)}", path=source, key=prefix + "type")
    if kind not in BOARD_TYPES:
        raise InputError(f"expected one of {', '.join(BOARD_TYPES)}, got {kind!r}", path=source, key=prefix + "type")
    if kind == "chessboard":
        return _chessboard(data, source, prefix)
    base = Path(base_dir) if base_dir is not None else (Path(source).parent if source else Path.cwd())
    try:
        body = body_from_config(data, base, name="board", source=source, key="board")
    except InputError as exc:
        # body_from_config names keys "board.<key>"; say where they are in this file.
        same_file = exc.path == (None if source is None else os.fspath(source))
        if same_file and exc.key is not None and exc.key.startswith("board."):
            raise InputError(exc.detail, path=exc.path, key=prefix + exc.key[len("board."):]) from None
        raise
    params = {k: v for k, v in data.items() if k not in ("name", "description")}
    params["dictionary"] = body.dictionary
    if kind == "charuco":
        params.setdefault("legacy_pattern", False)
        params["squares"] = [int(v) for v in params["squares"]]
        return CalibrationBoard("charuco", params, body=body, square_mm=float(params["square_mm"]),
                                source=None if source is None else os.fspath(source))
    params.setdefault("first_id", 0)
    return CalibrationBoard("aruco_grid", params, body=body, source=None if source is None else os.fspath(source))


def _chessboard(data, source, prefix="") -> CalibrationBoard:
    unknown = sorted(set(data) - _CHESSBOARD_KEYS)
    if unknown:
        raise InputError("unexpected key for a chessboard; expected inner_corners and square_mm",
                         path=source, key=prefix + unknown[0])
    corners = data.get("inner_corners")
    if (not isinstance(corners, (list, tuple)) or len(corners) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 2 for v in corners)):
        raise InputError(f"expected two integers >= 2 (inner corners along x and y), got {corners!r}",
                         path=source, key=prefix + "inner_corners")
    square = data.get("square_mm")
    if isinstance(square, bool) or not isinstance(square, (int, float)) or not 0 < square < math.inf:
        raise InputError(f"expected a positive number (mm), got {square!r}", path=source, key=prefix + "square_mm")
    cols, rows = int(corners[0]), int(corners[1])
    if cols == rows:
        raise InputError(f"a square chessboard ({cols}x{rows}) has no defined orientation and its views cannot "
                         f"be told apart from a rotated one; use different counts, e.g. [{cols + 1}, {rows}]",
                         path=source, key=prefix + "inner_corners")
    params = {"type": "chessboard", "inner_corners": [cols, rows], "square_mm": float(square)}
    return CalibrationBoard("chessboard", params, inner_corners=(cols, rows), square_mm=float(square),
                            source=None if source is None else os.fspath(source))


def load_board(path: str | os.PathLike) -> CalibrationBoard:
    """Read a board file (YAML); InputError naming the file and key on any problem."""
    path = Path(path)
    return board_from_mapping(load_yaml(path, "board file"), source=path, base_dir=path.parent)
