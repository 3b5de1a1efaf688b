"""Pivot calibration: the tip of a tracked tool from poses recorded while it pivots about its tip.

While the tip rests in a divot, every pose ``frame_from_tool`` = (R_i, t_i) maps the same tip
offset (tool frame) to the same pivot point (tracking frame): R_i tip_tool + t_i = pivot_frame.
Two solvers, both compared by Yaniv 2015 ("Which pivot calibration?", Proc. SPIE 9415):

- algebraic one-step least squares: stack [R_i | -I] [tip_tool; pivot_frame] = -t_i and solve
  (SlicerIGT / IGSIO pivot calibration, the usual choice; about 0.25 mm precision with an
  optical tracker, FIELD-NOTES.md);
- sphere fit: the tool origins t_i lie on a sphere about the pivot; fit it (Kasa 1976 algebraic
  fit, then Gauss-Newton on the geometric distances), then tip_tool = mean_i R_i^T (pivot - t_i).

Prefer the algebraic method.  The sphere fit ignores the rotations when it places the pivot, and a
cap of +-30 degrees fixes the sphere's radius poorly: with 0.2 mm noise on the tool origins its tip
is 0.5 mm RMS off along the shaft (the Cramer-Rao bound; the algebraic method: 0.14 mm), while the
two agree across the shaft (docs/benchmarks.md).  It is a cross-check.

Refusals (ValueError) follow SlicerIGT: fewer than 10 poses, or less than 15 degrees of
orientation spread (see :func:`orientation_spread_deg` for how ar_guide measures it).

Pure numpy: no I/O.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.constants import RegistrationLimits
from ar_guide.geometry.transforms import rotvec_from_rotation

_LIMITS = RegistrationLimits()


@dataclasses.dataclass(frozen=True, eq=False)
class PivotResult:
    """Result of a pivot calibration.

    tip_tool     : (3,) float64, the tip in the tool (body) frame, mm
    pivot_frame  : (3,) float64, the fixed pivot point in the frame the poses map to, mm
    rms_mm       : RMS of residuals_mm
    residuals_mm : (N,) |R_i tip_tool + t_i - pivot_frame| per pose, mm
    method       : "algebraic" or "sphere"
    spread_deg   : orientation spread of the poses (:func:`orientation_spread_deg`), degrees
    poses        : number of poses used
    """

    tip_tool: np.ndarray
    pivot_frame: np.ndarray
    rms_mm: float
    residuals_mm: np.ndarray
    method: str
    spread_deg: float
    poses: int


def _mm(value: float) -> str:
    return "0" if value < 1e-4 else f"{value:.3g}"


def _as_poses(frame_from_tool) -> np.ndarray:
    poses = np.array(frame_from_tool, dtype=np.float64, copy=True)
    if poses.ndim != 3 or poses.shape[1:] != (4, 4):
        raise ValueError(f"frame_from_tool: expected an (N, 4, 4) array of poses, got shape {poses.shape}")
    return poses


def _check_rigid(poses: np.ndarray, atol: float) -> None:
    if not np.all(np.isfinite(poses)):
        bad = int(np.nonzero(~np.all(np.isfinite(poses), axis=(1, 2)))[0][0])
        raise ValueError(f"frame_from_tool[{bad}] contains NaN or infinite values")
    last_row = np.abs(poses[:, 3, :] - [0.0, 0.0, 0.0, 1.0]).max(axis=1)
    r = poses[:, :3, :3]
    orth = np.abs(r @ np.transpose(r, (0, 2, 1)) - np.eye(3)).max(axis=(1, 2))
    det = np.linalg.det(r)
    bad = np.nonzero((last_row > atol) | (orth > atol) | (det < 0.0))[0]
    if len(bad):
        i = int(bad[0])
        if last_row[i] > atol:
            raise ValueError(f"frame_from_tool[{i}]: last row must be [0, 0, 0, 1]")
        if orth[i] > atol:
            raise ValueError(f"frame_from_tool[{i}]: rotation part is not orthonormal (scaling or shear)")
        raise ValueError(f"frame_from_tool[{i}]: rotation part is a reflection (determinant -1)")


def _mean_rotation(rotations: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of (N, 3, 3) rotations: the rotation nearest their arithmetic mean."""
    u, _, vt = np.linalg.svd(rotations.mean(axis=0))
    d = 1.0 if np.linalg.det(u @ vt) >= 0.0 else -1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _rotvecs(rotations: np.ndarray) -> np.ndarray:
    """(N, 3) rotation vectors (rad) of (N, 3, 3) rotations: axis * angle from the skew part,
    with the exact (quaternion) inverse for angles within 0.14 rad of pi, where that is unstable."""
    vee = np.stack([rotations[:, 2, 1] - rotations[:, 1, 2], rotations[:, 0, 2] - rotations[:, 2, 0],
                    rotations[:, 1, 0] - rotations[:, 0, 1]], axis=1)          # 2 sin(angle) axis
    sin = 0.5 * np.linalg.norm(vee, axis=1)
    cos = 0.5 * (np.trace(rotations, axis1=1, axis2=2) - 1.0)
    angle = np.arctan2(sin, cos)
    # angle / sin -> 1 for small angles; avoid 0 / 0.
    factor = np.where(sin > 1e-12, angle / np.where(sin > 1e-12, sin, 1.0), 1.0)
    out = 0.5 * factor[:, None] * vee
    for i in np.nonzero(angle > 3.0)[0]:
        out[i] = rotvec_from_rotation(rotations[i])
    return out


