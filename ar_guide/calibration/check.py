"""Checking a calibration with a board in view: reprojection and metric errors (``calibrate check``).

For one view (the board's detected corners and their true positions), under the calibration to
check:

1. the board pose by PnP: IPPE for the planar board (Collins and Bartoli 2014, IJCV 109(3); both
   solutions of the planar ambiguity), each refined by Levenberg-Marquardt
   (``cv2.solvePnPRefineLM``), the one with the lower error kept;
2. the reprojection error: detected minus projected corners (px), RMS and max;
3. the metric error: every detected corner is back-projected (its undistorted ray) onto the
   fitted board plane, and the distances between neighbouring corners, and between the corners
   farthest apart, are compared with the true ones (mm and % of the true distance).

Corner noise weighs on neighbouring corners: 0.15 px on corners 32 px apart is already 0.5 %.
So the verdict's metric figure is the spacing of corners a few squares apart, the fewest squares
that put them at least ``CalibrationCheckSettings.metric_baseline_px`` apart in the image (the
"baseline"): local enough to see a distortion error, long enough that noise does not dominate.
In simulation (tests/test_calibration_check.py, 640x360, 33 px squares) the spacing RMS of the
true calibration with 0.2 px corner noise is 0.87 % for neighbours and 0.42 % two squares apart,
against 0.80 % and 2.1 % two squares apart for a 3 % focal length error and a missing distortion
model.

What the metric error can and cannot show: a single camera measures shape, not size.  PnP places
the board with its nominal geometry, so a board printed 2 % too large simply comes out 2 % farther
away with the same spacing: a wrong print scale or ``square_mm`` does not bias the intrinsics
(Zhang 2000) and cannot be seen here (it does bias distances to the camera; measure the printed
squares with a ruler).  What does show: spacing that differs between horizontal and vertical image
directions (fx/fy wrong, or a printer that scaled one axis), spacing and reprojection errors that
grow towards the image corners (the distortion model does not fit there), and errors everywhere
(another camera, resolution, zoom or focus).

:func:`summarize` pools many views into figures (per view, median, p95) and a verdict.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import CalibrationCheckSettings
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import transform_from_rvec_tvec

#: Corners this close to their nearest neighbour's distance (fraction) count as neighbours.
_NEIGHBOUR_TOLERANCE = 1e-3
#: Pairs at least this fraction of the longest true distance are "across the board".
_SPAN_FRACTION = 0.9
#: PnP refinement: iterations and step (solvePnPRefineLM).
_LM_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)


@dataclasses.dataclass(frozen=True, eq=False)
class ViewCheck:
    """One view of the board under the calibration being checked.

    source : the frame or image it came from (for reports)
    camera_from_board : (4, 4) float64, board mm to camera mm (fitted)
    corner_ids : (K,) int64; image_points_px : (K, 2) float64, detected; projected_px : (K, 2)
        float64, the board corners projected at the fitted pose (px, OpenCV centres)
    radius_fraction : (K,) float64, distance of each detected corner from the principal point
        over the image's half-diagonal (0 at the centre, about 1 in the image corners)
    pair_true_mm, pair_error_mm : (P,) float64, neighbouring corner pairs: true distance and the
        back-projected distance minus it (mm)
    pair_horizontal : (P,) bool, the pair runs closer to the image's horizontal than vertical
    pair_length_px : (P,) float64, the pair's detected length in the image (px)
    pair_radius_fraction : (P,) float64, radius fraction of the pair's midpoint
    span_true_mm, span_error_mm : (Q,) float64, the same for the pairs farthest apart
    baseline_squares : the baseline in squares (multiples of the nearest corner distance)
    baseline_true_mm, baseline_error_mm, baseline_length_px : (B,) float64, the pairs at the
        baseline: true distance, error (mm), detected length in the image (px)
    """

    source: str
    camera_from_board: np.ndarray
    corner_ids: np.ndarray
    image_points_px: np.ndarray
    projected_px: np.ndarray
    radius_fraction: np.ndarray
    pair_true_mm: np.ndarray
    pair_error_mm: np.ndarray
    pair_horizontal: np.ndarray
    pair_length_px: np.ndarray
    pair_radius_fraction: np.ndarray
    span_true_mm: np.ndarray
    span_error_mm: np.ndarray
    baseline_squares: int
    baseline_true_mm: np.ndarray
    baseline_error_mm: np.ndarray
    baseline_length_px: np.ndarray

    @property
    def residuals_px(self) -> np.ndarray:
        """(K, 2) float64, detected minus projected (px)."""
        return self.image_points_px - self.projected_px

    @property
    def reprojection_rms_px(self) -> float:
        return float(np.sqrt(np.mean(np.sum(self.residuals_px ** 2, axis=1))))

    @property
    def reprojection_max_px(self) -> float:
        return float(np.max(np.linalg.norm(self.residuals_px, axis=1)))

    @property
    def spacing_percent(self) -> np.ndarray:
        """(P,) signed spacing errors of the neighbouring pairs, % of their true distance."""
        return 100.0 * self.pair_error_mm / self.pair_true_mm

    @property
    def spacing_rms_mm(self) -> float:
        return _rms(self.pair_error_mm)

    @property
    def spacing_max_mm(self) -> float:
        return _max_abs(self.pair_error_mm)

    @property
    def spacing_rms_percent(self) -> float:
        return _rms(self.spacing_percent)

    @property
    def spacing_max_percent(self) -> float:
        return _max_abs(self.spacing_percent)

    @property
    def metric_percent(self) -> np.ndarray:
        """(B,) signed spacing errors at the baseline, % of the true distance."""
        return 100.0 * self.baseline_error_mm / self.baseline_true_mm

    @property
    def metric_rms_percent(self) -> float:
        return _rms(self.metric_percent)

    @property
    def span_max_mm(self) -> float:
        return _max_abs(self.span_error_mm)

    @property
    def span_max_percent(self) -> float:
        return _max_abs(100.0 * self.span_error_mm / self.span_true_mm) if len(self.span_true_mm) else math.nan

    def figures(self) -> dict:
        """The view's figures for reports and the HUD."""
        return {"source": self.source, "corners": int(len(self.corner_ids)),
                "reprojection_rms_px": self.reprojection_rms_px, "reprojection_max_px": self.reprojection_max_px,
                "spacing_rms_mm": self.spacing_rms_mm, "spacing_max_mm": self.spacing_max_mm,
                "spacing_rms_percent": self.spacing_rms_percent, "spacing_max_percent": self.spacing_max_percent,
                "span_max_mm": self.span_max_mm, "span_max_percent": self.span_max_percent,
                "baseline_squares": self.baseline_squares, "metric_rms_percent": self.metric_rms_percent,
                "metric_rms_mm": _rms(self.baseline_error_mm),
                "distance_mm": float(np.linalg.norm(self.camera_from_board[:3, 3]))}


