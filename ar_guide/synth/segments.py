"""Distances between line segments (vectorised), for capsules, vessels and needle paths."""

from __future__ import annotations

import numpy as np


def segment_segment_distance(p1: np.ndarray, q1: np.ndarray, p2: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Smallest distance between segments p1-q1 and p2-q2; arrays (..., 3) broadcast together.

    Closest points of two segments by clamping the parameters of the infinite lines
    (Ericson, "Real-Time Collision Detection", 2005, section 5.1.9).
    """
    p1, q1, p2, q2 = (np.asarray(a, dtype=np.float64) for a in (p1, q1, p2, q2))
    d1 = q1 - p1
    d2 = q2 - p2
    r = p1 - p2
    a = np.einsum("...i,...i->...", d1, d1)
    e = np.einsum("...i,...i->...", d2, d2)
    f = np.einsum("...i,...i->...", d2, r)
    c = np.einsum("...i,...i->...", d1, r)
    b = np.einsum("...i,...i->...", d1, d2)
    a, e, f, c, b = np.broadcast_arrays(a, e, f, c, b)
    eps = 1e-12
    denom = a * e - b * b
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(denom > eps, np.clip((b * f - c * e) / denom, 0.0, 1.0), 0.0)
        s = np.where(a <= eps, 0.0, s)
        t = np.where(e > eps, (b * s + f) / e, 0.0)
        # t outside [0, 1]: clamp it and recompute s for the clamped t.
        t_clamped = np.clip(t, 0.0, 1.0)
        s = np.where(t != t_clamped, np.where(a > eps, np.clip((b * t_clamped - c) / a, 0.0, 1.0), 0.0), s)
        t = t_clamped
    closest1 = p1 + s[..., None] * d1
    closest2 = p2 + t[..., None] * d2
    return np.linalg.norm(closest1 - closest2, axis=-1)


def segment_polyline_distance(a: np.ndarray, b: np.ndarray, polyline: np.ndarray) -> float:
    """Smallest distance (mm) between segment a-b and a (K, 3) polyline."""
    poly = np.asarray(polyline, dtype=np.float64)
    return float(np.min(segment_segment_distance(a, b, poly[:-1], poly[1:])))


def points_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """(N,) distances (mm) from (N, 3) points to a (K, 3) polyline."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    poly = np.asarray(polyline, dtype=np.float64)
    d = segment_segment_distance(pts[:, None, :], pts[:, None, :], poly[None, :-1], poly[None, 1:])
    return np.min(d, axis=1)