def orientation_spread_deg(frame_from_tool) -> float:
    """How widely the tool turned, in degrees, about the second of the axes it turned about.

    frame_from_tool : (N, 4, 4) poses of the tool in any tracking frame (mm).

    Each pose's rotation relative to the mean orientation is written as a rotation vector
    (degrees, tool frame); the spread is the range (max - min) of these vectors along their second
    principal axis.  For the usual stirring motion (the tool tilted up to +-a in every direction)
    this is about 2a, the largest angle between two orientations as SlicerIGT measures it.  But a
    tool turned about one axis only (swung in one plane, or spun about its shaft) has a spread near
    zero: the tip is then undetermined along that axis (tip + s * axis fits every pose equally),
    and SlicerIGT's measure, which would accept it, is blind to that.
    """
    poses = _as_poses(frame_from_tool)
    if len(poses) < 2:
        return 0.0
    rotations = poses[:, :3, :3]
    mean = _mean_rotation(rotations)
    rotvecs = _rotvecs(np.einsum("ji,njk->nik", mean, rotations))       # mean^T R_i
    centred = rotvecs - rotvecs.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    along = rotvecs @ vt[1]
    return float(np.degrees(along.max() - along.min()))


def _validated(frame_from_tool, min_poses: int, min_spread_deg: float) -> tuple[np.ndarray, float]:
    poses = _as_poses(frame_from_tool)
    if len(poses) < min_poses:
        raise ValueError(f"pivot calibration needs at least {min_poses} poses, got {len(poses)}")
    _check_rigid(poses, _LIMITS.pivot_rotation_atol)
    spread = orientation_spread_deg(poses)
    if spread < min_spread_deg:
        raise ValueError(f"the tool turned only {spread:.1f} degrees (at least {min_spread_deg:g} needed): "
                         "pivot it more widely about its tip, in two directions")
    return poses, spread


def _result(poses: np.ndarray, tip_tool: np.ndarray, pivot_frame: np.ndarray, method: str,
            spread: float) -> PivotResult:
    tips = np.einsum("nij,j->ni", poses[:, :3, :3], tip_tool) + poses[:, :3, 3]
    residuals = np.linalg.norm(tips - pivot_frame, axis=1)
    for a in (tip_tool, pivot_frame, residuals):
        a.setflags(write=False)
    return PivotResult(tip_tool=tip_tool, pivot_frame=pivot_frame, rms_mm=float(np.sqrt(np.mean(residuals**2))),
                       residuals_mm=residuals, method=method, spread_deg=spread, poses=len(poses))


