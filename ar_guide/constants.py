"""Every tolerance and threshold in one place, named with its unit (cf. trimesh's ``constants.tol``).

Each value says where it comes from.  Modules import the group they need; tests may override
by constructing the dataclasses with other values.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class TrackingGates:
    """When a measured body pose may be shown as current (DESIGN.md, "Safety rules").

    Used by ar_guide.tracking.pose (counts, outliers) and ar_guide.tracking.status (the rest).
    """

    #: Fewest markers of the body that must be seen for a pose ("a single small marker is a
    #: poor patient reference", FIELD-NOTES.md).  Capped at the body's marker count, so a
    #: one-marker tool can be tracked; it then relies on the ambiguity ratio below.
    min_markers: int = 2
    #: Fewest image points (marker corners or ChArUco corners) for a pose; capped likewise.
    min_points: int = 8
    #: Largest RMS reprojection error of the body's points (px) for a pose to be accepted.
    #: Corners are good to 0.1-0.5 px (benchmarks/detector_settings.md), so a correct fit is
    #: well under 1 px (0.14-0.24 px on the real ChArUco photos; 0.6 px on the SciKit-Surgery
    #: video with its nominal, uncalibrated camera); 2 px means blur, a wrong calibration or a
    #: wrong body file.
    max_reprojection_rms_px: float = 2.0
    #: A marker (or ChArUco corner) with a corner further than this from its projection after
    #: the fit is an outlier (a false id, a reflection, a quad that caught a dark background)
    #: and is removed if a majority of the body remains.  Correct markers on the SciKit-Surgery
    #: video reach 1.7 px with its nominal, uncalibrated camera; a false marker is tens of px off.
    outlier_px: float = 3.0
    #: A body not measured in the current frame is STALE (last pose shown, clearly marked) until
    #: this long after its last good pose, then LOST (SlicerIGT Watchdog: 0.2-0.5 s, FIELD-NOTES.md).
    lost_after_s: float = 0.25
    #: Largest plausible motion of the body's centre relative to the camera, and rotation rate:
    #: a fast hand-held camera sweep.  A pose further from the last good one than
    #: speed * (time since it) + slack is a jump, not motion.  The slack covers pose noise
    #: between consecutive frames at high frame rates.
    max_speed_mm_per_s: float = 1500.0
    max_angular_speed_deg_per_s: float = 360.0
    jump_slack_mm: float = 5.0
    jump_slack_deg: float = 3.0
    #: Planar bodies: a pose is ambiguous unless the second IPPE solution's error is at least
    #: this many times the best one's (the ArUco library's rule, FIELD-NOTES.md).  Tracking
    #: starts only on unambiguous frames; while tracking, ambiguous frames keep the solution
    #: nearest the last good pose.
    min_ambiguity_ratio: float = 4.0
    #: The ratio divides by at least this corner-noise level (px).  With 4 points a single
    #: marker's best fit often has near-zero error by chance, which makes a plain ratio large
    #: on ambiguous views: in a simulation (f 560 px, 0.3 px noise, 40 mm marker at 400 and
    #: 800 mm, a 5-marker planar tool at 250 mm, tilts 0-60 deg, 3600 poses) 9 flipped poses
    #: passed the ratio test without a floor, 1 with 0.1 px, none with 0.2 px.
    ambiguity_noise_floor_px: float = 0.2
    #: (Re)acquisition, when there is no recent good pose to compare with: this many
    #: consecutive frames must agree (within the jump gate) before a pose is shown as OK.
    acquire_frames: int = 2
    #: ... except a measurement with at least this many markers, unambiguous and with no old
    #: pose it contradicts: a chance fit or a false id cannot produce that many consistent
    #: markers (outliers are removed one by one before, see outlier_px), so it is shown at
    #: once; the first frame of a video or a still image then has its overlay.
    instant_acquire_min_markers: int = 4


@dataclasses.dataclass(frozen=True)
class PoseSettings:
    """Numerical settings of the pose solver (ar_guide.tracking.pose)."""

    #: solvePnPRefineLM stops after this many iterations or when the step is below epsilon.
    refine_max_iterations: int = 30
    refine_epsilon: float = 1e-10
    #: Points within this fraction of their extent of one plane are solved as planar (IPPE,
    #: both solutions, then LM on the true points): the planar ambiguity exists for nearly flat
    #: sets too, e.g. a marker map measured on CT.
    near_planar_fraction: float = 0.05
    #: In-plane spread: the second singular value of the points must be at least this
    #: fraction of the first, otherwise the points are (nearly) on a line and give no pose.
    min_point_spread: float = 0.01
    #: Two refined IPPE solutions closer than this (rad) are one solution.
    same_solution_angle_rad: float = 1e-3
    #: A marker is square (IPPE_SQUARE applies) when its corners fit a square to this
    #: fraction of its side.
    square_tolerance: float = 1e-3
    #: Outlier removal tries leaving out each of this many worst groups per round.
    outlier_candidates: int = 3


@dataclasses.dataclass(frozen=True)
class EdgeRefinement:
    """Sub-pixel marker corners from the marker's straight outer edges (ar_guide.tracking.aruco).

    OpenCV's cornerSubPix works in a window of 0.3 marker cells, which for 20-40 px markers is
    3x3 px and barely moves the contour's integer corners (0.6-0.9 px mean error on exact
    synthetic frames).  Fitting lines to the outer black-white edges next to each corner and
    intersecting them gave 0.05-0.1 px mean (0.13 px at the 90th percentile) on the same
    frames, for about 0.1 ms per marker (tests/test_aruco.py, benchmarks/detector_settings.py).
    """

    #: Edge profiles run this many marker cells inwards and outwards across the outer edge
    #: (the black border is one cell wide; the quiet zone at least one cell).
    profile_cells: float = 0.6
    #: ... but at most this far (px): an edge blurred by sigma spans about +-2 sigma, and the
    #: first guess is within about 1.5 px.
    profile_max_px: float = 4.0
    #: Gradient samples below this fraction of a profile's strongest are left out of the edge
    #: centroid (sensor noise on the flat parts would pull it towards the profile's middle).
    edge_fraction: float = 0.2
    #: Profile sample spacing (px) and number of profiles per edge segment.
    profile_step_px: float = 0.5
    profiles_per_segment: int = 8
    #: Segments start this far from the corner (px, and cells: the corner's blur spoils the
    #: profiles there) and reach at most this far along the side (px: lens distortion bends
    #: long edges, so each corner uses the edge next to it only).
    segment_start_px: float = 1.5
    segment_start_cells: float = 0.5
    segment_max_px: float = 40.0
    #: Profiles whose black-white contrast is below this (grey levels) or below this fraction of
    #: the marker's median contrast are ignored (occlusion, glare, image border).
    min_contrast: float = 10.0
    min_contrast_fraction: float = 0.2
    #: Edge points further than this from the first line fit (px) are dropped before the refit.
    max_line_residual_px: float = 0.5
    #: Rounds of (re-centre profiles, fit lines, intersect).  A third round, 12 profiles and
    #: 0.25 px steps lower the error from 0.09 to 0.08 px (synthetic frames) but cost 3.5x.
    iterations: int = 2
    #: ... then more rounds, up to max_iterations, while a corner still moves more than
    #: converged_px (OpenCV's corner was far off, up to 2 px on 20 px markers).
    max_iterations: int = 4
    converged_px: float = 0.1
    #: A refined corner further than max(px, cells) from OpenCV's is rejected (kept as it was).
    max_shift_px: float = 3.0
    max_shift_cells: float = 0.8


@dataclasses.dataclass(frozen=True)
class BodyTolerances:
    """Checks on rigid-body definitions (ar_guide.tracking.bodies)."""

    #: A body is planar when every corner lies within this distance of one plane.  Board and
    #: marker-map files hold exact decimals, so only rounding error is allowed.
    planar_mm: float = 1e-6
    #: Smallest marker side (mm) accepted in a body definition: below this a file is wrong
    #: (e.g. metres instead of millimetres), not a tiny marker.
    min_marker_side_mm: float = 1.0
    #: SciKit-Surgery rows give a marker centre and its corners; they must agree to this (mm).
    centre_mismatch_mm: float = 0.01


@dataclasses.dataclass(frozen=True)
class RenderSettings:
    """Offscreen anatomy rendering, 2-D annotations and compositing (ar_guide.render)."""

    #: Distortion is applied by remapping a pinhole render; the pinhole canvas covers the
    #: undistorted footprint of the image plus this margin (px).
    undistort_margin_px: int = 4
    #: Pinhole canvas resolution relative to the camera's focal length.  1.0 samples the canvas
    #: at least as densely as the image everywhere for barrel distortion; lower is faster.
    canvas_scale: float = 1.0
    #: Largest canvas side (px); a wider footprint lowers the scale (llvmpipe allows 16384).
    max_canvas_side_px: int = 8192
    #: Fixed clip planes (mm from the camera centre).  With a 24-bit depth buffer the depth
    #: step at 500 mm is z^2 / (near * 2^24) = 0.0015 mm, far below anything visible.
    near_mm: float = 10.0
    far_mm: float = 5000.0
    #: Headlight shading (Blinn-Phong with the light at the camera centre, so H = L = V).
    ambient: float = 0.30
    diffuse: float = 0.70
    specular: float = 0.25
    shininess: float = 24.0
    #: A layer whose opacity times opacity_scale reaches this is drawn in the opaque pass.
    opaque_alpha: float = 0.999
    #: Annotations: projected radius of a target disc is clipped to [min, max] px.
    target_min_radius_px: float = 4.0
    target_max_radius_px: float = 400.0
    #: Samples per drawn path segment (distortion bends straight 3-D lines in the image).
    path_samples: int = 64
    #: Text height as a fraction of the image height, and its floor in px (legible at 640x480).
    text_height_fraction: float = 0.028
    text_min_height_px: float = 13.0
    #: Stale overlay: kept saturation (0 = grey), brightness factor, opacity factor between
    #: the diagonal hatch stripes, and the stripe period (px).  A stale pose must never look
    #: current (DESIGN.md, "Safety rules").
    stale_saturation: float = 0.0
    stale_brightness: float = 0.75
    stale_hatch_alpha: float = 0.35
    stale_hatch_period_px: int = 12


@dataclasses.dataclass(frozen=True)
class SceneLimits:
    """Checks and defaults applied when a scene file is loaded (ar_guide/scene.py)."""

    #: reference_from_ct may deviate this much from a rotation (|R R^T - I| and last row) and
    #: still be accepted, then is projected onto the nearest rotation (SVD).  1e-4 accepts a
    #: matrix printed with 6 decimals; a scale error of 1e-4 moves a point 200 mm away by 0.02 mm.
    rigid_atol: float = 1e-4
    #: A planned path shorter than this (entry to target) is a mistake in the plan.
    min_path_length_mm: float = 1.0
    #: Drawn radius of a target without radius_mm (e.g. a Slicer control point).
    default_target_radius_mm: float = 5.0
    #: Needle diameter of a path without diameter_mm (scene format, version 1).
    default_path_diameter_mm: float = 1.0


@dataclasses.dataclass(frozen=True)
class SynthSettings:
    """The synthetic phantom sequence (ar_guide.synth).  Part of its cache key."""

    #: Exposure time of each frame (s).  Bright OR lighting lets webcams run 1/125 s.
    exposure_s: float = 0.008
    #: Motion blur: sub-frame renders are added until the image moves at most this much between
    #: two of them (px), up to this many times ``SequenceSpec.motion_blur_samples`` (twice that
    #: at half resolution, below).
    motion_blur_max_step_px: float = 1.5
    motion_blur_max_factor: int = 4
    #: Beyond this much image motion in one exposure (px) a frame is rendered at half
    #: resolution: the blur hides the finer sampling, and twice as many sub-frames fit.
    motion_blur_half_res_px: float = 12.0
    #: Needle planning: smallest distance from the needle to the vessel wall (mm; a common
    #: safety margin in percutaneous planning), to the printed plate's outline when the path is
    #: prolonged 200 mm out of the skin (mm), and the largest tilt from anterior (degrees).
    needle_vessel_clearance_mm: float = 5.0
    needle_board_clearance_mm: float = 20.0
    needle_max_tilt_deg: float = 45.0
    #: Ground-truth visibility: a marker counts only if all of its samples (a grid of this many
    #: per side, corners included) are inside the image and unoccluded.
    visibility_grid: int = 5
