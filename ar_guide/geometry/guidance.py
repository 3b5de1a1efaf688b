"""Guidance of a tracked pointer along a planned path, and where a path runs inside the anatomy.

Pure numpy, no I/O.  Every point is in one frame (the CT frame, LPS, mm, in the pipeline); a
path runs from ``entry`` to ``target``, with unit direction ``d = (target - entry) / |target - entry|``.

Pointer guidance (what SlicerIGT's Viewpoint bull's-eye and MITK's needle projection show,
FIELD-NOTES.md, "Display and depth cues"):

- tip to target: the straight distance |target - tip|;
- depth to go: ``(target - tip) . d``, the tip's remaining distance to the target measured along the
  path (negative once the tip is past the target's plane);
- lateral offset: the component of ``tip - target`` across the path, in a fixed 2-D basis
  (right, up) of the plane perpendicular to the path, and its length (the tip's distance from
  the path's line);
- angle: between the tool's axis (from the markers' centre to the tip, as the pipeline draws it)
  and ``d``;
- the axis extended to the target's depth: where the line ``tip + s * axis`` meets the plane
  through the target perpendicular to the path, as the same 2-D offset.  With the tip on the
  path, its distance from the centre is ``depth * tan(angle)``: where the tip would end if pushed
  on along its current axis.

The bull's-eye basis is fixed per path (it depends on the path and the patient's axes only,
never on the tool), so "left" and "right" in the inset do not spin as the tool turns: "up" is the
patient's superior direction (+z in LPS) projected across the path, or anterior (-y) when the
path runs nearly superior-inferior; "right" completes a right-handed view looking down the path
from the entry (x right, y down, z along the path, as the OpenCV camera).

Path depth cue: :func:`path_segments` splits a path into parts inside and outside closed anatomy
meshes, from the crossings of the path's line with each mesh's triangles (Moller and Trumbore
1997, "Fast, minimum storage ray/triangle intersection", J. Graphics Tools 2(1)).  Along the
whole (unbounded) line a closed, outward-oriented surface is entered where the line meets a
triangle against its normal and left where it meets one along it; the running count of those
signed crossings from far away (outside) is the winding number, positive inside.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

#: Patient axes in the CT frame (LPS: x to the patient's left, y posterior, z superior).
SUPERIOR_CT = np.array([0.0, 0.0, 1.0])
ANTERIOR_CT = np.array([0.0, -1.0, 0.0])
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("S", "I"))


# -- the bull's-eye basis ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class PathBasis:
    """A planned path and the fixed 2-D basis of its bull's-eye.

    entry, target : (3,) float64, mm (frame of the path, the CT frame in the pipeline)
    direction : (3,) unit vector from entry to target
    right, up : (3,) unit vectors across the path, right = direction x up: looking down the path
        from the entry, "right" is on the right and "up" is up; (right, -up, direction) is
        right-handed, like the OpenCV camera's (x, y, z)
    length_mm : |target - entry|
    """

    entry: np.ndarray
    target: np.ndarray
    direction: np.ndarray
    right: np.ndarray
    up: np.ndarray
    length_mm: float

    def labels(self) -> dict[str, str]:
        """Anatomical letter of each edge of the bull's-eye (CT frame, LPS): keys "right",
        "left", "up", "down", e.g. {"right": "L", "left": "R", "up": "S", "down": "I"}."""
        return {"right": anatomical_letter(self.right), "left": anatomical_letter(-self.right),
                "up": anatomical_letter(self.up), "down": anatomical_letter(-self.up)}


def anatomical_letter(vector_ct) -> str:
    """Letter of the patient axis nearest a CT (LPS) direction: L, R, P, A, S or I."""
    v = np.asarray(vector_ct, dtype=np.float64).reshape(3)
    k = int(np.argmax(np.abs(v)))
    return _LPS_LETTERS[k][0 if v[k] >= 0 else 1]


def path_basis(entry_ct, target_ct, min_up_angle_deg: float = 30.0) -> PathBasis:
    """The bull's-eye basis of a path (module docstring); ValueError for a zero-length path.

    "up" is superior projected across the path, unless the path is within ``min_up_angle_deg``
    of the superior-inferior axis; then anterior projected across it.
    """
    entry = np.asarray(entry_ct, dtype=np.float64).reshape(3).copy()
    target = np.asarray(target_ct, dtype=np.float64).reshape(3).copy()
    span = target - entry
    length = float(np.linalg.norm(span))
    if not math.isfinite(length) or length <= 0.0:
        raise ValueError(f"a path needs distinct, finite entry and target, got {entry} and {target}")
    d = span / length
    hint = SUPERIOR_CT
    if abs(float(d @ SUPERIOR_CT)) > math.cos(math.radians(min_up_angle_deg)):
        hint = ANTERIOR_CT
    up = hint - (hint @ d) * d
    up /= np.linalg.norm(up)
    right = np.cross(d, up)
    for a in (entry, target, d, up, right):
        a.setflags(write=False)
    return PathBasis(entry, target, d, right, up, length)


# -- pointer guidance ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class PointerGuidance:
    """Where a tracked tool's tip and axis are relative to a planned path (module docstring).

    tip_to_target_mm : straight distance from the tip to the target
    depth_to_go_mm : (target - tip) . direction; negative past the target's plane
    along_path_mm : (tip - entry) . direction: how far along the path the tip is
    lateral_mm : distance of the tip from the path's line (= |offset_mm|)
    angle_deg : angle between the tool's axis and the path's direction, 0..180; NaN without an axis
    offset_mm : (2,) float64, the tip's offset across the path as (right, up), mm
    axis_offset_mm : (2,) float64, the axis extended to the target's depth plane as (right, up),
        mm; None when the tip is past that plane or the axis is more than ``max_extension_deg``
        off the path (it would meet the plane far away or behind the tip)
    """

    tip_to_target_mm: float
    depth_to_go_mm: float
    along_path_mm: float
    lateral_mm: float
    angle_deg: float
    offset_mm: np.ndarray
    axis_offset_mm: np.ndarray | None


def angle_between_deg(a, b) -> float:
    """Angle between two 3-D vectors (deg, 0..180), accurate near 0 and 180 (atan2 form)."""
    a = np.asarray(a, dtype=np.float64).reshape(3)
    b = np.asarray(b, dtype=np.float64).reshape(3)
    return math.degrees(math.atan2(float(np.linalg.norm(np.cross(a, b))), float(a @ b)))


def pointer_guidance(tip, axis, basis: PathBasis, max_extension_deg: float = 60.0) -> PointerGuidance:
    """Guidance of a tool with its tip at ``tip`` (3,) mm and its axis along ``axis`` (3,), any
    length (from the markers' centre towards the tip), relative to ``basis``'s path; all in the
    path's frame.  ``axis`` None (a tool without a shaft): no angle (NaN) and no extended axis.
    ValueError for a non-finite tip, or a zero or non-finite axis."""
    p = np.asarray(tip, dtype=np.float64).reshape(3)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"need a finite tip, got {p}")
    d, right, up = basis.direction, basis.right, basis.up
    from_target = p - basis.target
    depth = -float(from_target @ d)
    offset = np.array([from_target @ right, from_target @ up])
    angle = math.nan
    axis_offset = None
    if axis is not None:
        a = np.asarray(axis, dtype=np.float64).reshape(3)
        norm = float(np.linalg.norm(a))
        if not math.isfinite(norm) or norm <= 0.0:
            raise ValueError(f"need a non-zero, finite axis, got {a}")
        a = a / norm
        angle = angle_between_deg(a, d)
        cos_ad = float(a @ d)
    if axis is not None and depth >= 0.0 and cos_ad >= math.cos(math.radians(max_extension_deg)):
        # tip + s * a reaches the target's plane ((x - target) . d = 0) at s = depth / (a . d).
        reached = from_target + (depth / cos_ad) * a
        axis_offset = np.array([reached @ right, reached @ up])
    return PointerGuidance(
        tip_to_target_mm=float(np.linalg.norm(from_target)),
        depth_to_go_mm=depth,
        along_path_mm=float((p - basis.entry) @ d),
        lateral_mm=float(np.hypot(offset[0], offset[1])),
        angle_deg=angle,
        offset_mm=offset,
        axis_offset_mm=axis_offset,
    )


def level(value: float, ok: float, warn: float) -> int:
    """0 (within ``ok``), 1 (within ``warn``) or 2 (beyond): the colour class of a figure."""
    return 0 if value < ok else (1 if value < warn else 2)


# -- where a path runs inside the anatomy --------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PathSegment:
    """A part of a planned path: from t0 to t1 (fractions of the path, 0 at the entry, 1 at the
    target), inside the closed meshes named in ``meshes`` (``inside`` is False when none)."""

    t0: float
    t1: float
    inside: bool
    meshes: tuple[str, ...] = ()


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume of a closed triangle mesh (mm^3): positive when its faces wind counter-
    clockwise seen from outside (normals outward), negative when they face inward."""
    v = np.asarray(vertices, dtype=np.float64)[np.asarray(faces)]
    return float(np.einsum("ij,ij->", v[:, 0], np.cross(v[:, 1], v[:, 2])) / 6.0)


def line_crossings(entry, target, vertices: np.ndarray, faces: np.ndarray,
                   merge_mm: float = 1e-6) -> tuple[np.ndarray, np.ndarray]:
    """Where the unbounded line through ``entry`` and ``target`` crosses a triangle mesh.

    vertices : (N, 3) float, mm; faces : (M, 3) int
    Returns ``t`` (K,) float64 sorted, the line parameter of each crossing (entry + t * (target -
    entry): 0 at the entry, 1 at the target, any value), and ``sense`` (K,) int8: +1 where the line
    meets a face against its normal (entering an outward-oriented surface), -1 along it.  Hits of
    several triangles within ``merge_mm`` of each other (an edge or a vertex) count once per sense:
    an edge crossed through gives one crossing, an edge grazed gives none.  Triangles parallel to
    the line are not crossed.  Moller and Trumbore 1997, with the line's full parameter range.
    """
    o = np.asarray(entry, dtype=np.float64).reshape(3)
    span = np.asarray(target, dtype=np.float64).reshape(3) - o
    length = float(np.linalg.norm(span))
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    empty = (np.zeros(0), np.zeros(0, np.int8))
    if faces.size == 0 or length <= 0.0:
        return empty
    # Candidates first: a triangle can meet the line only if, seen along the line, its 2-D box
    # holds the line's point (a cheap per-vertex projection; the exact test runs on few faces).
    d = span / length
    a = np.cross(d, [1.0, 0.0, 0.0] if abs(d[0]) < 0.9 else [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(d, a)
    rel = vertices - o
    margin = 1e-6 * (1.0 + float(np.abs(rel).max()))
    near = np.ones(len(faces), dtype=bool)
    for axis in (a, b):
        c = (rel @ axis)[faces]
        near &= (c.min(axis=1) <= margin) & (c.max(axis=1) >= -margin)
    tri = vertices[faces[near]]
    if tri.size == 0:
        return empty
    v0 = tri[:, 0]
    e1 = tri[:, 1] - v0
    e2 = tri[:, 2] - v0
    p = np.cross(span, e2)
    det = np.einsum("ij,ij->i", e1, p)          # = -span . (e1 x e2): > 0 against the normal
    scale = np.linalg.norm(e1, axis=1) * np.linalg.norm(e2, axis=1) * length
    ok = np.abs(det) > 1e-12 * scale
    if not ok.any():
        return empty
    v0, e1, e2, p, det = v0[ok], e1[ok], e2[ok], p[ok], det[ok]
    s = o - v0
    inv = 1.0 / det
    u = np.einsum("ij,ij->i", s, p) * inv
    q = np.cross(s, e1)
    v = (q @ span) * inv
    t = np.einsum("ij,ij->i", e2, q) * inv
    # Inclusive by a hair, so that a line through a shared edge hits both triangles (merged
    # below) rather than slipping between them by rounding.
    eps = 1e-9
    hit = (u >= -eps) & (v >= -eps) & (u + v <= 1.0 + eps)
    t, sense = t[hit], np.where(det[hit] > 0, 1, -1).astype(np.int8)
    order = np.argsort(t, kind="stable")
    t, sense = t[order], sense[order]
    if t.size == 0:
        return empty
    # Group hits closer than merge_mm; a group counts the sign of its net sense (one edge crossed
    # through: +1 +1 -> +1; an edge or vertex grazed: +1 -1 -> 0).
    tol = merge_mm / length
    starts = np.concatenate([[0], np.flatnonzero(np.diff(t) > tol) + 1])
    net = np.add.reduceat(sense.astype(np.int64), starts)
    keep = net != 0
    return t[starts][keep].copy(), np.sign(net[keep]).astype(np.int8)


def inside_intervals(t: np.ndarray, sense: np.ndarray, outward: bool = True) -> list[tuple[float, float]]:
    """Intervals of the line parameter inside a closed surface, from :func:`line_crossings`.

    outward : the mesh's normals point outward (``signed_volume > 0``); False flips every sense.
    ValueError when the crossings do not add up to a closed surface (the winding number does not
    return to 0 past the last crossing), e.g. a mesh with holes.
    """
    signs = np.asarray(sense, dtype=np.int64) * (1 if outward else -1)
    winding = np.cumsum(signs)
    if winding.size and (winding[-1] != 0 or winding.min() < 0):
        raise ValueError("the crossings of the path's line with the mesh do not pair up (is the surface closed?)")
    intervals = []
    start = None
    for ti, w in zip(np.asarray(t, dtype=np.float64), winding):
        if w > 0 and start is None:
            start = float(ti)
        elif w == 0 and start is not None:
            intervals.append((start, float(ti)))
            start = None
    return intervals


def path_segments(named_intervals: Sequence[tuple[str, Sequence[tuple[float, float]]]]) -> tuple[PathSegment, ...]:
    """The path from 0 (entry) to 1 (target) cut where it enters or leaves any mesh.

    named_intervals : (mesh name, its inside intervals of the line parameter) per mesh
    Returns segments covering [0, 1] in order, each with the names of the meshes it lies in;
    neighbours inside the same meshes are joined.
    """
    cuts = {0.0, 1.0}
    for _name, intervals in named_intervals:
        for a, b in intervals:
            cuts.update(x for x in (a, b) if 0.0 < x < 1.0)
    edges = sorted(cuts)
    segments: list[PathSegment] = []
    for a, b in zip(edges[:-1], edges[1:]):
        if b <= a:
            continue
        mid = 0.5 * (a + b)
        names = tuple(name for name, intervals in named_intervals
                      if any(lo <= mid <= hi for lo, hi in intervals))
        if segments and segments[-1].meshes == names:
            segments[-1] = dataclasses.replace(segments[-1], t1=b)
        else:
            segments.append(PathSegment(a, b, bool(names), names))
    return tuple(segments)


def describe_segments(segments: Sequence[PathSegment], length_mm: float) -> str:
    """"outside 0.0-31.2 mm; inside liver 31.2-55.0 mm; inside liver, tumour 55.0-68.0 mm"
    (distances from the entry)."""
    parts = []
    for s in segments:
        where = "inside " + ", ".join(s.meshes) if s.inside else "outside"
        parts.append(f"{where} {s.t0 * length_mm:.1f}-{s.t1 * length_mm:.1f} mm")
    return "; ".join(parts)