def pivot_algebraic(frame_from_tool, min_poses: int = _LIMITS.pivot_min_poses,
                    min_spread_deg: float = _LIMITS.pivot_min_spread_deg) -> PivotResult:
    """Algebraic one-step pivot calibration (SlicerIGT; Yaniv 2015, "algebraic one step").

    frame_from_tool : (N, 4, 4) tool poses in the tracking frame, mm, recorded while the tip
    rests in a divot.  Solves [R_i | -I] [tip_tool; pivot_frame] = -t_i (3N equations, 6
    unknowns) by SVD least squares.  Raises ValueError for fewer than ``min_poses`` poses, an
    orientation spread below ``min_spread_deg`` and poses that are not rigid transforms.
    """
    poses, spread = _validated(frame_from_tool, min_poses, min_spread_deg)
    n = len(poses)
    a = np.zeros((3 * n, 6))
    a[:, :3] = poses[:, :3, :3].reshape(3 * n, 3)
    a[:, 3:] = -np.tile(np.eye(3), (n, 1))
    b = -poses[:, :3, 3].reshape(3 * n)
    x, *_ = np.linalg.lstsq(a, b, rcond=None)
    return _result(poses, x[:3].copy(), x[3:].copy(), "algebraic", spread)


def _fit_sphere(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and radius of the sphere through (N, 3) points, mm: Kasa 1976 (linear in
    centre c and k = r^2 - |c|^2: |p|^2 = 2 p.c + k), refined by Gauss-Newton on the geometric
    residuals |p - c| - r (the algebraic fit is biased towards small spheres on a cap)."""
    mean = points.mean(axis=0)
    p = points - mean                       # centred for conditioning
    a = np.column_stack([2.0 * p, np.ones(len(p))])
    sol, *_ = np.linalg.lstsq(a, np.sum(p**2, axis=1), rcond=None)
    c = sol[:3]
    r = float(np.sqrt(max(sol[3] + c @ c, 0.0)))
    for _ in range(_LIMITS.sphere_max_iterations):
        diff = p - c
        dist = np.linalg.norm(diff, axis=1)
        jac = np.column_stack([-diff / dist[:, None], -np.ones(len(p))])
        step, *_ = np.linalg.lstsq(jac, -(dist - r), rcond=None)
        c = c + step[:3]
        r += float(step[3])
        if np.linalg.norm(step[:3]) < _LIMITS.sphere_step_mm:
            break
    return c + mean, r


def pivot_sphere(frame_from_tool, min_poses: int = _LIMITS.pivot_min_poses,
                 min_spread_deg: float = _LIMITS.pivot_min_spread_deg) -> PivotResult:
    """Sphere-fit pivot calibration (Yaniv 2015, "sphere fitting").

    frame_from_tool : (N, 4, 4) tool poses in the tracking frame, mm.  The tool origins t_i are
    fitted with a sphere whose centre is the pivot; then tip_tool = mean_i R_i^T (pivot - t_i).
    Raises ValueError as :func:`pivot_algebraic`, and when the tool origin barely moves (it is
    at the tip: use the algebraic method).
    """
    poses, spread = _validated(frame_from_tool, min_poses, min_spread_deg)
    origins = poses[:, :3, 3]
    origin_spread = float(np.sqrt(np.mean(np.sum((origins - origins.mean(axis=0))**2, axis=1))))
    if origin_spread < _LIMITS.sphere_min_origin_spread_mm:
        raise ValueError(f"sphere fit: the tool's origin moved only {_mm(origin_spread)} mm (RMS) while "
                         "pivoting, so it is (nearly) at the tip: use the algebraic method")
    pivot_frame, _ = _fit_sphere(origins)
    tips = np.einsum("nji,nj->ni", poses[:, :3, :3], pivot_frame - origins)   # R_i^T (pivot - t_i)
    return _result(poses, tips.mean(axis=0), pivot_frame, "sphere", spread)
