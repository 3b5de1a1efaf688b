"""Named point files: fiducials and targets for registration, and points digitised with a pointer.

Formats (docs/registration.md):

- CSV with a header row naming the columns ``name,x,y,z`` (any order; ``label`` for ``name``,
  ``x_mm`` for ``x`` ...), one point per row, mm.  A byte-order mark (Excel's "CSV UTF-8"), blank
  lines and lines starting with ``#`` are ignored; ``;`` or a tab separate fields when the header
  holds no comma.  Extra columns are an error, not ignored: a column the reader does not know could
  be the one that held the coordinates.  Surface points may leave out the name column.
- Slicer markups (``.mrk.json``, :func:`read_slicer_markups`), RAS converted to LPS.
- A pose log written by ``play``/``live`` (:mod:`ar_guide.io.poselog`): the points where the
  pointer's tip was held still on the patient (:func:`find_held_points`), or every tracked tip
  position for a traced surface (:func:`traced_points`).

Every problem is an :class:`InputError` naming the file, and the line where there is one.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path

import numpy as np

from ar_guide.constants import RegistrationWorkflow
from ar_guide.errors import InputError
from ar_guide.io.textfiles import read_text

#: Accepted header spellings (lower case) of each column.
_COLUMN_NAMES = {
    "name": ("name", "label", "id"),
    "x": ("x", "x_mm"),
    "y": ("y", "y_mm"),
    "z": ("z", "z_mm"),
}
MARKUPS_SUFFIX = ".mrk.json"


@dataclasses.dataclass(frozen=True, eq=False)
class PointSet:
    """Named points read from one file.

    names : unique names, in file order
    points : (N, 3) float64, mm, in the file's frame (CT LPS for Slicer markups after conversion)
    lines : (N,) the line of each point in the file (0 where the format has no lines)
    path : the file
    """

    names: tuple[str, ...]
    points: np.ndarray
    lines: tuple[int, ...]
    path: Path

    def __len__(self) -> int:
        return len(self.names)

    def by_name(self) -> dict[str, np.ndarray]:
        return dict(zip(self.names, self.points))


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def read_points(path: str | os.PathLike, *, require_names: bool = True) -> PointSet:
    """Read a point file: ``.mrk.json`` (Slicer markups) or CSV; InputError on any problem.

    require_names : False for surface points, whose CSV may have only ``x,y,z`` (named 1, 2, ...)
    """
    path = Path(path)
    if path.name.lower().endswith(".json"):
        found = read_slicer_markups(path, what="points")
        if not found:
            raise InputError("no defined control points in the markups file", path=path)
        names = tuple(n for n, _ in found)
        points = np.array([p for _, p in found], dtype=np.float64).reshape(-1, 3)
        return PointSet(names, points, (0,) * len(names), path)
    text = read_text(path, "point file")
    if is_pose_log_text(text):
        raise InputError("this is a pose log, not a point file: give the pointer (--pointer NAME "
                         "and its tool file or scene) to digitise points from it", path=path)
    return parse_point_csv(text, path, require_names=require_names)


def parse_point_csv(text: str, path: str | os.PathLike, *, require_names: bool = True) -> PointSet:
    """Parse the CSV text of a point file (see the module docstring)."""
    path = Path(path)
    text = text.lstrip("\ufeff")
    numbered = [(i, line) for i, line in enumerate(text.splitlines(), start=1)
                if line.strip() and not line.lstrip().startswith("#")]
    if not numbered:
        raise InputError("empty point file: expected a header row 'name,x,y,z' and one row per "
                         "point (mm)", path=path)
    header_line, header_text = numbered[0]
    delimiter = ","
    if "," not in header_text:
        delimiter = next((d for d in (";", "\t") if d in header_text), ",")
    rows = list(csv.reader([line for _, line in numbered], delimiter=delimiter))
    header = [h.strip().lower() for h in rows[0]]
    columns = _header_columns(header, header_line, path, require_names)
    names, points, lines, seen = [], [], [], {}
    for (line_no, _), values in zip(numbered[1:], rows[1:]):
        values = [v.strip() for v in values]
        if len(values) != len(header):
            raise InputError(f"line {line_no}: {len(values)} fields, expected {len(header)} "
                             f"({','.join(header)})", path=path)
        if "name" in columns:
            name = values[columns["name"]]
            if not name:
                raise InputError(f"line {line_no}: empty name", path=path, key=header[columns["name"]])
        else:
            name = str(len(names) + 1)
        if name in seen:
            raise InputError(f"line {line_no}: the name {name!r} appears twice (also line "
                             f"{seen[name]}); names pair the points and must be unique", path=path)
        seen[name] = line_no
        xyz = []
        for axis in "xyz":
            column = header[columns[axis]]
            raw = values[columns[axis]]
            try:
                value = float(raw)
            except ValueError:
                raise InputError(f"line {line_no}: expected a number (mm), got {raw!r}", path=path,
                                 key=column) from None
            if not math.isfinite(value):
                raise InputError(f"line {line_no}: expected a finite number (mm), got {raw!r}",
                                 path=path, key=column)
            xyz.append(value)
        names.append(name)
        points.append(xyz)
        lines.append(line_no)
    if not names:
        raise InputError("no points: the file has a header but no rows", path=path)
    array = np.array(points, dtype=np.float64).reshape(-1, 3)
    array.setflags(write=False)
    return PointSet(tuple(names), array, tuple(lines), path)


def _header_columns(header: list[str], line_no: int, path: Path, require_names: bool) -> dict:
    expected = "name,x,y,z" if require_names else "name,x,y,z (or x,y,z)"
    if header and all(_is_number(h) for h in header if h):
        raise InputError(f"line {line_no}: expected a header row '{expected}' first, got numbers",
                         path=path)
    columns = {}
    for index, column in enumerate(header):
        role = next((r for r, spellings in _COLUMN_NAMES.items() if column in spellings), None)
        if role is None:
            hint = ("; Slicer markups: read the .mrk.json file instead of a CSV export"
                    if column in ("r", "a", "s", "l", "p", "defined", "selected") else "")
            raise InputError(f"line {line_no}: unexpected column {column!r} (expected exactly "
                             f"{expected}){hint}", path=path)
        if role in columns:
            raise InputError(f"line {line_no}: column {role!r} given twice", path=path)
        columns[role] = index
    missing = [r for r in ("name", "x", "y", "z") if r not in columns and (r != "name" or require_names)]
    if missing:
        raise InputError(f"line {line_no}: missing column{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(missing)} (expected a header row '{expected}')", path=path)
    return columns


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ----------------------------------------------------------------------------------------------
# Slicer markups (.mrk.json)


def read_slicer_markups(path: str | os.PathLike, what: str = "targets") -> list[tuple[str, np.ndarray]]:
    """Control points of the point lists in a Slicer ``.mrk.json`` file, in LPS mm.

    Returns [(label, position_ct (3,) float64)].  Slicer writes ``coordinateSystem`` LPS (since
    Slicer 4.11) or RAS; RAS is converted to LPS by negating x and y.  Points whose
    ``positionStatus`` is not "defined" (placed) are skipped.  Unlabelled points are named
    "<markup name>-<n>".  Only point lists (type "Fiducial") are read: a line or curve is not a
    set of points, and reading it as one would be a silent guess.

    what : what the points become, for the messages ("targets", "points")
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        if isinstance(exc, FileNotFoundError):
            raise InputError("markups file not found", path=path) from None
        raise InputError(f"cannot read markups: {getattr(exc, 'strerror', None) or exc}",
                         path=path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                         path=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("markups"), list):
        raise InputError("not a Slicer markups file: expected a 'markups' list", path=path,
                         key="markups")
    points = []
    for i, markup in enumerate(data["markups"]):
        key = f"markups[{i}]"
        if not isinstance(markup, dict):
            raise InputError("expected a mapping", path=path, key=key)
        kind = markup.get("type")
        if kind != "Fiducial":
            raise InputError(f"only point lists (type 'Fiducial') become {what}, got {kind!r}",
                             path=path, key=f"{key}.type")
        system = markup.get("coordinateSystem")
        if system not in ("LPS", "RAS"):
            raise InputError(f"expected 'LPS' or 'RAS', got {_describe(system)}", path=path,
                             key=f"{key}.coordinateSystem")
        units = markup.get("coordinateUnits", "mm")
        if units != "mm":
            raise InputError(f"only mm is supported, got {_describe(units)}", path=path,
                             key=f"{key}.coordinateUnits")
        base = str(markup.get("name") or path.name.split(".")[0])
        control = markup.get("controlPoints") or []
        if not isinstance(control, list):
            raise InputError("expected a list", path=path, key=f"{key}.controlPoints")
        for j, cp in enumerate(control):
            ckey = f"{key}.controlPoints[{j}]"
            if not isinstance(cp, dict):
                raise InputError("expected a mapping", path=path, key=ckey)
            if cp.get("positionStatus", "defined") != "defined":
                continue
            pos = cp.get("position")
            if not (isinstance(pos, list) and len(pos) == 3 and all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                    for v in pos)):
                raise InputError(f"expected [x, y, z] (mm), got {_describe(pos)}", path=path,
                                 key=f"{ckey}.position")
            p = np.array(pos, dtype=np.float64)
            if system == "RAS":
                p[:2] = -p[:2]
            p.setflags(write=False)
            label = str(cp.get("label") or "").strip() or f"{base}-{j + 1}"
            points.append((label, p))
    names = [n for n, _ in points]
    for n in names:
        if names.count(n) > 1:
            raise InputError(f"two control points are labelled {n!r}; labels name {what} and "
                             "must be unique", path=path)
    return points


