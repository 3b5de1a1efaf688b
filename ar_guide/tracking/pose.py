"""Pose of a rigid body from the markers detected in one frame.

solvePnP over ALL visible points of the body with OpenCV's distortion model:
- ChArUco boards: the interpolated chessboard corners only (saddle points, unbiased by blur,
  ink spread and exposure).  Measured on the six real ChArUco photos of ../shared/data with
  their calibration: the marker corners sit 0.2 px inside the positions that the chessboard
  fit predicts (print scale / ink), and adding them raises the RMS error from 0.14-0.24 px to
  0.31-0.58 px and moves the pose by 0.2-0.5 mm and 0.03-0.15 degrees.  On exact synthetic
  images they would help (no print bias there); ``use_marker_corners`` turns them on.
- Planar point sets (also nearly planar ones: PoseSettings.near_planar_fraction): IPPE
  (Collins and Bartoli 2014, "Infinitesimal Plane-Based Pose Estimation", IJCV 109(3)) gives
  both solutions of the planar ambiguity; each is refined by Levenberg-Marquardt
  (solvePnPRefineLM) on the true points.  The ambiguity ratio is the other solution's RMS
  error over the better one's, the latter floored at TrackingGates.ambiguity_noise_floor_px
  (the ArUco library starts tracking only when the ratio is >= 4, FIELD-NOTES.md).  If LM takes
  both starts to one minimum, the other solution's unrefined error is used (and there is no
  alternative to choose).  With a previous pose and an ambiguous frame, the solution nearest
  the previous pose is kept.  One square marker alone uses IPPE_SQUARE.
- Non-planar point sets: SQPnP (Terzakis and Lourakis 2020, ECCV), a globally optimal start,
  then LM.
- Outliers (a false marker id, a reflection, a badly found quad): markers (or ChArUco
  corners) with a corner further than TrackingGates.outlier_px from its projection are
  removed one at a time, each time the one whose removal fits the rest best (leave-one-out
  over the worst few), while a majority of the markers remains.  If the rest still disagree,
  there is no pose.  An id detected twice is dropped (both copies).

Nothing here raises for a bad frame: a frame that gives no trustworthy pose returns a
:class:`PoseFailure` (``measure``) or None (``estimate``) with the reason.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import PoseSettings, TrackingGates
from ar_guide.geometry.transforms import (invert_transform, rotation_angle_between, rvec_tvec_from_transform,
                                          transform_from_rvec_tvec)
from ar_guide.tracking import aruco
from ar_guide.tracking.aruco import Detections
from ar_guide.tracking.bodies import RigidBody, plane_fit


@dataclasses.dataclass(frozen=True, eq=False)
class PoseMeasurement:
    """One frame's pose of one body.

    camera_from_body : (4, 4) float64, body mm to camera mm
    reprojection_rms_px : RMS over the points used of the distance between detected and
        projected image points (px)
    markers_used, points_used : markers and image points in the final fit
    ambiguity_ratio : planar point sets: RMS error of the other IPPE solution / this one's
        (>= 1 when this is the better one; large = unambiguous); inf for non-planar sets
    marker_ids : ids of the markers used, sorted
    alternative_camera_from_body : planar sets: the other IPPE solution (refined), else None
    rejected_marker_ids : markers seen but dropped as outliers (or as duplicates), sorted
    """

    camera_from_body: np.ndarray
    reprojection_rms_px: float
    markers_used: int
    points_used: int
    ambiguity_ratio: float
    marker_ids: tuple[int, ...]
    alternative_camera_from_body: np.ndarray | None = None
    rejected_marker_ids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class PoseFailure:
    """Why a frame gave no pose: ``reason`` (one short line), what was seen."""

    reason: str
    markers_seen: int = 0
    points_seen: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class _Fit:
    camera_from_body: np.ndarray
    rms_px: float
    group_error_px: np.ndarray        # (G,) largest point error per group
    ratio: float
    alternative: np.ndarray | None


class BodyPoseEstimator:
    """Estimates ``camera_from_body`` of one rigid body from one frame's detections.

    body : the rigid body; camera : the calibrated camera the frames come from
    gates : TrackingGates (min_markers, min_points, outlier_px, min_ambiguity_ratio,
        ambiguity_noise_floor_px)
    use_marker_corners : ChArUco boards only: also fit the marker corners (default: chessboard
        corners only, see the module docstring)

    The counting gates are capped by what the body has: a one-marker body needs one marker
    and its 4 corners (its trust then rests on the ambiguity ratio, see status.py).
    """

    def __init__(self, body: RigidBody, camera: CameraModel, gates: TrackingGates = TrackingGates(),
                 use_marker_corners: bool = False, settings: PoseSettings = PoseSettings()):
        self.body = body
        self.camera = camera
        self.gates = gates
        self.settings = settings
        self.use_marker_corners = bool(use_marker_corners) or not body.is_charuco
        self._k = np.ascontiguousarray(camera.camera_matrix, dtype=np.float64)
        self._d = np.ascontiguousarray(camera.distortion, dtype=np.float64)
        self._interpolator = aruco.CharucoInterpolator(body.board) if body.is_charuco else None
        self._body_ids = np.array(body.marker_ids, dtype=np.int64)
        self.min_markers = min(gates.min_markers, len(body.markers_body))
        if body.is_charuco:
            self.min_points = min(gates.min_points, len(body.charuco_corners_body))
        else:
            self.min_points = min(gates.min_points, 4 * len(body.markers_body))
        self._square = {i: _square_frame(c, settings.square_tolerance) for i, c in body.markers_body.items()}
        self._criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, settings.refine_max_iterations,
                          settings.refine_epsilon)

    # ------------------------------------------------------------------ public

    def estimate(self, detections: Detections, gray: np.ndarray | None = None,
                 previous_camera_from_body: np.ndarray | None = None) -> PoseMeasurement | None:
        """This frame's pose, or None (see :meth:`measure` for the reason)."""
        result = self.measure(detections, gray, previous_camera_from_body)
        return result if isinstance(result, PoseMeasurement) else None

    def measure(self, detections: Detections, gray: np.ndarray | None = None,
                previous_camera_from_body: np.ndarray | None = None) -> PoseMeasurement | PoseFailure:
        """This frame's pose, or a PoseFailure saying why there is none.

        detections : markers found in ``gray`` with the body's dictionary
        gray : (H, W) uint8 frame (needed for ChArUco corner interpolation, else unused)
        previous_camera_from_body : the last trusted pose; picks between the two planar
            solutions when the frame is ambiguous
        """
        if detections.dictionary != self.body.dictionary:
            raise ValueError(f"detections are {detections.dictionary} but body {self.body.name!r} uses "
                             f"{self.body.dictionary}")
        try:
            return self._measure(detections, gray, previous_camera_from_body)
        except (cv2.error, np.linalg.LinAlgError, FloatingPointError) as exc:
            return _failure_from(exc)

    # ------------------------------------------------------------------ steps

    def measure_points(self, marker_ids, marker_corners_px, charuco_ids=None, charuco_corners_px=None,
                       previous_camera_from_body: np.ndarray | None = None) -> PoseMeasurement | PoseFailure:
        """The pose from image points already found (what :meth:`measure` does after detection).

        marker_ids : (N,) ints; marker_corners_px : (N, 4, 2) px, OpenCV corner order.  Ids not
            in the body are ignored; an id present twice is dropped (both copies).
        charuco_ids, charuco_corners_px : (K,) and (K, 2) interpolated chessboard corners of a
            ChArUco body (None: none)
        """
        try:
            return self._measure_points(marker_ids, marker_corners_px, charuco_ids, charuco_corners_px,
                                        previous_camera_from_body, None)
        except (cv2.error, np.linalg.LinAlgError, FloatingPointError) as exc:
            return _failure_from(exc)

    def _measure(self, detections, gray, previous):
        return self._measure_points(detections.ids, detections.corners_px, None, None, previous, gray)

    def _measure_points(self, marker_ids, marker_corners_px, charuco_ids, charuco_corners_px, previous, gray):
        ids = np.asarray(marker_ids, dtype=np.int64).reshape(-1)
        corners = np.asarray(marker_corners_px, dtype=np.float64).reshape(-1, 4, 2)
        in_body = np.isin(ids, self._body_ids)
        unique, counts = np.unique(ids[in_body], return_counts=True)
        duplicated = set(unique[counts > 1].tolist())
        # An id seen twice is a false detection or a reflection; neither copy can be trusted.
        keep = in_body & ~np.isin(ids, list(duplicated))
        # A marker with NaN or infinite corners is unusable.
        keep &= np.all(np.isfinite(corners), axis=(1, 2))
        marker_ids = ids[keep]
        marker_px = corners[keep]
        n_markers = len(marker_ids)
        if n_markers < self.min_markers:
            if not np.any(in_body):
                return PoseFailure("not seen")
            return PoseFailure(f"too few markers ({n_markers} < {self.min_markers})", n_markers, 4 * n_markers)

        # Groups of points that stand or fall together: a marker's 4 corners, or one ChArUco corner.
        groups_obj, groups_img, group_marker = [], [], []
        if self._interpolator is not None:
            if charuco_ids is None and gray is not None:
                board_detections = Detections(self.body.dictionary, marker_ids.astype(np.int32),
                                              marker_px.astype(np.float32))
                charuco_ids, charuco_corners_px = self._interpolator(gray, board_detections)
            if charuco_ids is None:
                raise ValueError("ChArUco bodies need the grey frame (or the interpolated corners)")
            charuco_ids = np.asarray(charuco_ids, dtype=np.int64).reshape(-1)
            charuco_px = np.asarray(charuco_corners_px, dtype=np.float64).reshape(-1, 2)
            n_corners = len(self.body.charuco_corners_body)
            for cid, uv in zip(charuco_ids, charuco_px):
                if 0 <= cid < n_corners and np.all(np.isfinite(uv)):
                    groups_obj.append(self.body.charuco_corners_body[cid][None, :])
                    groups_img.append(uv[None, :])
                    group_marker.append(-1)
        if self.use_marker_corners:
            for mid, uv in zip(marker_ids, marker_px):
                groups_obj.append(self.body.markers_body[int(mid)])
                groups_img.append(uv)
                group_marker.append(int(mid))
        n_points = sum(len(g) for g in groups_obj)
        if n_points < self.min_points:
            return PoseFailure(f"too few points ({n_points} < {self.min_points})", n_markers, n_points)

        active = list(range(len(groups_obj)))
        fit = self._fit(groups_obj, groups_img, active, group_marker, previous)
        if fit is None:
            return PoseFailure("degenerate point configuration", n_markers, n_points)
        removed = []
        threshold = self.gates.outlier_px
        while fit.group_error_px.max() > threshold and len(removed) < (len(groups_obj) - 1) // 2:
            # Leave-one-out over the worst few groups; a majority of the groups must remain.
            order = np.argsort(fit.group_error_px)[::-1][: self.settings.outlier_candidates]
            best = None
            for j in order:
                if fit.group_error_px[j] <= threshold:
                    break
                rest = [a for a in active if a != active[j]]
                if not self._enough(rest, groups_obj, group_marker):
                    continue
                candidate = self._fit(groups_obj, groups_img, rest, group_marker, previous)
                if candidate is not None and (best is None or candidate.group_error_px.max() < best[2].group_error_px.max()):
                    best = (active[j], rest, candidate)
            if best is None:
                break
            removed.append(best[0])
            active, fit = best[1], best[2]
        if fit.group_error_px.max() > threshold:
            return PoseFailure(f"markers disagree ({fit.group_error_px.max():.1f} px > {threshold:g} px)",
                               n_markers, n_points)

        dropped = {group_marker[g] for g in removed if group_marker[g] >= 0}
        used_markers = sorted(set(marker_ids.tolist()) - dropped)
        return PoseMeasurement(
            camera_from_body=fit.camera_from_body,
            reprojection_rms_px=fit.rms_px,
            markers_used=len(used_markers),
            points_used=int(sum(len(groups_obj[a]) for a in active)),
            ambiguity_ratio=fit.ratio,
            marker_ids=tuple(int(i) for i in used_markers),
            alternative_camera_from_body=fit.alternative,
            rejected_marker_ids=tuple(int(i) for i in sorted(duplicated | dropped)),
        )

    def _enough(self, active, groups_obj, group_marker) -> bool:
        points = sum(len(groups_obj[a]) for a in active)
        markers = len({group_marker[a] for a in active if group_marker[a] >= 0})
        return points >= self.min_points and (self._interpolator is not None or markers >= self.min_markers)

    def _fit(self, groups_obj, groups_img, active, group_marker, previous) -> _Fit | None:
        obj = np.concatenate([groups_obj[a] for a in active])
        img = np.concatenate([groups_img[a] for a in active])
        single = group_marker[active[0]] if len(active) == 1 else -1
        solved = self._solve(obj, img, single)
        if solved is None:
            return None
        best, best_rms, other, other_rms = solved
        chosen, chosen_rms, alternative, ratio = best, best_rms, other, math.inf
        if other_rms is not None:
            ratio = other_rms / max(best_rms, self.gates.ambiguity_noise_floor_px)
        if other is not None and previous is not None and ratio < self.gates.min_ambiguity_ratio:
            # Ambiguous frame: keep the solution nearest the last trusted pose (ArUco's rule).
            if (rotation_angle_between(previous[:3, :3], other[:3, :3])
                    < rotation_angle_between(previous[:3, :3], best[:3, :3])):
                chosen, chosen_rms, alternative = other, other_rms, best
        squared = self._squared_residuals(chosen, obj, img)
        bounds = np.cumsum([0] + [len(groups_obj[a]) for a in active])
        # The worst corner, not the RMS: one corner of a bad quad (a contour merged with a dark
        # background) can be 5 px off while the marker's RMS stays under the threshold.
        group_error = np.sqrt(np.array([squared[a:b].max() for a, b in zip(bounds[:-1], bounds[1:])]))
        return _Fit(chosen, chosen_rms, group_error, ratio, alternative)

    def _solve(self, obj, img, single_marker):
        """(best pose, its RMS, other planar solution or None, its RMS or None); None if degenerate.

        The other solution is None when LM takes both IPPE starts to the same minimum; its RMS
        is then the unrefined IPPE error, which still measures how distinct the two are.
        """
        plane_from_body, thickness = plane_fit(obj)
        in_plane = obj @ plane_from_body[:3, :3].T + plane_from_body[:3, 3]
        spread = np.linalg.svd(in_plane[:, :2] - in_plane[:, :2].mean(axis=0), compute_uv=False)
        if not spread[0] > 0 or spread[1] < self.settings.min_point_spread * spread[0]:
            return None  # (nearly) collinear points: the rotation about their line is undetermined
        extent = float(np.ptp(in_plane, axis=0).max())
        if thickness > self.settings.near_planar_fraction * extent:
            ok, rvec, tvec = cv2.solvePnP(obj, img, self._k, self._d, flags=cv2.SOLVEPNP_SQPNP)
            if not ok:
                return None
            rvec, tvec = cv2.solvePnPRefineLM(obj, img, self._k, self._d, rvec, tvec, self._criteria)
            pose = transform_from_rvec_tvec(rvec.ravel(), tvec.ravel())
            if not _in_front(pose, obj):
                return None
            return pose, self._rms(pose, obj, img), None, None
        if single_marker >= 0 and self._square[single_marker] is not None and thickness <= 1e-9 * extent:
            body_from_square, half = self._square[single_marker]
            local = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
            flat, local_from_body, flag = local, invert_transform(body_from_square), cv2.SOLVEPNP_IPPE_SQUARE
        else:
            # IPPE on the points flattened onto their plane; LM then fits the true points.
            local = in_plane
            flat = in_plane.copy()
            flat[:, 2] = 0.0
            local_from_body, flag = plane_from_body, cv2.SOLVEPNP_IPPE
        # (solvePnPGeneric's own errors divide by 2N, not N: we compute ours.)
        _, rvecs, tvecs, _ = cv2.solvePnPGeneric(flat, img, self._k, self._d, flags=flag)
        solutions = []
        for start_r, start_t in zip(rvecs, tvecs):
            rvec, tvec = cv2.solvePnPRefineLM(local, img, self._k, self._d, start_r.copy(), start_t.copy(),
                                              self._criteria)
            camera_from_local = transform_from_rvec_tvec(rvec.ravel(), tvec.ravel())
            if _in_front(camera_from_local, local):
                unrefined = transform_from_rvec_tvec(start_r.ravel(), start_t.ravel())
                solutions.append((self._rms(camera_from_local, local, img), self._rms(unrefined, local, img),
                                  camera_from_local @ local_from_body))
        if not solutions:
            return None
        solutions.sort(key=lambda s: s[0])
        best_rms, _, best = solutions[0]
        if len(solutions) == 1:
            return best, best_rms, None, None
        other_rms, _, other = solutions[1]
        if rotation_angle_between(best[:3, :3], other[:3, :3]) < self.settings.same_solution_angle_rad:
            # Both starts refined to one pose, so which of them sorts second is chance: take the
            # worse start's unrefined IPPE error.  (Taking the second's let the good start's own
            # 0.08 px through: ratio 0.4 on 17 sharp markers, a clear view called ambiguous.)
            worse_ippe_rms = max(solution[1] for solution in solutions)
            return best, best_rms, None, max(worse_ippe_rms, best_rms)
        return best, best_rms, other, other_rms

    # ------------------------------------------------------------------ helpers

    def _squared_residuals(self, camera_from_x, points_x, img) -> np.ndarray:
        """Squared pixel distance per point."""
        rvec, tvec = rvec_tvec_from_transform(camera_from_x)
        uv, _ = cv2.projectPoints(points_x, rvec, tvec, self._k, self._d)
        d = uv.reshape(-1, 2) - img
        return np.einsum("ij,ij->i", d, d)

    def _rms(self, camera_from_x, points_x, img) -> float:
        return float(math.sqrt(np.mean(self._squared_residuals(camera_from_x, points_x, img))))


