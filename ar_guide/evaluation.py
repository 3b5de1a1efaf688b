"""Run statistics for reports: timings per stage, tracking status, and errors against ground truth.

Pure computation over FrameResults; the apps write the numbers out.
"""

from __future__ import annotations

import collections

import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.geometry.transforms import rotation_angle_between, transform_points
from ar_guide.io.report import TimingStats, summarize_ms
from ar_guide.pipeline import FrameResult
from ar_guide.tracking.status import TrackingStatus


class RunStatistics:
    """Accumulates what a report needs, frame by frame."""

    def __init__(self, reference_name: str):
        self.reference_name = reference_name
        self.frames = 0
        self.timings = TimingStats()
        self.status_counts = collections.Counter()
        self.overlay_counts = collections.Counter()
        self.body_status_counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.reprojection_rms_px = []

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.timings.add_all(result.timings_ms)
        reference = result.states[self.reference_name]
        self.status_counts[reference.status.value] += 1
        self.overlay_counts[result.overlay] += 1
        for name, state in result.states.items():
            self.body_status_counts[name][state.status.value] += 1
        if reference.status is TrackingStatus.OK:
            self.reprojection_rms_px.append(reference.reprojection_rms_px)

    def summary(self) -> dict:
        ok = self.status_counts.get("OK", 0)
        return {
            "frames": self.frames,
            "tracked_fraction": ok / self.frames if self.frames else 0.0,
            "status_frames": {s.value: self.status_counts.get(s.value, 0) for s in TrackingStatus},
            "overlay_frames": {k: self.overlay_counts.get(k, 0) for k in ("current", "stale", "none")},
            "bodies": {name: {s.value: counts.get(s.value, 0) for s in TrackingStatus}
                       for name, counts in self.body_status_counts.items()},
            "reprojection_rms_px": summarize_ms(self.reprojection_rms_px),
            "timings_ms": self.timings.summary(),
        }


class GroundTruthComparison:
    """Errors of the drawn overlay against the true pose, over frames with status OK.

    overlay_error_px : distance between where each target was drawn and where it truly projects
    target_error_mm : 3-D distance between the estimated and true target positions (camera frame)
    translation_error_mm, rotation_error_deg : of camera_from_reference
    false_overlay_frames : frames whose overlay was drawn as current (status OK) although no
        marker of the reference was visible; a visibly marked STALE overlay is counted apart in
        ``stale_overlay_frames_unseen``
    """

    def __init__(self, camera: CameraModel, reference_from_ct: np.ndarray, targets_ct: np.ndarray):
        self.camera = camera
        self.reference_from_ct = np.asarray(reference_from_ct, dtype=np.float64)
        self.targets_ct = np.asarray(targets_ct, dtype=np.float64).reshape(-1, 3)
        self.overlay_error_px = []
        self.target_error_mm = []
        self.translation_error_mm = []
        self.rotation_error_deg = []
        self.false_overlay_frames = 0
        self.false_overlay_frame_indices = []
        self.stale_overlay_frames_unseen = 0
        self.frames_visible = 0
        self.frames_ok_while_visible = 0

    def add(self, result: FrameResult, camera_from_reference_true: np.ndarray, visible_markers: int) -> None:
        state = result.states[next(iter(result.states))]
        visible = visible_markers > 0
        self.frames_visible += int(visible)
        if result.overlay == "current" and not visible:
            self.false_overlay_frames += 1
            self.false_overlay_frame_indices.append(result.frame_index)
        if result.overlay == "stale" and not visible:
            self.stale_overlay_frames_unseen += 1
        if state.status is not TrackingStatus.OK:
            return
        self.frames_ok_while_visible += int(visible)
        estimated = state.camera_from_body
        true = np.asarray(camera_from_reference_true, dtype=np.float64)
        self.translation_error_mm.append(float(np.linalg.norm(estimated[:3, 3] - true[:3, 3])))
        self.rotation_error_deg.append(np.degrees(rotation_angle_between(estimated[:3, :3], true[:3, :3])))
        if len(self.targets_ct):
            true_camera = transform_points(true @ self.reference_from_ct, self.targets_ct)
            est_camera = transform_points(estimated @ self.reference_from_ct, self.targets_ct)
            drawn_uv = result.targets_uv_px if result.targets_uv_px is not None else self.camera.project(est_camera)
            true_uv = self.camera.project(true_camera)
            self.overlay_error_px.extend(np.linalg.norm(drawn_uv - true_uv, axis=1).tolist())
            self.target_error_mm.extend(np.linalg.norm(est_camera - true_camera, axis=1).tolist())

    def summary(self) -> dict:
        return {
            "overlay_error_px": summarize_ms(self.overlay_error_px),
            "target_error_mm": summarize_ms(self.target_error_mm),
            "translation_error_mm": summarize_ms(self.translation_error_mm),
            "rotation_error_deg": summarize_ms(self.rotation_error_deg),
            "false_overlay_frames": self.false_overlay_frames,
            "false_overlay_frame_indices": self.false_overlay_frame_indices[:50],
            "stale_overlay_frames_while_unseen": self.stale_overlay_frames_unseen,
            "frames_reference_visible": self.frames_visible,
            "recall_ok_while_visible": (self.frames_ok_while_visible / self.frames_visible
                                        if self.frames_visible else None),
        }
