"""Expected registration errors from the fiducial localisation error (FLE).

Fitzpatrick, West and Maurer 1998, "Predicting error in rigid-body point-based registration",
IEEE TMI 17(5):694-702.  Their model, which these functions share:

- every fiducial is localised with an independent, isotropic, zero-mean error of RMS magnitude
  FLE (a 3-D RMS: each axis has standard deviation FLE / sqrt(3));
- FLE is the error of the registration as a whole: with errors in both spaces (e.g. CT and
  pointer), FLE^2 = FLE_ct^2 + FLE_patient^2 to first order;
- first order in FLE / (size of the configuration): the formulas hold when FLE is small against
  the fiducials' distances from their principal axes;
- the values are expectations over many registrations (RMS), not bounds for one: a given
  registration's FRE says nothing about its TRE (Fitzpatrick 2009).

Pure numpy: no I/O.
"""

from __future__ import annotations

import numpy as np

from ar_guide.geometry.registration import check_point_spread


def _check_fle(value: float, name: str) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0.0:
        raise ValueError(f"{name} must be a finite, non-negative number of mm, got {value!r}")
    return v


def _check_n(n: int) -> int:
    if int(n) != n or n < 3:
        raise ValueError(f"need at least 3 fiducials, got {n}")
    return int(n)


def predicted_tre_mm(fiducials, targets, fle_mm: float) -> np.ndarray:
    """Predicted RMS target registration error at each target, mm (Fitzpatrick et al. 1998, eq. 46).

    fiducials : (N, 3) fiducial positions, mm, any frame (N >= 3, not collinear)
    targets   : (M, 3) target positions in the same frame, mm
    fle_mm    : RMS fiducial localisation error (3-D), mm
    returns   : (M,) float64, expected RMS TRE at each target, mm

    TRE^2(r) = FLE^2 / N * (1 + 1/3 sum_k d_k^2 / f_k^2), with the principal axes u_k of the
    fiducial configuration through its centroid, d_k the distance of r from axis k and f_k the
    RMS distance of the fiducials from axis k.  TRE^2 is a convex quadratic function of r, so
    along a straight planned path its largest value is at one of the two ends.
    """
    f = np.array(fiducials, dtype=np.float64, copy=True)
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"fiducials: expected an (N, 3) array of points, got shape {f.shape}")
    t = np.array(targets, dtype=np.float64, copy=True)
    if t.ndim != 2 or t.shape[1] != 3:
        raise ValueError(f"targets: expected an (M, 3) array of points, got shape {t.shape}")
    n = _check_n(len(f))
    fle = _check_fle(fle_mm, "fle_mm")
    if not (np.all(np.isfinite(f)) and np.all(np.isfinite(t))):
        raise ValueError("fiducials or targets contain NaN or infinite values")
    check_point_spread(f, "fiducials")
    centroid = f.mean(axis=0)
    x = f - centroid
    # Principal axes: eigenvectors of the scatter matrix (columns of vt.T).
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    xk = x @ vt.T                       # fiducial coordinates along the principal axes, (N, 3)
    yk = (t - centroid) @ vt.T          # target coordinates along the principal axes, (M, 3)
    # Squared distance from axis k = squared length minus squared component along k.
    f2 = np.mean(np.sum(xk**2, axis=1, keepdims=True) - xk**2, axis=0)      # (3,)
    d2 = np.sum(yk**2, axis=1, keepdims=True) - yk**2                       # (M, 3)
    tre2 = fle**2 / n * (1.0 + np.sum(d2 / f2, axis=1) / 3.0)
    return np.sqrt(tre2)


def expected_fre_mm(fle_mm: float, n: int) -> float:
    """Expected RMS fiducial registration error, mm: <FRE^2> = (1 - 2/N) FLE^2
    (Fitzpatrick et al. 1998, after Sibson 1979: the 6 degrees of freedom of a rigid transform
    absorb part of the localisation error).

    fle_mm : RMS fiducial localisation error, mm.  n : number of fiducials (>= 3).
    """
    return float(np.sqrt(1.0 - 2.0 / _check_n(n)) * _check_fle(fle_mm, "fle_mm"))


def fle_from_fre_mm(fre_mm: float, n: int) -> float:
    """FLE estimated from a measured FRE, mm: FLE = FRE / sqrt(1 - 2/N) (inverse of
    :func:`expected_fre_mm`).  One registration's FRE is a noisy estimate (N * FRE^2 / FLE^2 * 3 is
    chi-square with 3N - 6 degrees of freedom): use it only when no better FLE is known.
    """
    return float(_check_fle(fre_mm, "fre_mm") / np.sqrt(1.0 - 2.0 / _check_n(n)))
