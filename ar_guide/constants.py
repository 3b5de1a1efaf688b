"""Every tolerance and threshold in one place, named with its unit (cf. trimesh's ``constants.tol``).

Each value says where it comes from.  Modules import the group they need; tests may override
by constructing the dataclasses with other values.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrackingGates:
    """When a measured body pose may be shown as current (DESIGN.md, "Safety rules")."""

    #: Fewest markers of the body that must be seen for a pose.
    min_markers: int = 2
    #: Fewest image points (marker corners or ChArUco corners) for a pose.
    min_points: int = 8
    #: Largest RMS reprojection error of the body's points (px) for a pose to be accepted.
    max_reprojection_rms_px: float = 2.0
    #: A body not measured in the current frame is STALE (last pose shown, clearly marked) until
    #: this long after its last good pose, then LOST (SlicerIGT Watchdog: 0.2-0.5 s, FIELD-NOTES.md).
    lost_after_s: float = 0.25
    #: Largest plausible motion of the camera relative to the patient between frames.
    max_speed_mm_per_s: float = 1500.0
    max_angular_speed_deg_per_s: float = 360.0
    #: Planar bodies: a pose is ambiguous unless the second IPPE solution's error is at least
    #: this many times the best one's (the ArUco library's rule, FIELD-NOTES.md).
    min_ambiguity_ratio: float = 4.0


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """Offscreen anatomy rendering."""

    #: Distortion is applied by remapping a pinhole render; the pinhole canvas covers the
    #: undistorted footprint of the image plus this margin (px).
    undistort_margin_px: int = 4