# ----------------------------------------------------------------------------------------------
# Points from a pose log


def is_pose_log_text(text: str) -> bool:
    """Whether ``text`` starts with a pose log's header (ar_guide.io.poselog)."""
    from ar_guide.io.poselog import REQUIRED_COLUMNS

    first = next((line for line in text.lstrip("\ufeff").splitlines() if line.strip()), "")
    header = {h.strip() for h in first.split(",")}
    return set(REQUIRED_COLUMNS) <= header


def is_pose_log(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is a pose log (by its header); False if it cannot be read."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return is_pose_log_text(f.readline())
    except OSError:
        return False


@dataclasses.dataclass(frozen=True, eq=False)
class TipTrack:
    """The pointer's tip in the reference frame, in the frames where both bodies were tracked OK.

    frames : (K,) int frame indices; times_s : (K,) float64 s
    tips_reference : (K, 3) float64, mm, reference-body frame
    """

    frames: np.ndarray
    times_s: np.ndarray
    tips_reference: np.ndarray


@dataclasses.dataclass(frozen=True, eq=False)
class HeldPoint:
    """A period in which the pointer's tip was held still: one digitised point.

    position_reference : (3,) float64, mm: the mean tip position over the period
    spread_mm : RMS distance of the period's tip samples from that mean
    """

    position_reference: np.ndarray
    start_s: float
    end_s: float
    first_frame: int
    last_frame: int
    samples: int
    spread_mm: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def tip_track(rows, pointer: str, tip_tool, reference: str = "reference",
              path: str | os.PathLike | None = None) -> TipTrack:
    """Tip positions in the reference frame from pose-log rows (ar_guide.io.poselog.PoseLogRow).

    tip_tool : (3,) mm, the tip in the pointer body's frame (from pivot calibration)
    ``tip_reference = inv(camera_from_reference) @ camera_from_pointer @ tip_tool``, in frames
    where both bodies are OK.  InputError when a body is missing from the log.
    """
    from ar_guide.geometry.transforms import invert_transform

    tip = np.append(np.asarray(tip_tool, dtype=np.float64).reshape(3), 1.0)
    bodies = {r.body for r in rows}
    for name, role in ((reference, "reference body"), (pointer, "pointer")):
        if name not in bodies:
            known = ", ".join(sorted(bodies)) or "none"
            raise InputError(f"the pose log has no {role} {name!r} (bodies: {known})", path=path)
    ok = {}
    for r in rows:
        if r.status == "OK" and r.camera_from_body is not None and r.body in (reference, pointer):
            ok.setdefault(r.frame, {})[r.body] = r
    frames, times, tips = [], [], []
    for frame in sorted(ok):
        pair = ok[frame]
        if reference in pair and pointer in pair:
            reference_from_camera = invert_transform(pair[reference].camera_from_body)
            tips.append((reference_from_camera @ pair[pointer].camera_from_body @ tip)[:3])
            frames.append(frame)
            times.append(pair[reference].timestamp_s)
    return TipTrack(np.array(frames, dtype=np.int64), np.array(times, dtype=np.float64),
                    np.array(tips, dtype=np.float64).reshape(-1, 3))


def _running_median(times: np.ndarray, points: np.ndarray, half_window_s: float,
                    segment: np.ndarray) -> np.ndarray:
    """Median of the points within +-half_window_s of each one, within its contiguous segment."""
    out = np.empty_like(points)
    lo = hi = 0
    n = len(times)
    for i in range(n):
        while times[i] - times[lo] > half_window_s or segment[lo] != segment[i]:
            lo += 1
        hi = max(hi, i)
        while hi + 1 < n and times[hi + 1] - times[i] <= half_window_s and segment[hi + 1] == segment[i]:
            hi += 1
        out[i] = np.median(points[lo:hi + 1], axis=0)
    return out


def find_held_points(track: TipTrack, settings: RegistrationWorkflow = RegistrationWorkflow()
                     ) -> list[HeldPoint]:
    """Periods where the tip was held still, in time order (constants.RegistrationWorkflow).

    A period: consecutive tracked samples (no gap over ``max_gap_s``) whose tip positions,
    smoothed by a running median over ``smooth_s``, all lie within ``still_mm`` of their median,
    lasting at least ``hold_s``.  Periods are grown greedily from the earliest sample and do not
    overlap; the point is the mean of the raw (unsmoothed) samples of the period.
    """
    times, tips = track.times_s, track.tips_reference
    n = len(times)
    if n == 0:
        return []
    segment = np.concatenate([[0], np.cumsum(np.diff(times) > settings.max_gap_s)])
    smooth = _running_median(times, tips, settings.smooth_s / 2.0, segment)
    held = []
    start = 0
    while start < n:
        end = start
        while end + 1 < n and segment[end + 1] == segment[start]:
            window = smooth[start:end + 2]
            centre = np.median(window, axis=0)
            if np.max(np.linalg.norm(window - centre, axis=1)) >= settings.still_mm:
                break
            end += 1
        if times[end] - times[start] >= settings.hold_s:
            raw = tips[start:end + 1]
            mean = raw.mean(axis=0)
            spread = float(np.sqrt(np.mean(np.sum((raw - mean) ** 2, axis=1))))
            mean.setflags(write=False)
            held.append(HeldPoint(mean, float(times[start]), float(times[end]),
                                  int(track.frames[start]), int(track.frames[end]), end - start + 1,
                                  spread))
            start = end + 1
        else:
            start += 1
    return held


def traced_points(track: TipTrack, min_spacing_mm: float) -> np.ndarray:
    """Tip positions of a traced surface, thinned so that consecutive kept points are at least
    ``min_spacing_mm`` apart (a tip resting in one place must not outweigh the rest).

    Returns (M, 3) float64, mm, reference frame.
    """
    kept = []
    last = None
    for p in track.tips_reference:
        if last is None or np.linalg.norm(p - last) >= min_spacing_mm:
            kept.append(p)
            last = p
    return np.array(kept, dtype=np.float64).reshape(-1, 3)
