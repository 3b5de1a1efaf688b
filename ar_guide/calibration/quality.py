"""Is a calibration trustworthy?  Plain-language warnings, each saying what to do.

A low RMS alone proves little: four views of a board held in the image centre fit to 0.19 px
and still leave fx uncertain by 3% (the OpenCV tutorial photos).  The checks here follow what
makes the parameters observable (Zhang 2000; Hartley and Zisserman 2004, sec. 8.8) and what the
solver's own covariance says:

* enough views (OpenCV's tutorial: at least 10),
* corners over the whole image, its corners and edges included (distortion is largest there
  and a polynomial model is only valid where it was fitted),
* tilted board planes (fronto-parallel views cannot separate focal length from distance),
* a low RMS reprojection error (corners are good to 0.05-0.3 px; more means blur, a bent board,
  wrong corners),
* small standard deviations of fx, fy, cx, cy,
* fx / fy near 1 unless it was fixed (square pixels: otherwise the print may be scaled
  unevenly),
* a distortion model that stays valid (does not fold over) up to the image corners,
* few dropped views.

Thresholds are in :class:`ar_guide.constants.CalibrationSettings`, with their sources.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.calibration.coverage import coverage_summary
from ar_guide.calibration.solve import CalibrationResult, corner_radius_normalized, max_distorted_radius
from ar_guide.constants import CalibrationSettings


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem of a calibration.

    code : short identifier ("few_views", "coverage", "tilt", "rms", "focal_std",
        "principal_point_std", "aspect", "distortion_fold", "dropped")
    serious : True when the result should not be used as it is ("not trustworthy")
    message : what is wrong and what to do, one sentence or two
    """

    code: str
    serious: bool
    message: str


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def findings(result: CalibrationResult, views_offered, image_size: tuple[int, int],
             settings: CalibrationSettings = CalibrationSettings()) -> list[Finding]:
    """Every problem of ``result`` (see the module docstring).

    views_offered : the views given to :func:`~ar_guide.calibration.solve.calibrate` (or their
        number), to count the dropped ones
    """
    s = settings
    out: list[Finding] = []
    camera = result.camera
    offered = views_offered if isinstance(views_offered, int) else len(list(views_offered))
    n = len(result.views)
    cov = coverage_summary(result.views, image_size, rotations=[p[:3, :3] for p in result.camera_from_board],
                           settings=s)

    if n < s.recommended_views:
        out.append(Finding("few_views", n < (s.min_views + s.recommended_views) // 2,
                           f"only {_plural(n, 'view')} used; {s.recommended_views} or more are recommended: add "
                           f"{_plural(s.recommended_views - n, 'view')}, moving the board over the whole image and "
                           f"tilting it"))

    if result.rms_px > s.max_rms_px:
        out.append(Finding("rms", result.rms_px > s.serious_rms_px,
                           f"RMS reprojection error {result.rms_px:.2f} px is high (a good calibration gives "
                           f"0.1-{s.max_rms_px:g} px): make sure the board is flat and every view sharp (no motion "
                           f"blur, glare or out-of-focus views), and check the residual map in the report"))

    missing = cov["regions_missing"]
    covered = cov["covered_fraction"]
    if covered < s.min_covered_fraction or any("corner" in m for m in missing):
        cols, rows = cov["grid"]
        if len(missing) >= 8:
            where = "edges and corners"
            never = "never its edges or corners"
        elif missing:
            where = ", ".join(missing)
            never = f"never the {where}"
        else:
            where = "empty cells of the coverage map"
            never = "left cells empty"
        serious = covered < s.min_covered_fraction / 2
        out.append(Finding("coverage", serious,
                           f"the corners of the board reached {covered:.0%} of the image ({cols}x{rows} grid, "
                           f"{s.min_covered_fraction:.0%} wanted) and {never}: distortion there is extrapolated; "
                           f"add views with the board near the {where} of the image"))

    tilted = sum(1 for tx, ty in cov["tilts_deg"]
                 if np.degrees(np.arctan(np.hypot(np.tan(np.radians(tx)), np.tan(np.radians(ty))))) >= s.tilt_deg)
    if tilted < s.min_tilted_views:
        out.append(Finding("tilt", True,
                           f"{'no view is' if tilted == 0 else 'only ' + _plural(tilted, 'view') + ' is'} tilted "
                           f"more than {s.tilt_deg:g} degrees (largest {cov['max_tilt_deg']:.0f}): views of a board "
                           f"facing the camera cannot separate focal length from distance; add "
                           f"{_plural(max(s.min_tilted_views - tilted, 3), 'view')} with the board tilted 30-45 "
                           f"degrees, top, bottom, left and right edges in turn farther away"))

    out.extend(_std_findings(result, cov, image_size, s))

    if not result.options.fix_aspect and "fx" in result.std and "fy" in result.std:
        ratio = camera.fx / camera.fy
        sigma = np.hypot(result.std["fx"], result.std["fy"]) / camera.fy
        if abs(ratio - 1.0) > s.max_aspect_deviation and abs(ratio - 1.0) > 3.0 * sigma:
            out.append(Finding("aspect", False,
                               f"fx / fy = {ratio:.3f}: pixels are rarely that far from square; if this camera has "
                               f"square pixels, check that the printed squares are square (measure one along "
                               f"both sides: printers can scale one direction) or use --fix-aspect"))

    fold = max_distorted_radius(camera)
    corner = corner_radius_normalized(camera)
    if fold is not None and fold < corner * (1.0 + s.distortion_fold_margin):
        inside = fold < corner
        reached = _reached_radius(result) / corner
        state = "folds over inside the image" if inside else "nearly folds over at the image corners"
        out.append(Finding("distortion_fold", inside,
                           f"the distortion model {state} (its radius stops growing at {fold / corner:.0%} of the "
                           f"image corners' radius; the board reached {reached:.0%}): add views with the board "
                           f"right into the image corners, or solve with --fix-k3"))

    n_dropped = len(result.dropped)
    if offered and n_dropped / offered > s.warn_dropped_fraction:
        out.append(Finding("dropped", False,
                           f"{n_dropped} of {offered} views were dropped as outliers: look at them in the report "
                           f"(blur, glare, a board that is not flat, or corners detected wrongly)"))
    return out


