"""Tracking status of one body: OK, STALE or LOST, frame by frame (DESIGN.md, "Safety rules").

Rules (FIELD-NOTES.md, "Tracking status and safety"; values in TrackingGates):

- OK: this frame's measurement passed every gate: reprojection RMS; no jump from the last good
  pose beyond physical motion (speed x time since that pose + slack, for the body's centre and
  for its rotation); and, for an ambiguous planar pose (ratio below min_ambiguity_ratio), the
  solution kept is the one nearest the last good pose (no planar-ambiguity flip).
- STALE: no measurement this frame, or it was rejected, but the last good pose is younger than
  lost_after_s.  The state carries that last pose (and its time) so that the overlay can be
  drawn clearly marked as not current; it is never reported as OK.
- LOST: older than that, or never acquired: no pose at all.  (A PLUS bug kept sending the last
  pose after a loss; here a lost body has ``camera_from_body = None``.)

(Re)acquisition, when there is no recent good pose to compare with (start, after LOST, or
after a jump was rejected): a measurement must be unambiguous (ambiguity ratio at least
min_ambiguity_ratio: the ArUco library's start rule) and ``acquire_frames`` consecutive frames
must agree within the jump gate (a chance low-error fit of an ambiguous view, or a false marker,
rarely repeats in the next frame) -- unless the measurement has at least
``instant_acquire_min_markers`` markers and no old pose contradicts it (not after a rejected jump),
which a chance fit or a false id cannot produce.  Because acquisition compares new frames with each other,
not with the old pose, a real fast move never locks a body out: its new pose is confirmed after
``acquire_frames`` frames, even while the old pose is still shown as STALE.

Tools (``tool=ToolTracking()``): a small planar tool seen nearly face-on (a pointer held over the
patient) is ambiguous by the ratio test in most views, so under the rule above it would never be
tracked.  A tool may also be acquired from ambiguous frames, but only from strong, steady ones:
each with a ratio of at least ``ToolTracking.min_ambiguity_ratio`` and at least
``ToolTracking.min_markers`` markers, ``ToolTracking.acquire_frames`` in a row, each turned less
than ``agree_deg`` and its tip (``tip_body``) moved less than ``agree_mm`` from the frame before
(constants.py gives the simulation behind these values).  Once tracked, a tool follows the
same rules as any body.

Timestamps must be finite; if one goes backwards (a video seek or loop) the tracker resets.
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np

from ar_guide.constants import ToolTracking, TrackingGates
from ar_guide.geometry.transforms import rotation_angle_between, transform_points
from ar_guide.tracking.pose import PoseFailure, PoseMeasurement


class TrackingStatus(str, enum.Enum):
    OK = "OK"
    STALE = "STALE"
    LOST = "LOST"


@dataclasses.dataclass(frozen=True, eq=False)
class BodyState:
    """A body's tracking state in one frame.

    camera_from_body : (4, 4) float64, read-only.  OK: this frame's pose; STALE: the last good
        pose (show it clearly marked); LOST: None
    timestamp_s : this frame's time; pose_timestamp_s : when the carried pose was measured
    reprojection_rms_px, markers_used : this frame's measurement (also when it was rejected);
        None and 0 when nothing was measured
    reason : "ok", "not seen", "too few markers (1 < 2)", "reprojection 3.1 px > 2.0 px",
        "jump 80 mm in 0.033 s", "ambiguous planar pose (ratio 1.3 < 4)", "reacquiring (1/2)" ...
    """

    body: str
    status: TrackingStatus
    camera_from_body: np.ndarray | None
    timestamp_s: float
    pose_timestamp_s: float | None
    reprojection_rms_px: float | None
    markers_used: int
    reason: str

    @property
    def age_s(self) -> float | None:
        """Age of the carried pose (s): 0 when OK, > 0 when STALE, None when LOST."""
        if self.pose_timestamp_s is None:
            return None
        return self.timestamp_s - self.pose_timestamp_s


@dataclasses.dataclass(frozen=True, eq=False)
class _Pose:
    camera_from_body: np.ndarray
    timestamp_s: float
    measurement: PoseMeasurement
    count: int = 1


class BodyTracker:
    """Turns one body's per-frame measurements into OK / STALE / LOST states.

    name : the body's name (copied into every state)
    gates : thresholds (TrackingGates)
    centre_body : (3,) the body point whose motion the jump gate limits, mm; use the centre of
        the markers (RigidBody.centre_body) so that rotation noise about a far-away origin does
        not look like a jump.  Default: the body origin.
    tool : ToolTracking rules for acquiring a tool from ambiguous planar frames (module
        docstring); None (default): ambiguous frames are never acquired
    tip_body : (3,) the tool's tip in the body frame, mm, whose steadiness the tool rule checks;
        default ``centre_body``
    """

    def __init__(self, name: str, gates: TrackingGates = TrackingGates(), centre_body=None,
                 tool: ToolTracking | None = None, tip_body=None):
        self.name = name
        self.gates = gates
        self.centre_body = (np.zeros(3) if centre_body is None
                            else np.asarray(centre_body, dtype=np.float64).reshape(3).copy())
        self.tool = tool
        self.tip_body = (self.centre_body.copy() if tip_body is None
                         else np.asarray(tip_body, dtype=np.float64).reshape(3).copy())
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next pose must be acquired from scratch."""
        self._good: _Pose | None = None
        self._candidate: _Pose | None = None
        self._last_timestamp_s: float | None = None

    @property
    def last_good_camera_from_body(self) -> np.ndarray | None:
        """The last pose accepted as OK, if still younger than lost_after_s at the last update."""
        return None if self._good is None else self._good.camera_from_body

    def update(self, measurement: PoseMeasurement | PoseFailure | None, timestamp_s: float) -> BodyState:
        """The state for the frame at ``timestamp_s`` given its measurement (None: not seen)."""
        t = float(timestamp_s)
        if not math.isfinite(t):
            raise ValueError(f"timestamp must be finite, got {timestamp_s!r}")
        if self._last_timestamp_s is not None and t < self._last_timestamp_s:
            self.reset()
        previous_t = self._last_timestamp_s
        self._last_timestamp_s = t
        if self._good is not None and t - self._good.timestamp_s > self.gates.lost_after_s:
            self._good = None

        if not isinstance(measurement, PoseMeasurement):
            self._candidate = None
            reason = measurement.reason if isinstance(measurement, PoseFailure) else "not seen"
            markers = measurement.markers_seen if isinstance(measurement, PoseFailure) else 0
            return self._hold(t, reason, None, markers)

        m = measurement
        rms = float(m.reprojection_rms_px)
        if not (np.all(np.isfinite(m.camera_from_body)) and math.isfinite(rms)):
            self._candidate = None
            return self._hold(t, "invalid pose (NaN)", None, m.markers_used)
        g = self.gates
        if rms > g.max_reprojection_rms_px:
            self._candidate = None
            return self._hold(t, f"reprojection {rms:.1f} px > {g.max_reprojection_rms_px:.1f} px", rms,
                              m.markers_used)

        if self._good is not None:
            jump = self._jump(self._good, m.camera_from_body, t)
            if jump is None:
                if self._flipped(m, self._good.camera_from_body):
                    self._candidate = None
                    return self._hold(t, f"planar-ambiguity flip (ratio {m.ambiguity_ratio:.1f} < "
                                         f"{g.min_ambiguity_ratio:g})", rms, m.markers_used)
                self._good = _Pose(_frozen(m.camera_from_body), t, m)
                self._candidate = None
                return self._state(TrackingStatus.OK, t, "ok", rms, m.markers_used)
            reason = jump  # the body jumped: its new place must be acquired afresh
        else:
            reason = None

        if m.ambiguity_ratio < g.min_ambiguity_ratio:
            if self._tool_may_acquire(m):
                return self._acquire_ambiguous_tool(m, t, previous_t, reason)
            self._candidate = None
            return self._hold(t, reason or f"ambiguous planar pose (ratio {m.ambiguity_ratio:.1f} < "
                                           f"{g.min_ambiguity_ratio:g})", rms, m.markers_used)
        c = self._candidate
        if c is not None and c.timestamp_s == previous_t and self._jump(c, m.camera_from_body, t) is None:
            c = _Pose(_frozen(m.camera_from_body), t, m, c.count + 1)
        else:
            c = _Pose(_frozen(m.camera_from_body), t, m, 1)
        if c.count >= g.acquire_frames or (reason is None and m.markers_used >= g.instant_acquire_min_markers):
            self._good, self._candidate = c, None
            return self._state(TrackingStatus.OK, t, "ok", rms, m.markers_used)
        self._candidate = c
        return self._hold(t, reason or f"reacquiring ({c.count}/{g.acquire_frames})", rms, m.markers_used)

    # ------------------------------------------------------------------ tools

    def _tool_may_acquire(self, m: PoseMeasurement) -> bool:
        tool = self.tool
        return (tool is not None and m.ambiguity_ratio >= tool.min_ambiguity_ratio
                and m.markers_used >= tool.min_markers)

    def _acquire_ambiguous_tool(self, m: PoseMeasurement, t: float, previous_t, reason) -> BodyState:
        """Counts strong, steady ambiguous frames of a tool; OK after ToolTracking.acquire_frames."""
        tool = self.tool
        rms = float(m.reprojection_rms_px)
        c = self._candidate
        if c is not None and c.timestamp_s == previous_t and self._steady(c.camera_from_body, m.camera_from_body):
            c = _Pose(_frozen(m.camera_from_body), t, m, c.count + 1)
        else:
            c = _Pose(_frozen(m.camera_from_body), t, m, 1)
        if c.count >= tool.acquire_frames:
            self._good, self._candidate = c, None
            return self._state(TrackingStatus.OK, t, "ok", rms, m.markers_used)
        self._candidate = c
        return self._hold(t, reason or f"ambiguous planar pose (ratio {m.ambiguity_ratio:.1f}): confirming "
                                       f"({c.count}/{tool.acquire_frames})", rms, m.markers_used)

    def _steady(self, before: np.ndarray, after: np.ndarray) -> bool:
        """Consecutive tool poses that turned less than agree_deg and moved the tip less than agree_mm."""
        tool = self.tool
        angle = math.degrees(rotation_angle_between(before[:3, :3], after[:3, :3]))
        moved = float(np.linalg.norm(transform_points(after, self.tip_body)[0]
                                     - transform_points(before, self.tip_body)[0]))
        return angle < tool.agree_deg and moved < tool.agree_mm

    # ------------------------------------------------------------------ helpers

    def _jump(self, reference: _Pose, camera_from_body: np.ndarray, t: float) -> str | None:
        """None if the pose is within physical motion of ``reference``, else the reason."""
        g = self.gates
        dt = max(t - reference.timestamp_s, 0.0)
        old = transform_points(reference.camera_from_body, self.centre_body)[0]
        new = transform_points(camera_from_body, self.centre_body)[0]
        distance = float(np.linalg.norm(new - old))
        if distance > g.max_speed_mm_per_s * dt + g.jump_slack_mm:
            return f"jump {distance:.0f} mm in {dt:.3f} s"
        angle = math.degrees(rotation_angle_between(reference.camera_from_body[:3, :3], camera_from_body[:3, :3]))
        if angle > g.max_angular_speed_deg_per_s * dt + g.jump_slack_deg:
            return f"jump {angle:.0f} deg in {dt:.3f} s"
        return None

    def _flipped(self, m: PoseMeasurement, last_good: np.ndarray) -> bool:
        """An ambiguous planar pose whose other solution is nearer the last good pose."""
        if m.alternative_camera_from_body is None or m.ambiguity_ratio >= self.gates.min_ambiguity_ratio:
            return False
        this = rotation_angle_between(last_good[:3, :3], m.camera_from_body[:3, :3])
        other = rotation_angle_between(last_good[:3, :3], m.alternative_camera_from_body[:3, :3])
        return other < this

    def _hold(self, t, reason, rms, markers) -> BodyState:
        """No accepted pose this frame: STALE with the last good pose, or LOST."""
        if self._good is not None:
            return self._state(TrackingStatus.STALE, t, reason, rms, markers)
        return self._state(TrackingStatus.LOST, t, reason, rms, markers)

    def _state(self, status, t, reason, rms, markers) -> BodyState:
        good = self._good if status is not TrackingStatus.LOST else None
        return BodyState(
            body=self.name,
            status=status,
            camera_from_body=None if good is None else good.camera_from_body,
            timestamp_s=t,
            pose_timestamp_s=None if good is None else good.timestamp_s,
            reprojection_rms_px=None if rms is None else float(rms),
            markers_used=int(markers),
            reason=reason,
        )


def _frozen(matrix: np.ndarray) -> np.ndarray:
    out = np.array(matrix, dtype=np.float64, copy=True)
    out.setflags(write=False)
    return out
