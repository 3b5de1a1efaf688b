"""What the registration report says about the fiducials and the targets (pure numpy, no I/O).

Built on ar_guide.geometry.registration and ar_guide.geometry.tre:

- :func:`outlier_scores` / :func:`likely_outlier`: which fiducial, if any, looks mislocated;
- :func:`predict_tre`: the predicted TRE at named targets and along planned paths.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.constants import RegistrationWorkflow
from ar_guide.geometry.registration import residuals_mm, rigid_register
from ar_guide.geometry.tre import fle_from_fre_mm, predicted_tre_mm


def outlier_scores(fiducials_from: np.ndarray, fiducials_to: np.ndarray, leave_one_out_mm: np.ndarray,
                   fle_floor_mm: float = 0.0) -> np.ndarray:
    """How many times its expected size each fiducial's leave-one-out error is: (N,) float64.

    fiducials_from, fiducials_to : (N, 3) mm, the pairs registered (e.g. CT and patient)
    leave_one_out_mm : (N,) the error at fiducial i when the others alone register (NaN: none)
    fle_floor_mm : a known FLE (mm) below which the per-fit estimate is not allowed to fall; 0
        when none is known independently of these points

    For each i: register the others; estimate the FLE from their FRE (fle_from_fre_mm, at least
    ``fle_floor_mm``); the error expected at fiducial i is its own localisation error plus the
    others' registration error there, sqrt(FLE^2 + TRE_-i(p_i)^2) (TRE from Fitzpatrick, West and
    Maurer 1998, eq. 46).  The score is the leave-one-out error over that: a studentised deleted
    residual.  Unlike a comparison with the other fiducials' errors, it allows for the geometry
    (a fiducial far outside the others has a large error by leverage alone) and is not masked by
    the outlier itself, which inflates every fit that includes it.  NaN where i's error is NaN
    or the others cannot be registered.
    """
    p = np.asarray(fiducials_from, dtype=np.float64).reshape(-1, 3)
    q = np.asarray(fiducials_to, dtype=np.float64).reshape(-1, 3)
    loo = np.asarray(leave_one_out_mm, dtype=np.float64).reshape(-1)
    n = len(p)
    scores = np.full(n, np.nan)
    if n < 4:
        return scores
    for i in range(n):
        if not np.isfinite(loo[i]):
            continue
        keep = np.arange(n) != i
        try:
            without = rigid_register(p[keep], q[keep])
        except ValueError:
            continue
        fre = float(np.sqrt(np.mean(residuals_mm(without, p[keep], q[keep]) ** 2)))
        fle = max(fle_from_fre_mm(fre, n - 1), float(fle_floor_mm))
        if fle <= 0.0:
            continue  # exact data: nothing to compare with
        tre = float(predicted_tre_mm(p[keep], p[i:i + 1], fle)[0])
        scores[i] = loo[i] / np.sqrt(fle ** 2 + tre ** 2)
    return scores


def likely_outlier(names, fiducials_from, fiducials_to, leave_one_out_mm, fle_floor_mm: float = 0.0,
                   settings: RegistrationWorkflow = RegistrationWorkflow()) -> tuple[str | None, np.ndarray]:
    """The one fiducial that looks mislocated, or None; and the scores of :func:`outlier_scores`.

    Only the highest score is flagged, when above ``settings.outlier_score`` with a leave-one-out
    error above ``settings.outlier_min_mm``: one bad fiducial disturbs every fit that includes it,
    so after dropping it the user registers again and sees whether another remains.
    """
    scores = outlier_scores(fiducials_from, fiducials_to, leave_one_out_mm, fle_floor_mm)
    if not np.any(np.isfinite(scores)):
        return None, scores
    i = int(np.nanargmax(scores))
    loo = float(np.asarray(leave_one_out_mm, dtype=np.float64)[i])
    if scores[i] > settings.outlier_score and loo > settings.outlier_min_mm:
        return tuple(names)[i], scores
    return None, scores


@dataclasses.dataclass(frozen=True)
class PathSamples:
    """A planned path's sample points for the prediction: (K, 3) float64, CT mm, entry first."""

    name: str
    points_ct: np.ndarray


def path_samples(name: str, entry_ct, target_ct, count: int) -> PathSamples:
    s = np.linspace(0.0, 1.0, max(int(count), 2))[:, None]
    entry = np.asarray(entry_ct, dtype=np.float64)
    return PathSamples(name, entry + s * (np.asarray(target_ct, dtype=np.float64) - entry))


def predict_tre(fiducials_ct: np.ndarray, targets_ct: dict, paths: list[PathSamples], fle_mm: float) -> dict:
    """Predicted RMS TRE (mm) by target name, and for each path "<path>:entry", "<path>:target"
    and "<path>:max" (the largest over its samples).

    fiducials_ct : (N, 3) mm, the fiducials registered, CT frame; targets_ct : {name: (3,) CT mm}
    Eq. 46 of Fitzpatrick, West and Maurer 1998 is convex along a straight path, so its maximum
    is at an end; the path is sampled all the same, so that the figure stays right for any error
    model put in its place.
    """
    out = {}
    if targets_ct:
        values = predicted_tre_mm(fiducials_ct, np.array(list(targets_ct.values()), dtype=np.float64), fle_mm)
        out.update({name: float(v) for name, v in zip(targets_ct, values)})
    for path in paths:
        values = predicted_tre_mm(fiducials_ct, path.points_ct, fle_mm)
        out[f"{path.name}:entry"] = float(values[0])
        out[f"{path.name}:target"] = float(values[-1])
        out[f"{path.name}:max"] = float(values.max())
    return out