def _reached_radius(result: CalibrationResult) -> float:
    """Largest distorted normalised radius (K^-1 u) of a detected corner over the used views."""
    k = result.camera.camera_matrix
    uv = np.concatenate([v.image_points_px for v in result.views]).astype(np.float64)
    return float(np.max(np.hypot((uv[:, 0] - k[0, 2]) / k[0, 0], (uv[:, 1] - k[1, 2]) / k[1, 1])))


def _std_findings(result, cov, image_size, s) -> list[Finding]:
    out = []
    camera = result.camera
    std = result.std
    uncertain = []
    worst = 0.0
    for name, value in (("fx", camera.fx), ("fy", camera.fy)):
        if name in std:
            rel = std[name] / value
            if rel > s.max_focal_rel_std:
                uncertain.append(f"{name} = {value:.1f} +- {std[name]:.1f} px ({rel:.1%})")
                worst = max(worst, rel)
    if uncertain:
        advice = []
        if cov["tilted_y_views"] < s.min_tilted_views:
            advice.append("left or right edge farther away")
        if cov["tilted_x_views"] < s.min_tilted_views:
            advice.append("top or bottom edge farther away")
        how = f" ({' and '.join(advice)})" if advice else ""
        out.append(Finding("focal_std", worst > s.serious_focal_rel_std,
                           f"focal length uncertain: {', '.join(uncertain)}; limit {s.max_focal_rel_std:.1%}: add "
                           f"views with the board tilted 30-45 degrees{how}, at different distances"))
    w, h = image_size
    pp = []
    for name, value, side in (("cx", camera.cx, w), ("cy", camera.cy, h)):
        if name in std and std[name] > s.max_principal_point_std_fraction * side:
            pp.append(f"{name} = {value:.1f} +- {std[name]:.1f} px")
    if pp:
        limit = ", ".join(f"{s.max_principal_point_std_fraction * side:.1f} px for {name}"
                          for name, side in (("cx", w), ("cy", h)))
        out.append(Finding("principal_point_std", False,
                           f"principal point uncertain: {', '.join(pp)} (limits {limit}): add tilted views with the "
                           f"board near the image edges"))
    return out


def assess(result: CalibrationResult, views_offered, image_size: tuple[int, int],
           settings: CalibrationSettings = CalibrationSettings()) -> list[str]:
    """Plain-language warnings about ``result``, each with what to do; empty when it looks good."""
    return [f.message for f in findings(result, views_offered, image_size, settings)]


def verdict(found: list[Finding]) -> str:
    """"good", "usable" (warnings, none serious) or "not trustworthy"."""
    if any(f.serious for f in found):
        return "not trustworthy"
    return "usable" if found else "good"
