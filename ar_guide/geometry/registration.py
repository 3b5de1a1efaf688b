"""Rigid paired-point registration: least squares rotation and translation, never a reflection.

``to_from_from`` minimises sum_i w_i |R p_i + t - q_i|^2 over proper rotations R (det +1) and
translations t, with no scaling (anatomy does not scale).  Method: SVD of the weighted
cross-covariance of the centred points (Arun, Huang and Blostein 1987, IEEE TPAMI 9(5), eqs. 11-13)
with the reflection correction of Umeyama 1991 (IEEE TPAMI 13(4), eqs. 39-40): when the plain SVD
solution would be a reflection, the sign of the axis of the smallest singular value is flipped,
which gives the best proper rotation (not merely a proper one).

Pure numpy: no I/O.  Errors are ValueError with a message meant for the user; the apps turn
them into InputError with the file name.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.constants import RegistrationLimits

_LIMITS = RegistrationLimits()


def _as_points(points, name: str) -> np.ndarray:
    p = np.array(points, dtype=np.float64, copy=True)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"{name}: expected an (N, 3) array of points, got shape {p.shape}")
    return p


def _mm(value: float) -> str:
    """A length for a message: 3 significant digits, and 0 for rounding noise."""
    return "0" if value < 1e-4 else f"{value:.3g}"


def check_point_spread(points: np.ndarray, name: str = "points", weights: np.ndarray | None = None,
                       limits: RegistrationLimits = _LIMITS) -> None:
    """Raise ValueError unless the points span at least a plane (rotation fully determined).

    points : (N, 3) float64, any frame, mm.  weights : (N,) non-negative, or None (all equal).
    Refuses points that coincide (RMS distance from their centroid <= ``coincident_mm``) and
    points that are (nearly) collinear: second singular value of the centred, sqrt-weighted
    points below ``collinear_ratio`` times the first (see RegistrationLimits for the choice).
    """
    w = np.full(len(points), 1.0 / len(points)) if weights is None else weights / weights.sum()
    centroid = w @ points
    scaled = (points - centroid) * np.sqrt(w)[:, None]
    s = np.linalg.svd(scaled, compute_uv=False)
    rms = float(np.sqrt(np.sum(s**2)))
    if rms <= limits.coincident_mm:
        raise ValueError(f"the points coincide: {name} are all within {_mm(rms)} mm of one place; "
                         "3 points not on one line are needed")
    if s[1] < limits.collinear_ratio * s[0]:
        off_line = float(np.hypot(s[1], s[2]))
        raise ValueError(f"the points are (nearly) collinear: {name} lie within {_mm(off_line)} mm (RMS) "
                         f"of one line, over {_mm(s[0])} mm (RMS) along it; 3 points not on one line "
                         "are needed")


def _check_inputs(points_from, points_to, weights):
    p = _as_points(points_from, "points_from")
    q = _as_points(points_to, "points_to")
    if len(p) != len(q):
        raise ValueError(f"points_from and points_to differ in length ({len(p)} and {len(q)})")
    if len(p) < 3:
        raise ValueError(f"need at least 3 point pairs, got {len(p)}")
    for name, arr in (("points_from", p), ("points_to", q)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or infinite values")
    if weights is None:
        w = None
    else:
        w = np.array(weights, dtype=np.float64, copy=True)
        if w.shape != (len(p),):
            raise ValueError(f"weights: expected shape ({len(p)},), got {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("weights must be finite and non-negative")
        positive = int(np.count_nonzero(w > 0))
        if positive < 3:
            raise ValueError(f"need at least 3 point pairs with a positive weight, got {positive}")
    return p, q, w


def rigid_register(points_from, points_to, weights=None) -> np.ndarray:
    """Least squares rigid transform ``to_from_from`` (4, 4) float64, proper rotation, no scaling.

    points_from : (N, 3) points in the "from" frame, mm (e.g. fiducials_ct).
    points_to   : (N, 3) the same points, in the same order, in the "to" frame, mm.
    weights     : (N,) non-negative weights, or None for equal weights.

    Minimises sum_i w_i |to_from_from p_i - q_i|^2.  Weighted centroids; cross-covariance
    H = sum_i w_i (p_i - p_bar)(q_i - q_bar)^T = U S V^T; R = V diag(1, 1, d) U^T with
    d = sign(det(V U^T)) (Arun et al. 1987, eq. 13; Umeyama 1991, eqs. 39-40); t = q_bar - R p_bar.
    Raises ValueError for fewer than 3 pairs, different lengths, non-finite values, bad
    weights, and points (of either set) that coincide or are (nearly) collinear.
    """
    p, q, w = _check_inputs(points_from, points_to, weights)
    check_point_spread(p, "points_from", w)
    check_point_spread(q, "points_to", w)
    wn = np.full(len(p), 1.0 / len(p)) if w is None else w / w.sum()
    p_bar = wn @ p
    q_bar = wn @ q
    h = (p - p_bar).T @ ((q - q_bar) * wn[:, None])
    u, _, vt = np.linalg.svd(h)
    # Reflection correction: flipping the axis of the smallest singular value costs the least
    # (Umeyama 1991, eq. 40); this is the best proper rotation, not just any proper one.
    d = 1.0 if np.linalg.det(vt.T @ u.T) >= 0.0 else -1.0
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    to_from_from = np.eye(4)
    to_from_from[:3, :3] = rotation
    to_from_from[:3, 3] = q_bar - rotation @ p_bar
    return to_from_from


@dataclasses.dataclass(frozen=True, eq=False)
class PairedPointResult:
    """A paired-point registration and its fiducial errors.

    to_from_from     : (4, 4) float64, maps "from" mm to "to" mm (e.g. ``reference_from_ct``)
    names            : fiducial names, in the order of the arrays below
    residuals_mm     : (N,) |to_from_from p_i - q_i| per fiducial, mm
    fre_mm           : fiducial registration error, RMS of the residuals, mm
    leave_one_out_mm : (N,) |T_(-i) p_i - q_i|, mm, where T_(-i) is registered without fiducial i:
                       an independent check of fiducial i (an outlier stands out here much more
                       than in its residual).  NaN where the remaining fiducials cannot be
                       registered: always with 3 fiducials, and when the others are collinear.
    """

    to_from_from: np.ndarray
    names: tuple[str, ...]
    residuals_mm: np.ndarray
    fre_mm: float
    leave_one_out_mm: np.ndarray


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def residuals_mm(to_from_from: np.ndarray, points_from: np.ndarray, points_to: np.ndarray) -> np.ndarray:
    """(N,) distances |to_from_from p_i - q_i| in mm."""
    mapped = points_from @ to_from_from[:3, :3].T + to_from_from[:3, 3]
    return np.linalg.norm(mapped - points_to, axis=1)


def _check_duplicates(names: tuple[str, ...], points: np.ndarray, which: str, limit_mm: float) -> None:
    diff = points[:, None, :] - points[None, :, :]
    dist = np.linalg.norm(diff, axis=2)
    i, j = np.nonzero(np.triu(dist < limit_mm, k=1))
    if len(i):
        a, b = int(i[0]), int(j[0])
        raise ValueError(f"fiducials {names[a]!r} and {names[b]!r} are at the same place in {which} "
                         f"({_mm(dist[a, b])} mm apart): one point entered twice?")


def paired_point_registration(names, points_from, points_to) -> PairedPointResult:
    """Register named fiducials: rigid least squares, residuals, FRE and leave-one-out errors.

    names       : N distinct fiducial names (str)
    points_from : (N, 3) fiducials in the "from" frame, mm (e.g. CT, LPS)
    points_to   : (N, 3) the same fiducials in the "to" frame, mm (e.g. the patient reference)

    Raises ValueError as :func:`rigid_register`, and for names that are not N distinct strings
    or two fiducials at the same place (closer than RegistrationLimits.duplicate_fiducial_mm).
    """
    names = tuple(names)
    p, q, _ = _check_inputs(points_from, points_to, None)
    if len(names) != len(p):
        raise ValueError(f"{len(names)} names for {len(p)} fiducials")
    if not all(isinstance(n, str) for n in names):
        raise ValueError("fiducial names must be strings")
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"fiducial name {n!r} appears more than once")
        seen.add(n)
    _check_duplicates(names, p, "points_from", _LIMITS.duplicate_fiducial_mm)
    _check_duplicates(names, q, "points_to", _LIMITS.duplicate_fiducial_mm)
    to_from_from = rigid_register(p, q)
    res = residuals_mm(to_from_from, p, q)
    loo = np.full(len(p), np.nan)
    if len(p) >= 4:
        for i in range(len(p)):
            keep = np.arange(len(p)) != i
            try:
                t_without = rigid_register(p[keep], q[keep])
            except ValueError:
                continue  # the others are collinear: fiducial i cannot be checked
            loo[i] = residuals_mm(t_without, p[i:i + 1], q[i:i + 1])[0]
    return PairedPointResult(
        to_from_from=_readonly(to_from_from),
        names=names,
        residuals_mm=_readonly(res),
        fre_mm=float(np.sqrt(np.mean(res**2))),
        leave_one_out_mm=_readonly(loo),
    )