def _failure_from(exc) -> PoseFailure:
    text = str(exc).strip()
    detail = text.splitlines()[-1][:80] if text else type(exc).__name__
    return PoseFailure(f"pose computation failed ({detail})")


def _in_front(camera_from_x, points_x) -> bool:
    """Finite pose with every point in front of the camera."""
    if not np.all(np.isfinite(camera_from_x)):
        return False
    z = points_x @ camera_from_x[2, :3] + camera_from_x[2, 3]
    return bool(np.all(z > 0))


def _square_frame(corners: np.ndarray, tolerance: float):
    """(body_from_square (4, 4), half side) for a square marker, or None if it is not square.

    IPPE_SQUARE wants the corners at (-h, h, 0), (h, h, 0), (h, -h, 0), (-h, -h, 0) in that
    order; OpenCV's marker corner order in a y-down body frame is top-left, top-right,
    bottom-right, bottom-left, so the square frame is the marker frame with y flipped, which
    makes z point out of the marker towards the camera (the classic single-marker convention).
    """
    sides = np.linalg.norm(corners - np.roll(corners, -1, axis=0), axis=1)
    half = float(sides.mean()) / 2.0
    square = np.array([[-half, half, 0], [half, half, 0], [half, -half, 0], [-half, -half, 0]])
    # Kabsch / Arun et al. 1987: rotation taking the square's corners onto the marker's.
    a = square - square.mean(axis=0)
    b = corners - corners.mean(axis=0)
    u, _, vt = np.linalg.svd(b.T @ a)
    fix = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
    rotation = u @ fix @ vt
    body_from_square = np.eye(4)
    body_from_square[:3, :3] = rotation
    body_from_square[:3, 3] = corners.mean(axis=0) - rotation @ square.mean(axis=0)
    fitted = square @ rotation.T + body_from_square[:3, 3]
    if np.max(np.linalg.norm(fitted - corners, axis=1)) > tolerance * 2 * half:
        return None
    return body_from_square, half