def _rms(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.sqrt(np.mean(a ** 2))) if a.size else math.nan


def _max_abs(a) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.max(np.abs(a))) if a.size else math.nan


# -- one view --------------------------------------------------------------------------------------


def fit_board_pose(object_points_mm: np.ndarray, image_points_px: np.ndarray,
                   camera: CameraModel) -> np.ndarray | None:
    """camera_from_board (4, 4) float64 of a planar board (z = 0 in its frame) from its corners,
    under ``camera`` (with distortion): IPPE, both solutions refined by LM, the better kept.
    None when no pose puts the board in front of the camera (or the points are degenerate)."""
    obj = np.ascontiguousarray(object_points_mm, dtype=np.float64).reshape(-1, 3)
    img = np.ascontiguousarray(image_points_px, dtype=np.float64).reshape(-1, 2)
    if len(obj) < 4:
        return None
    k = np.ascontiguousarray(camera.camera_matrix)
    d = np.ascontiguousarray(camera.distortion)
    planar = np.ptp(obj[:, 2]) <= 1e-9 * max(float(np.ptp(obj[:, :2])), 1.0)
    try:
        if planar:
            _, rvecs, tvecs, _ = cv2.solvePnPGeneric(obj, img, k, d, flags=cv2.SOLVEPNP_IPPE)
        else:
            _, rvecs, tvecs, _ = cv2.solvePnPGeneric(obj, img, k, d, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        return None
    best, best_rms = None, math.inf
    for r0, t0 in zip(rvecs, tvecs):
        rvec, tvec = cv2.solvePnPRefineLM(obj, img, k, d, r0.copy(), t0.copy(), _LM_CRITERIA)
        pose = transform_from_rvec_tvec(rvec.ravel(), tvec.ravel())
        z = obj @ pose[2, :3] + pose[2, 3]
        if not (np.all(np.isfinite(pose)) and np.all(z > 0)):
            continue
        uv = camera.project(obj @ pose[:3, :3].T + pose[:3, 3])
        rms = float(np.sqrt(np.mean(np.sum((uv - img) ** 2, axis=1))))
        if rms < best_rms:
            best, best_rms = pose, rms
    return best


def back_project_to_plane(image_points_px: np.ndarray, camera: CameraModel,
                          camera_from_board: np.ndarray) -> np.ndarray:
    """(K, 3) float64 board-frame points (mm) where the rays of ``image_points_px`` (K, 2) meet the
    board plane z = 0 of ``camera_from_board``; NaN for rays parallel to it or meeting it behind
    the camera."""
    xy = projection.pixels_to_normalized(np.asarray(image_points_px, np.float64), camera.camera_matrix,
                                         camera.distortion)
    rays = np.column_stack([xy, np.ones(len(xy))])
    r = camera_from_board[:3, :3]
    t = camera_from_board[:3, 3]
    normal = r[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = (normal @ t) / (rays @ normal)
    depth[~(np.isfinite(depth) & (depth > 0))] = np.nan
    points_camera = rays * depth[:, None]
    return (points_camera - t) @ r          # R^T (p - t) for row vectors


def neighbour_pairs(object_points_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (P, 2) of neighbouring corners (each corner with those at its nearest
    distance, e.g. the next corner along a row or column of a chessboard), and index pairs
    (Q, 2) of the corners farthest apart (at least 90 % of the longest distance)."""
    obj = np.asarray(object_points_mm, dtype=np.float64).reshape(-1, 3)
    n = len(obj)
    if n < 2:
        empty = np.zeros((0, 2), np.int64)
        return empty, empty
    d = np.linalg.norm(obj[:, None, :] - obj[None, :, :], axis=2)
    i, j = np.triu_indices(n, 1)
    dist = d[i, j]
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    close = ((dist <= nearest[i] * (1 + _NEIGHBOUR_TOLERANCE)) | (dist <= nearest[j] * (1 + _NEIGHBOUR_TOLERANCE)))
    far = dist >= _SPAN_FRACTION * dist.max()
    return np.column_stack([i[close], j[close]]), np.column_stack([i[far], j[far]])


def baseline_pairs(object_points_mm: np.ndarray, image_points_px: np.ndarray,
                   min_length_px: float) -> tuple[np.ndarray, int]:
    """Index pairs (B, 2) of corners k times the nearest corner distance apart (k squares along a
    row or column of a chessboard), with the smallest k whose pairs are at least ``min_length_px``
    long in the image (median), or the largest k there is; and k."""
    obj = np.asarray(object_points_mm, dtype=np.float64).reshape(-1, 3)
    img = np.asarray(image_points_px, dtype=np.float64).reshape(-1, 2)
    n = len(obj)
    if n < 2:
        return np.zeros((0, 2), np.int64), 1
    i, j = np.triu_indices(n, 1)
    dist = np.linalg.norm(obj[i] - obj[j], axis=1)
    step = float(dist.min())
    length = np.linalg.norm(img[i] - img[j], axis=1)
    best, best_k = None, 1
    for k in range(1, int(dist.max() / step) + 1):
        at = np.abs(dist - k * step) <= _NEIGHBOUR_TOLERANCE * k * step
        if not at.any():
            continue
        best, best_k = at, k
        if np.median(length[at]) >= min_length_px:
            break
    return np.column_stack([i[best], j[best]]), best_k


def check_view(view, camera: CameraModel, source: str | None = None,
               settings: CalibrationCheckSettings = CalibrationCheckSettings()) -> ViewCheck | None:
    """Reprojection and metric errors of one detected view under ``camera``.

    ``view`` has ``corner_ids`` (K,), ``image_points_px`` (K, 2) and ``object_points_mm`` (K, 3)
    (e.g. :class:`ar_guide.calibration.detect.BoardView`).  None when no pose is found.
    """
    obj = np.asarray(view.object_points_mm, dtype=np.float64).reshape(-1, 3)
    img = np.asarray(view.image_points_px, dtype=np.float64).reshape(-1, 2)
    ids = np.asarray(view.corner_ids, dtype=np.int64).reshape(-1)
    pose = fit_board_pose(obj, img, camera)
    if pose is None:
        return None
    projected = camera.project(obj @ pose[:3, :3].T + pose[:3, 3])
    measured = back_project_to_plane(img, camera, pose)
    pairs, spans = neighbour_pairs(obj)

    def errors(index_pairs):
        a, b = index_pairs[:, 0], index_pairs[:, 1]
        true = np.linalg.norm(obj[a] - obj[b], axis=1)
        error = np.linalg.norm(measured[a] - measured[b], axis=1) - true
        keep = np.isfinite(error)
        return true[keep], error[keep], keep

    pair_true, pair_error, keep = errors(pairs)
    pairs = pairs[keep]
    span_true, span_error, _ = errors(spans)
    base, squares = baseline_pairs(obj, img, settings.metric_baseline_px)
    base_true, base_error, keep = errors(base)
    base = base[keep]
    base_length = np.linalg.norm(img[base[:, 1]] - img[base[:, 0]], axis=1)
    delta = img[pairs[:, 1]] - img[pairs[:, 0]]
    horizontal = np.abs(delta[:, 0]) >= np.abs(delta[:, 1])
    length_px = np.linalg.norm(delta, axis=1)
    radius = _radius_fraction(img, camera)
    pair_radius = _radius_fraction((img[pairs[:, 0]] + img[pairs[:, 1]]) / 2.0, camera)
    name = source if source is not None else str(getattr(view, "source", ""))
    return ViewCheck(name, pose, ids, img, projected, radius, pair_true, pair_error, horizontal, length_px, pair_radius,
                     span_true, span_error, squares, base_true, base_error, base_length)


def _radius_fraction(uv_px: np.ndarray, camera: CameraModel) -> np.ndarray:
    w, h = camera.image_size if camera.image_size is not None else (2 * camera.cx + 1, 2 * camera.cy + 1)
    half_diagonal = math.hypot(w, h) / 2.0
    return np.hypot(uv_px[:, 0] - camera.cx, uv_px[:, 1] - camera.cy) / half_diagonal


# -- many views ------------------------------------------------------------------------------------


def _stats(values) -> dict | None:
    a = np.asarray(values, dtype=np.float64)
    a = a[np.isfinite(a)]
    if not a.size:
        return None
    return {"median": float(np.median(a)), "p95": float(np.percentile(a, 95)), "max": float(np.max(a)),
            "n": int(a.size)}


def summarize(checks: list[ViewCheck], settings: CalibrationCheckSettings = CalibrationCheckSettings()) -> dict:
    """Pooled figures and the verdict over all views checked.

    Returns a dict: ``views``; ``reprojection`` (pooled ``rms_px`` over all corners, and the
    per-view RMS as median / p95 / max); ``spacing`` (neighbouring corners: pooled RMS in mm and
    %, max, per-view median / p95, mean signed % over horizontal and vertical pairs and over all);
    ``metric`` (the same at the baseline, see the module docstring: the verdict's figure); ``span``
    (largest distances across the board); ``radial`` (residual RMS near the centre and in the
    outer zone, with corner counts); ``verdict`` ({"good": bool, "lines": [str, ...]}).
    """
    s = settings
    if not checks:
        return {"views": 0, "verdict": {"good": False, "lines": ["no view of the board could be checked"]}}
    residuals = np.concatenate([c.residuals_px for c in checks])
    radius = np.concatenate([c.radius_fraction for c in checks])
    percent = np.concatenate([c.spacing_percent for c in checks])
    pair_mm = np.concatenate([c.pair_error_mm for c in checks])
    horizontal = np.concatenate([c.pair_horizontal for c in checks])
    length_px = np.concatenate([c.pair_length_px for c in checks])
    span_mm = np.concatenate([c.span_error_mm for c in checks])
    span_true = np.concatenate([c.span_true_mm for c in checks])
    pair_radius = np.concatenate([c.pair_radius_fraction for c in checks])
    metric = np.concatenate([c.metric_percent for c in checks])
    metric_mm = np.concatenate([c.baseline_error_mm for c in checks])
    metric_px = np.concatenate([c.baseline_length_px for c in checks])
    norms = np.linalg.norm(residuals, axis=1)
    inner = norms[radius <= s.inner_radius]
    outer = norms[radius >= s.outer_radius]
    inner_spacing = percent[pair_radius <= s.inner_radius]
    outer_spacing = percent[pair_radius >= s.outer_radius]
    summary = {
        "views": len(checks),
        "corners": int(len(norms)),
        "reprojection": {"rms_px": _rms(norms), "max_px": float(norms.max()),
                         "per_view_rms_px": _stats([c.reprojection_rms_px for c in checks])},
        "spacing": {"pairs": int(len(percent)), "rms_mm": _rms(pair_mm), "max_mm": _max_abs(pair_mm),
                    "rms_percent": _rms(percent), "max_percent": _max_abs(percent),
                    "median_pair_px": float(np.median(length_px)) if length_px.size else math.nan,
                    "mean_percent": float(np.mean(percent)) if percent.size else math.nan,
                    "horizontal_mean_percent": float(np.mean(percent[horizontal])) if horizontal.any() else math.nan,
                    "vertical_mean_percent": float(np.mean(percent[~horizontal])) if (~horizontal).any() else math.nan,
                    "per_view_rms_percent": _stats([c.spacing_rms_percent for c in checks])},
        "metric": {"min_baseline_px": s.metric_baseline_px, "pairs": int(metric.size),
                   "squares": sorted({c.baseline_squares for c in checks}),
                   "median_length_px": float(np.median(metric_px)) if metric_px.size else math.nan,
                   "rms_mm": _rms(metric_mm), "max_mm": _max_abs(metric_mm),
                   "rms_percent": _rms(metric), "max_percent": _max_abs(metric),
                   "per_view_rms_percent": _stats([c.metric_rms_percent for c in checks])},
        "span": {"pairs": int(len(span_mm)), "rms_mm": _rms(span_mm), "max_mm": _max_abs(span_mm),
                 "max_percent": _max_abs(100.0 * span_mm / span_true) if span_true.size else math.nan},
        "radial": {"inner_radius": s.inner_radius, "outer_radius": s.outer_radius,
                   "inner_corners": int(inner.size), "outer_corners": int(outer.size),
                   "inner_rms_px": _rms(inner), "outer_rms_px": _rms(outer),
                   "inner_pairs": int(inner_spacing.size), "outer_pairs": int(outer_spacing.size),
                   "inner_spacing_rms_percent": _rms(inner_spacing),
                   "outer_spacing_rms_percent": _rms(outer_spacing)},
    }
    summary["verdict"] = verdict(summary, s)
    return summary


def verdict(summary: dict, settings: CalibrationCheckSettings = CalibrationCheckSettings()) -> dict:
    """{"good": bool, "lines": [...]}: what is wrong, each with its likely cause and the remedy."""
    s = settings
    rep = summary["reprojection"]["rms_px"]
    spacing = summary["spacing"]
    metric = summary["metric"]
    radial = summary["radial"]
    apart = f"corners {metric['median_length_px']:.0f} px apart"
    problems, notes = [], []
    h_mean, v_mean = spacing["horizontal_mean_percent"], spacing["vertical_mean_percent"]
    aspect = h_mean - v_mean if np.isfinite(h_mean) and np.isfinite(v_mean) else 0.0
    if abs(aspect) > s.aspect_percent:
        longer = "horizontally" if aspect > 0 else "vertically"
        problems.append(f"aspect: squares measure {abs(aspect):.1f}% longer {longer} than "
                        f"{'vertically' if aspect > 0 else 'horizontally'} in the image -> fx/fy (the pixel "
                        f"aspect) is wrong: recalibrate; or the printer scaled one axis: measure the printed squares")
    mean = spacing["mean_percent"]
    if abs(aspect) <= s.aspect_percent and np.isfinite(mean) and abs(mean) > s.scale_percent:
        problems.append(f"scale: squares measure {abs(mean):.1f}% {'larger' if mean > 0 else 'smaller'} than "
                        f"their true size across the image -> the focal length or the distortion model is wrong: "
                        f"recalibrate (a board printed at the wrong scale cannot show here: one camera "
                        f"measures shape, not size)")
    enough = radial["inner_pairs"] >= s.min_zone_pairs and radial["outer_pairs"] >= s.min_zone_pairs
    inner_sp, outer_sp = radial["inner_spacing_rms_percent"], radial["outer_spacing_rms_percent"]
    growth = outer_sp / inner_sp if enough and inner_sp > 0 else 0.0
    if enough and growth >= s.radial_growth_ratio and outer_sp > s.good_spacing_rms_percent:
        problems.append(f"errors grow towards the image corners (spacing error RMS {outer_sp:.2f}% beyond "
                        f"{s.outer_radius:.0%} of the half-diagonal, {inner_sp:.2f}% near the centre; reprojection "
                        f"{radial['outer_rms_px']:.2f} px and {radial['inner_rms_px']:.2f} px) -> the distortion "
                        f"model is not right: recalibrate with views covering the corners (--rational for a "
                        f"wide-angle lens)")
    if rep > s.good_reprojection_rms_px and not problems:
        problems.append(f"reprojection RMS {rep:.2f} px (> {s.good_reprojection_rms_px} px) -> the calibration "
                        f"does not fit these images: another camera or resolution, zoom or focus changed, or "
                        f"the board is blurred or not flat")
    if metric["rms_percent"] > s.good_spacing_rms_percent and not problems:
        problems.append(f"spacing error RMS {metric['rms_percent']:.2f}% ({apart}; > {s.good_spacing_rms_percent}%) "
                        f"-> the board does not measure true under this calibration: recalibrate, and check that "
                        f"the board is flat")
    # A corner error e changes a pair's length by about e: at L px apart that is 100 e / L %.
    sensitivity = 100.0 * s.typical_corner_noise_px / metric["median_length_px"]
    if np.isfinite(sensitivity) and sensitivity > 0.5 * s.good_spacing_rms_percent:
        notes.append(f"note: the board is small in the image (corners at most {metric['median_length_px']:.0f} px "
                     f"apart along its rows): a typical {s.typical_corner_noise_px} px corner error is already "
                     f"{sensitivity:.1f}% of that; bring the board closer for a finer spacing check")
    if radial["outer_pairs"] < s.min_zone_pairs:
        notes.append(f"note: few corners were seen beyond {s.outer_radius:.0%} of the half-diagonal "
                     f"({radial['outer_corners']} corners): move the board into the image corners to check them")
    good = (not problems and rep <= s.good_reprojection_rms_px
            and metric["rms_percent"] <= s.good_spacing_rms_percent)
    figures = (f"reprojection RMS {rep:.2f} px (< {s.good_reprojection_rms_px} px), spacing error RMS "
               f"{metric['rms_percent']:.2f}% over {apart} (< {s.good_spacing_rms_percent}%)")
    if good:
        lines = [f"calibration looks good for this board: {figures}"]
    else:
        lines = [f"calibration NOT good for this board: {figures.replace('(<', '(limit')}"] + problems
    return {"good": bool(good), "lines": lines + notes}
