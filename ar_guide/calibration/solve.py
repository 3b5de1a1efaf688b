"""Solve the camera model from board views; drop outlier views; standard deviations.

OpenCV's ``calibrateCameraExtended`` (Zhang 2000 initialisation, then Levenberg-Marquardt on
the reprojection error over all views) gives the intrinsics, distortion, each view's pose, the
per-view RMS errors and the standard deviation of every parameter (from the inverse of J^T J
scaled by the residual variance).  Views whose error is far above the others (a wrong corner
assignment, blur, a board bent in one shot) are dropped one at a time, worst first, and the
model re-solved (``CalibrationSettings.outlier_*``: a robust rule on the median and MAD of the
view errors), never below ``min_views`` and never more than ``max_dropped_fraction``.
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import CalibrationSettings
from ar_guide.errors import InputError
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import transform_from_rvec_tvec

#: Order of calibrateCameraExtended's stdDeviationsIntrinsics (OpenCV documentation).
_STD_NAMES = ("fx", "fy", "cx", "cy", "k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6",
              "s1", "s2", "s3", "s4", "taux", "tauy")
_DISTORTION_NAMES = ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6")


@dataclasses.dataclass(frozen=True)
class CameraModelOptions:
    """Model choices (``calibrate run`` --fix-aspect, --zero-tangent, --rational, --fix-k3).

    fix_aspect : fx / fy fixed to 1 (square pixels): one focal length estimated
    zero_tangent : p1 = p2 = 0 (no decentring of the lens)
    rational : OpenCV's rational radial model, k4..k6 (strong wide-angle distortion)
    fix_k3 : k3 = 0 (narrow lenses, few views: k3 is then poorly determined)
    """

    fix_aspect: bool = False
    zero_tangent: bool = False
    rational: bool = False
    fix_k3: bool = False

    @property
    def flags(self) -> int:
        """cv2.CALIB_* flags for calibrateCamera."""
        flags = 0
        if self.fix_aspect:
            flags |= cv2.CALIB_FIX_ASPECT_RATIO
        if self.zero_tangent:
            flags |= cv2.CALIB_ZERO_TANGENT_DIST
        if self.rational:
            flags |= cv2.CALIB_RATIONAL_MODEL
        if self.fix_k3:
            flags |= cv2.CALIB_FIX_K3
        return flags

    @property
    def distortion_names(self) -> tuple[str, ...]:
        """Names of the distortion coefficients of the model, OpenCV order."""
        return _DISTORTION_NAMES if self.rational else _DISTORTION_NAMES[:5]

    @property
    def free_parameters(self) -> tuple[str, ...]:
        """Names of the intrinsic parameters that are estimated (not fixed)."""
        names = ["fx", "fy", "cx", "cy"] if not self.fix_aspect else ["f", "cx", "cy"]
        for name in self.distortion_names:
            if self.zero_tangent and name in ("p1", "p2"):
                continue
            if self.fix_k3 and name == "k3":
                continue
            names.append(name)
        return tuple(names)

    def describe(self) -> str:
        """"pinhole, k1 k2 p1 p2 k3 (fx/fy fixed)"."""
        extra = []
        if self.fix_aspect:
            extra.append("fx/fy fixed to 1")
        if self.zero_tangent:
            extra.append("no tangential distortion")
        if self.fix_k3:
            extra.append("k3 = 0")
        model = "rational" if self.rational else "polynomial"
        distortion = [n for n in self.free_parameters if n not in ("f", "fx", "fy", "cx", "cy")]
        text = f"pinhole, {model} distortion ({' '.join(distortion)})"
        return text + (f"; {', '.join(extra)}" if extra else "")


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationResult:
    """A solved calibration.

    camera : the CameraModel (intrinsics px, distortion, image size)
    rms_px : RMS reprojection error over all corners of the used views, px
    per_view_rms_px : (V,) float64 RMS of each used view, px
    views : the V views used, in the order given
    dropped : (view, its RMS px when dropped, why) for each outlier view left out
    std : standard deviation of each estimated parameter (fx, fy, cx, cy px; k1... unitless);
        fixed parameters are absent
    camera_from_board : V (4, 4) float64 poses of the board, mm
    residuals_px : V (K_i, 2) float64 detected minus reprojected corners, px
    options : the model choices
    history : (views used, RMS px) of each solve, the last one being this result
    solve_time_s : wall time of all solves, s
    """

    camera: CameraModel
    rms_px: float
    per_view_rms_px: np.ndarray
    views: list
    dropped: list
    std: dict
    camera_from_board: list
    residuals_px: list
    options: CameraModelOptions = CameraModelOptions()
    history: list = dataclasses.field(default_factory=list)
    solve_time_s: float = 0.0

    @property
    def image_size(self) -> tuple[int, int]:
        return self.camera.image_size


def _solve_once(views, image_size, options: CameraModelOptions, settings: CalibrationSettings):
    objects = [v.object_points_mm.reshape(-1, 1, 3) for v in views]
    images = [v.image_points_px.reshape(-1, 1, 2) for v in views]
    k0 = np.eye(3)  # with FIX_ASPECT_RATIO only the ratio fx / fy = 1 of the guess is used
    criteria = (cv2.TERM_CRITERIA_COUNT + cv2.TERM_CRITERIA_EPS, int(settings.max_iterations),
                float(np.finfo(np.float64).eps))
    try:
        rms, k, dist, rvecs, tvecs, std_in, _std_ex, per_view = cv2.calibrateCameraExtended(
            objects, images, tuple(int(v) for v in image_size), k0, None, flags=options.flags, criteria=criteria)
    except cv2.error as exc:
        raise InputError(f"OpenCV could not solve the camera model from {len(views)} views "
                         f"({exc.err.strip() if hasattr(exc, 'err') else exc}); the views may be degenerate "
                         f"(all boards parallel, or too few corners): add views with the board tilted") from None
    n_dist = len(options.distortion_names)
    dist = np.asarray(dist, dtype=np.float64).ravel()[:n_dist]
    k = np.asarray(k, dtype=np.float64)
    if not (np.all(np.isfinite(k)) and np.all(np.isfinite(dist)) and k[0, 0] > 0 and k[1, 1] > 0):
        raise InputError(f"the camera model solved from {len(views)} views is not finite; the views are "
                         f"degenerate: add views with the board tilted and at different places")
    std_in = np.asarray(std_in, dtype=np.float64).ravel()
    return float(rms), k, dist, rvecs, tvecs, std_in, np.asarray(per_view, dtype=np.float64).ravel()


def outlier_limit(errors_px: np.ndarray, settings: CalibrationSettings = CalibrationSettings()) -> float:
    """RMS (px) above which a view is an outlier among views with RMS ``errors_px``
    (CalibrationSettings.outlier_*)."""
    errors = np.asarray(errors_px, dtype=np.float64)
    median = float(np.median(errors))
    mad = 1.4826 * float(np.median(np.abs(errors - median)))
    return max(settings.outlier_median_factor * median, median + settings.outlier_mad_factor * mad,
               settings.outlier_min_px)


def calibrate(views, image_size: tuple[int, int], options: CameraModelOptions = CameraModelOptions(),
              settings: CalibrationSettings = CalibrationSettings()) -> CalibrationResult:
    """Solve the camera model from ``views`` (BoardView list) of ``image_size`` (w, h) images.

    Outlier views are dropped iteratively (module docstring).  InputError when there are fewer
    than ``settings.min_views`` views, views of another image size, or OpenCV cannot solve.
    """
    views = list(views)
    size = (int(image_size[0]), int(image_size[1]))
    for v in views:
        if tuple(v.image_size) != size:
            raise InputError(f"view {v.source!r} is {v.image_size[0]}x{v.image_size[1]} but the calibration is "
                             f"for {size[0]}x{size[1]} images; all views must have one size")
    if len(views) < settings.min_views:
        raise InputError(f"{len(views)} view{'s' if len(views) != 1 else ''} of the board; at least "
                         f"{settings.min_views} are needed to solve (and {settings.recommended_views} or more "
                         f"recommended)")
    t0 = time.perf_counter()
    used = list(views)
    dropped = []
    history = []
    max_drop = int(np.floor(settings.max_dropped_fraction * len(views)))
    while True:
        rms, k, dist, rvecs, tvecs, std_in, per_view = _solve_once(used, size, options, settings)
        history.append((len(used), rms))
        if len(used) <= settings.min_views or len(dropped) >= max_drop:
            break
        limit = outlier_limit(per_view, settings)
        worst = int(np.argmax(per_view))
        if per_view[worst] <= limit:
            break
        median = float(np.median(per_view))
        reason = (f"RMS {per_view[worst]:.2f} px, above {limit:.2f} px (the others' median is {median:.2f} px): "
                  f"blur, a wrong corner or a bent board")
        dropped.append((used[worst], float(per_view[worst]), reason))
        used.pop(worst)
    camera = CameraModel(k, dist, size, {})
    std = _std_dict(std_in, options)
    poses = [transform_from_rvec_tvec(r, t) for r, t in zip(rvecs, tvecs)]
    residuals = []
    for v, pose in zip(used, poses):
        pts = v.object_points_mm.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
        residuals.append(v.image_points_px.astype(np.float64) - camera.project(pts))
    return CalibrationResult(camera, rms, per_view, used, dropped, std, poses, residuals, options, history,
                             time.perf_counter() - t0)


def _std_dict(std_in: np.ndarray, options: CameraModelOptions) -> dict:
    """Standard deviations of the estimated parameters by name (fixed ones left out)."""
    values = dict(zip(_STD_NAMES, std_in))
    names = ["fx", "fy", "cx", "cy"]
    names += [n for n in options.distortion_names
              if not (options.zero_tangent and n in ("p1", "p2")) and not (options.fix_k3 and n == "k3")]
    return {n: float(values[n]) for n in names if n in values}


def undistorted_pixels(camera: CameraModel, uv_px: np.ndarray) -> np.ndarray:
    """(N, 2) where the (N, 2) distorted pixels ``uv_px`` would be without lens distortion (same
    intrinsics), px."""
    xy = projection.pixels_to_normalized(np.asarray(uv_px, dtype=np.float64), camera.camera_matrix, camera.distortion)
    k = camera.camera_matrix
    return np.column_stack([k[0, 0] * xy[:, 0] + k[0, 2], k[1, 1] * xy[:, 1] + k[1, 2]])


def image_grid(image_size: tuple[int, int], grid: tuple[int, int]) -> np.ndarray:
    """(cols * rows, 2) pixel positions of a ``grid`` = (cols, rows) lattice spanning the whole
    image, its outermost points on the outer pixel centres."""
    w, h = image_size
    u, v = np.meshgrid(np.linspace(0.0, w - 1.0, grid[0]), np.linspace(0.0, h - 1.0, grid[1]))
    return np.column_stack([u.ravel(), v.ravel()])


def distortion_displacement_px(camera: CameraModel, uv_px: np.ndarray) -> np.ndarray:
    """(N, 2) displacement that the lens distortion causes at the image pixels ``uv_px`` (N, 2):
    the pixel minus where it would be without distortion, px.  Two calibrations of one camera
    agree on their distortion when these fields agree over the image."""
    uv = np.asarray(uv_px, dtype=np.float64).reshape(-1, 2)
    return uv - undistorted_pixels(camera, uv)


def corner_radius_normalized(camera: CameraModel) -> float:
    """Largest radius of the image's four corner pixels in distorted normalised coordinates
    (K^-1 u: before undistortion, so defined even for a model that cannot be inverted)."""
    w, h = camera.image_size
    k = camera.camera_matrix
    u = np.array([0.0, w - 1.0, 0.0, w - 1.0])
    v = np.array([0.0, 0.0, h - 1.0, h - 1.0])
    return float(np.max(np.hypot((u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1])))


def max_distorted_radius(camera: CameraModel, steps: int = 4000) -> float | None:
    """Largest distorted normalised radius that the radial model reaches before it folds over
    (the distorted radius r_d(r) = r (1 + k1 r^2 + k2 r^4 + k3 r^6) / (1 + k4 r^2 + k5 r^4 +
    k6 r^6) stops growing), or None if it grows over r in [0, 4 x the corner radius].  Image
    points beyond it have no undistorted position: the model is invalid there, typically a
    polynomial fitted to the image centre and extrapolated to its corners."""
    d = projection.full_distortion(camera.distortion)
    k1, k2, _p1, _p2, k3, k4, k5, k6 = d[:8]
    r = np.linspace(0.0, 4.0 * corner_radius_normalized(camera), steps)
    r2 = r * r
    denominator = 1 + k4 * r2 + k5 * r2 ** 2 + k6 * r2 ** 3
    with np.errstate(divide="ignore", invalid="ignore"):
        rd = r * (1 + k1 * r2 + k2 * r2 ** 2 + k3 * r2 ** 3) / denominator
    grows = (np.diff(rd) > 0) & np.isfinite(rd[1:]) & (denominator[1:] > 0)
    if np.all(grows):
        return None
    return float(rd[int(np.argmin(grows))])
