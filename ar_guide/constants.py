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


@dataclasses.dataclass(frozen=True)
class CaptureSettings:
    """When the live calibration session takes a view, and when it has enough
    (ar_guide.calibration.capture, ``calibrate run --camera``)."""

    #: Image grid of the coverage map (columns, rows); the same grid as the calibration report.
    grid: tuple[int, int] = (8, 6)
    #: A view is taken only with at least this many corners (capped at half the board's): six
    #: pose parameters per view, and a partial board near an image corner is still worth having.
    min_corners: int = 12
    #: Steady board: every shared corner moved less than steady_px over the last steady_s.  At
    #: 1 px in a 1/30 s exposure a corner is smeared by under a pixel; 0.3 s is long enough for a
    #: held board to settle, short enough not to feel slow.
    steady_px: float = 1.0
    steady_s: float = 0.3
    #: Pose distance between two views: RMS image displacement of their common corners, as a
    #: fraction of the image diagonal (a view sharing fewer than 4 corners is a distinct pose).
    #: A view within near_duplicate_fraction of a view taken, and tilted within
    #: near_duplicate_tilt_deg of it, is refused whatever it adds: the same board position twice
    #: adds nothing to the solve (Zhang 2000 needs distinct orientations).  The tilt counts on
    #: its own because turning the board 35 deg about its centre moves its corners by only about
    #: 1.5 % of the diagonal, yet that is what determines the focal length.  At
    #: distinct_pose_fraction or more a view is taken even without new cells or tilt bins.
    near_duplicate_fraction: float = 0.04
    near_duplicate_tilt_deg: float = 10.0
    distinct_pose_fraction: float = 0.12
    #: Tilt bins of the tilt map: rings at these tilt angles (deg; below the first: face-on),
    #: each split into tilt_sectors directions.
    tilt_rings_deg: tuple[float, ...] = (10.0, 25.0, 40.0)
    tilt_sectors: int = 8
    #: Enough for a trusted solve: views, fraction of image cells touched by some view, and
    #: strongly tilted views (>= strong_tilt_deg) in at least this many of the 4 directions
    #: (top/bottom/left/right edge farther away).  Focal length and principal point are
    #: determined only by tilted views (Zhang 2000, section 3.3: parallel planes add no
    #: constraint); OpenCV's tutorial asks for 10-20 views covering the whole image; corners of
    #: the image are where distortion is largest and least constrained.
    min_views: int = 15
    min_cell_fraction: float = 0.8
    strong_tilt_deg: float = 20.0
    min_tilt_directions: int = 3
    #: Auto-capture stops at this many views (the solver's --max-views decides what it uses).
    max_views: int = 60
    #: Headless sessions end after this long without enough coverage (--max-seconds).
    max_seconds: float = 120.0
    #: The preview marks the detection result stale when it is older than this (s): SlicerIGT's
    #: watchdog uses 0.2-0.5 s (FIELD-NOTES.md).
    stale_after_s: float = 0.2


@dataclasses.dataclass(frozen=True)
class CalibrationCheckSettings:
    """Verdict thresholds of ``calibrate check`` (ar_guide.calibration.check)."""

    #: A good calibration reprojects a sharp board with RMS well under a pixel: plain OpenCV
    #: reaches 0.19-0.34 px on the real webcam sets of ../shared/data (data/README.md).
    good_reprojection_rms_px: float = 0.5
    #: Corners back-projected onto the fitted board plane, RMS distance error in % of the true
    #: distance, for corners at the "baseline" (0.5 % of 50 mm is 0.25 mm: sub-millimetre over
    #: a 200 mm board).
    good_spacing_rms_percent: float = 0.5
    #: The baseline: corners the fewest squares apart that are at least this far apart in the
    #: image (median, px), so that corner noise (typical_corner_noise_px) adds at most 0.25 %
    #: while a distortion error, which varies over the image, still shows.
    metric_baseline_px: float = 60.0
    #: Mean spacing error over horizontal minus vertical image pairs beyond this (%) means the
    #: pixel aspect (fx / fy) is wrong, or the printer scaled one axis; a mean over all pairs
    #: beyond it means a uniform scale error.
    aspect_percent: float = 0.5
    scale_percent: float = 0.5
    #: "Errors grow towards the image corners": spacing error RMS (%) of the corner pairs in the
    #: outer zone (beyond outer_radius of the half-diagonal from the principal point) over that
    #: of the inner zone (within inner_radius) at least this ratio, and the outer one above the
    #: good threshold.  The spacing is local, so the board pose cannot absorb it as it absorbs
    #: much of a distortion error in the reprojection residuals.  On simulated views covering the
    #: image (tests/test_calibration_check.py: 640x360, the synthetic lens, 0.05-0.2 px corner
    #: noise) the ratio was 2.0 with the distortion left out, 2.0-2.7 with k1 20 % off, 3.3-5.4
    #: with k2 and k3 left out, but 1.1-1.2 for the true calibration and 1.2-1.25 for a 3 % fx
    #: error or a board printed 2 % too wide.
    inner_radius: float = 0.45
    outer_radius: float = 0.7
    radial_growth_ratio: float = 1.6
    #: Fewest corner pairs in each zone to say anything about the growth.
    min_zone_pairs: int = 20
    #: Corner error typical of a sharp webcam view of a ChArUco board (px): the real tutorial
    #: photos calibrate to 0.18 px RMS (../shared/data/README.md).  Used to tell the user when
    #: the squares are too small in the image for the spacing figure to mean much.
    typical_corner_noise_px: float = 0.15


@dataclasses.dataclass(frozen=True)
class PrintLayout:
    """Printable calibration boards (ar_guide.calibration.printable); lengths on paper, mm."""

    #: Paper sizes (width, height) in portrait: ISO 216 A4, and ANSI US letter (8.5 x 11 in).
    a4_mm: tuple[float, float] = (210.0, 297.0)
    letter_mm: tuple[float, float] = (215.9, 279.4)
    #: No ink this close to the paper's edge: most desktop printers cannot print the outer
    #: 3-6.35 mm (a quarter inch is the usual worst case).  The white quiet zone may lie there.
    printer_margin_mm: float = 6.35
    #: White quiet zone around the pattern, in squares (chessboard, ChArUco) or markers (grid):
    #: findChessboardCorners "requires white space (like a square-thick border, the wider the
    #: better) around the board" (OpenCV documentation of findChessboardCorners).
    quiet_zone_squares: float = 1.0
    #: Margin text: font size (em, mm; 2.8 mm = 8 pt) of the first line and of the others, the
    #: line pitch as a multiple of the font size, and the smallest size a too-long line is
    #: shrunk to before it is cut.
    title_size_mm: float = 3.5
    text_size_mm: float = 2.8
    line_pitch: float = 1.35
    min_text_size_mm: float = 2.0
    #: The 100 mm ruler: tick lengths (every mm, every 5 mm, every 10 mm), tick and base-line
    #: widths, size of its numbers, and the gap between the text and the ruler.
    ruler_length_mm: float = 100.0
    ruler_ticks_mm: tuple[float, float, float] = (2.0, 3.0, 4.5)
    ruler_tick_width_mm: float = 0.2
    ruler_base_width_mm: float = 0.5
    ruler_number_size_mm: float = 2.5
    ruler_gap_mm: float = 3.0
    #: --dpi range of the PNG: below 72 DPI one mm tick is under 3 px; above 2400 DPI no
    #: printer resolves more and an A4 page is already 0.56 gigapixel.
    min_dpi: int = 72
    max_dpi: int = 2400
    #: Largest PNG written (pixels); beyond this, use SVG or PDF (exact at any size).
    max_png_pixels: int = 1_200_000_000


@dataclasses.dataclass(frozen=True)
class CalibrationSettings:
    """Camera calibration from views of a board (ar_guide.calibration: detect, coverage, solve,
    quality; ``ar-guide calibrate run``).  Figures quoted are from tests/test_calibration_*.py
    and docs/benchmarks.md ("Calibration")."""

    # -- detection ---------------------------------------------------------------------------
    #: Fewest ChArUco / grid corners for a view.  Each view costs 6 pose parameters, so 6
    #: corners leave 6 equations for the shared intrinsics; OpenCV's ChArUco sample takes >= 4.
    min_corners: int = 6
    #: The view's board points must not lie on a line: the second singular value of their
    #: centred board coordinates must be at least this fraction of the first (a 2x3 block of
    #: corners gives 0.5, one full row plus one corner about 0.15).  Collinear points give no
    #: homography, hence nothing for the intrinsics (Zhang 2000, sec. 3.1).
    min_corner_spread: float = 0.1
    #: The dictionary scan of a diagnosis names a dictionary only when it finds at least this
    #: many markers in one image (small dictionaries produce the odd false marker on texture).
    min_markers_to_name_dictionary: int = 3

    # -- solving ------------------------------------------------------------------------------
    #: Fewer views than this is an error: Zhang's closed form needs 3 views for the intrinsics
    #: (2 with zero skew), and distortion needs more.
    min_views: int = 3
    #: Outlier views are dropped one at a time, worst first, re-solving after each, while the
    #: worst view's RMS exceeds all three limits: median_factor x the median view RMS,
    #: the median plus mad_factor robust standard deviations (1.4826 MAD), and min_px (views
    #: under 0.5 px are never outliers: good corners reach 0.1-0.4 px).  On the SciKit-Surgery
    #: webcam set, findChessboardCorners mis-assigns corners in 2 views (3.5 and 3.1 px against
    #: 0.2-0.6 px for the rest); this rule drops exactly those two.
    outlier_median_factor: float = 3.0
    outlier_mad_factor: float = 3.0
    outlier_min_px: float = 0.5
    #: At most this fraction of the views is dropped, and never below min_views.
    max_dropped_fraction: float = 0.25
    #: LM iterations and step tolerance of cv2.calibrateCamera (OpenCV's default is 30 and
    #: DBL_EPSILON; 100 lets the rational model converge).
    max_iterations: int = 100
    #: Image grid (columns, rows) over which the distortion field of a result is sampled.
    distortion_grid: tuple[int, int] = (33, 19)

    # -- quality warnings (ar_guide.calibration.quality) --------------------------------------
    #: "For better results, we need at least 10 test patterns" (OpenCV calibration tutorial);
    #: Zhang (2000, fig. 4) shows the error falling steeply up to about 10 views.
    recommended_views: int = 10
    #: RMS reprojection error above this is suspicious: ChArUco and chessboard corners are good
    #: to 0.05-0.3 px, and real sets reach 0.19 px (OpenCV tutorial ChArUco photos) and 0.33 px
    #: (SciKit-Surgery webcam); blurred laparoscope frames give 1.0 px.
    max_rms_px: float = 0.5
    #: ... and above this the result is "not trustworthy" (MATLAB's calibrator guide calls a
    #: mean error above 1 px a problem).
    serious_rms_px: float = 1.0
    #: Above this RMS no camera model fits the corners: the board file or the detection is
    #: wrong; the calibration file is not written (the report is).
    refuse_rms_px: float = 5.0
    #: Relative standard deviation of fx and fy above which the focal length is uncertain.
    #: 0.5% of f moves a point at the image edge by 0.25% of the image width (1.6 px at 640 px);
    #: good sets give 0.1% (SciKit-Surgery webcam, 12 views) to 0.02% (20 synthetic views); the
    #: 4-view OpenCV tutorial set gives 3.3%, the 5 blurred laparoscope views 0.8%.
    max_focal_rel_std: float = 0.005
    serious_focal_rel_std: float = 0.02
    #: Standard deviation of cx (cy) above this fraction of the image width (height):
    #: 0.5% is 3.2 px at 640 px, 9.6 px at 1920 px.
    max_principal_point_std_fraction: float = 0.005
    #: Coverage grid (columns, rows) of the image, and the fraction of its cells that must hold
    #: corners of some view.  The outer ring of cells is where distortion is largest and least
    #: constrained; each quarter's outer corner cell must be reached by some view.
    coverage_grid: tuple[int, int] = (8, 6)
    min_covered_fraction: float = 0.6
    #: A view counts as tilted about an image axis beyond this angle (deg).  Zhang (2000,
    #: fig. 5) finds the focal length best determined with the plane 30-60 deg from
    #: fronto-parallel and degenerate near 0; Ricolfe-Viala and Sanchez-Salmeron recommend
    #: tilts around 45 deg.  At least min_tilted_views views beyond the angle about each axis.
    tilt_deg: float = 20.0
    min_tilted_views: int = 2
    #: fx / fy further than this from 1 (and beyond 3 standard deviations) is flagged: most
    #: cameras have square pixels, so it hints at a board printed with unequal scaling.
    max_aspect_deviation: float = 0.01
    #: A distortion model that folds over (the distorted radius stops growing) within the image
    #: is invalid there; the image corners are checked with this margin (fraction of the radius).
    distortion_fold_margin: float = 0.05
    #: More dropped views than this fraction is worth a warning.
    warn_dropped_fraction: float = 0.2

    # -- video sources -------------------------------------------------------------------------
    #: Frames considered from a video when --every is not given (every N-th frame so that
    #: about this many are candidates).
    video_candidates: int = 80
    #: A candidate frame whose edge blur (px, Gaussian sigma estimated at the board's edges) is
    #: above both this factor times the median of the candidates and min_px is motion blurred.
    blur_ratio: float = 1.5
    blur_min_px: float = 1.0
    #: Two views are near duplicates when their boards' centres are within this fraction of the
    #: image diagonal, their sizes within this ratio, and their tilts within this angle (deg).
    duplicate_centre_fraction: float = 0.05
    duplicate_size_ratio: float = 1.1
    duplicate_tilt_deg: float = 5.0


@dataclasses.dataclass(frozen=True)
class RegistrationLimits:
    """Refusals of paired-point registration and pivot calibration (ar_guide.geometry.registration,
    ar_guide.geometry.pivot, ar_guide.geometry.tre)."""

    #: Points are (nearly) collinear when the second singular value of the centred (weighted)
    #: points is below this fraction of the first, i.e. their RMS distance from the best-fit
    #: line is below 0.1% of their RMS spread along it (0.1 mm over 100 mm).  The rotation about
    #: that line is then fixed by offsets smaller than any localisation error (0.25 mm is a good
    #: optical pointer, Yaniv 2015, FIELD-NOTES.md): even 0.1 mm of error turns it by about a
    #: radian.  Above this ratio a registration is returned, and the predicted TRE (Fitzpatrick,
    #: West and Maurer 1998, eq. 46, which grows as 1 / that distance) shows how poor it is.
    collinear_ratio: float = 1e-3
    #: All points within this RMS distance of their centroid (mm) coincide: no registration.
    coincident_mm: float = 1e-6
    #: Two fiducials closer than this (mm) in either point set are one point entered twice under
    #: two names (fiducials are tens of mm apart; localisation scatter is about 0.1-1 mm).
    duplicate_fiducial_mm: float = 1e-3
    #: Pivot calibration: fewest poses and least orientation spread (SlicerIGT / IGSIO pivot
    #: calibration: MinimumOrientationDifferenceDeg = 15, FIELD-NOTES.md).  ar_guide measures
    #: the spread about the second axis the tool turned about (ar_guide.geometry.pivot), because
    #: a tool turned about one axis only leaves the tip undetermined along that axis.
    pivot_min_poses: int = 10
    pivot_min_spread_deg: float = 15.0
    #: Pose rotations may deviate this much from orthonormal (|R R^T - I|): a pose log holds
    #: quaternions with 6-7 significant digits (the same tolerance as SceneLimits.rigid_atol).
    pivot_rotation_atol: float = 1e-4
    #: Sphere fit: Gauss-Newton on the geometric distances stops after this many iterations or
    #: when the centre moves less than this (mm).
    sphere_max_iterations: int = 50
    sphere_step_mm: float = 1e-9
    #: The sphere fit needs the tool's origin to travel on a sphere about the tip: if the origins
    #: stay within this RMS distance of their mean (mm), the origin is (nearly) at the tip and
    #: only the algebraic method applies.
    sphere_min_origin_spread_mm: float = 1.0


@dataclasses.dataclass(frozen=True)
class SurfaceSettings:
    """Surface refinement of a registration: ICP of traced surface points to the CT mesh
    (ar_guide.registration.surface, ``ar-guide register surface``).  Figures quoted are from
    tests/test_surface_registration.py and docs/benchmarks.md ("Registration: surface ICP")."""

    #: Fewer traced points than this are refused: six pose parameters, and a robust kernel needs
    #: many more points than parameters to tell outliers from the fit.  A pointer traced at 30 Hz
    #: for a few seconds gives hundreds.
    min_points: int = 30
    #: The points must fix all six degrees of freedom (Gelfand, Ikemoto, Rusinkiewicz and Levoy
    #: 2003, "Geometrically stable sampling for the ICP algorithm": the eigenvalues of the
    #: point-to-plane normal matrix).  Measured as the RMS change of the point-to-surface
    #: distances per mm of the least constrained motion (a translation, or a rotation that moves
    #: the points at their RMS radius by 1 mm).  A plane, a cylinder and a sphere give 0.  On the
    #: liver mesh of ../shared/data, patches of 30 % of the surface seen from the front, above or
    #: the side give 0.13-0.28, 3 % patches 0.05-0.13, 1 % patches 0.04-0.11.  Below 0.05 ICP
    #: slides: the smooth front of the demo phantom's liver (0.03-0.04) did not converge in 4 of
    #: 6 runs from 10 mm / 10 degrees.  Conservative for a rigid torso: 20 % of the phantom's
    #: skin (0.035) is refused though it would give 0.1-0.4 mm; 10 % (0.013) gives up to 1 mm.
    min_constraint: float = 0.05
    #: Coarse-to-fine largest point-to-sample distance of a correspondence (mm), one ICP run per
    #: value: the first is 3x the 10 mm / 10 degree misregistration the refinement must recover
    #: (a rotation of 10 degrees about the organ's centre moves a surface 100 mm away by a
    #: further 17 mm); the last equals inlier_distance_mm.
    max_distances_mm: tuple[float, ...] = (30.0, 15.0, 7.5, 3.0)
    #: The mesh is sampled uniformly by area, each sample carrying its triangle's normal, with
    #: this spacing (mm) for the finest stage (at most max_samples samples; a 1 mm spacing puts
    #: about 6 samples on each of the liver mesh's 3.5 mm triangles), and with the stage's max
    #: distance times coarse_spacing_fraction for coarser stages (open3d's tensor ICP searches
    #: correspondences in a radius: 130 000 samples at 30 mm cost 0.3 s per iteration).
    sample_spacing_mm: float = 1.0
    max_samples: int = 200_000
    coarse_spacing_fraction: float = 0.25
    #: Tukey's biweight kernel on the point-to-plane residual: scale c * sigma, sigma the robust
    #: standard deviation (1.4826 * median) of the current point-to-surface distances; c = 4.685
    #: gives 95 % efficiency for Gaussian noise (Holland and Welsch 1977).  Clipped to at least
    #: min_kernel_mm (so noise-free data keep enough points) and at most the stage's distance.
    tukey_c: float = 4.685
    min_kernel_mm: float = 0.5
    #: ICP iterations per stage, and open3d's stopping rule: a stage has converged when the
    #: fitness (fraction of points with a correspondence) and the correspondence RMS (mm) change
    #: by less than these between iterations.  On the liver from 10 mm / 10 degrees a refinement
    #: takes 22-70 iterations in all (median 24; docs/benchmarks.md).
    max_iterations: int = 50
    relative_fitness: float = 1e-6
    relative_rmse_mm: float = 1e-6
    #: A stage has also converged when its last iteration moved no point by more than this (mm,
    #: a 30th of 0.3 mm tracking noise): the finest stage can end in a 2-cycle of correspondences
    #: swapping between neighbouring samples, steps of 1e-4-1e-2 mm that never settle open3d's
    #: rule.
    converged_step_mm: float = 0.01
    #: A point within this distance (mm) of the mesh after refinement is an inlier.  The 2 mm of
    #: navigation systems (FIELD-NOTES.md) plus the scatter of a pointer traced over skin.  The
    #: fit is compared with the initial one by the RMS of the distances capped at this value
    #: (every point counts; none dominates).
    inlier_distance_mm: float = 3.0
    #: Fewer inliers than this fraction after refinement: the points do not fit the mesh (wrong
    #: mesh, wrong side, a poor start); the initial registration is kept.
    min_inlier_fraction: float = 0.8
    #: Seed of the mesh sampling, so that a refinement is reproducible.
    sample_seed: int = 0


@dataclasses.dataclass(frozen=True)
class RegistrationWorkflow:
    """Point files, the registration report and pointer digitisation from a pose log
    (ar_guide.registration.points, ``ar-guide register``)."""

    #: The fiducial with the highest outlier score (ar_guide.registration.fiducials: its
    #: leave-one-out error over the error expected there from the other fiducials' fit) is
    #: flagged when the score exceeds outlier_score and its leave-one-out error outlier_min_mm
    #: (sub-millimetre errors are not worth re-digitising: navigation is held to about 2 mm,
    #: FIELD-NOTES.md).  Simulated (500 random layouts in 160 x 160 x 80 mm each, FLE 0.5 mm, one
    #: fiducial moved 3 mm, FLE not known independently): flagged 67 % / 87 % / 96 % / 99 % of the
    #: time with 4 / 5 / 6 / 8 fiducials, a wrong fiducial 5 % / 0.4 % / 0.2 % / 0 %; with no
    #: outlier a wrong flag 12 % / 3 % / 2 % / 1 % (0 % when the FLE is known, e.g. from the
    #: pivot calibration).  The rule "leave-one-out above twice the median" flagged a wrong
    #: fiducial in 10-33 % of the same trials.
    outlier_score: float = 3.0
    outlier_min_mm: float = 1.0
    #: Points sampled along each planned path, entry and target included, for its largest
    #: predicted TRE.
    path_samples: int = 21
    #: Digitising from a pose log: the pointer's tip counts as held on a fiducial while, smoothed
    #: by a running median over smooth_s, it stays within still_mm of the period's median for at
    #: least hold_s (both bodies tracked OK).  A hand holds a pointer tip on a divot to well under
    #: 0.5 mm; moving between fiducials takes it tens of mm away.  The median over ~6 frames at
    #: 30 fps halves per-frame tracking noise, which otherwise makes single frames jump by more.
    still_mm: float = 0.5
    hold_s: float = 1.0
    smooth_s: float = 0.2
    #: A gap between tracked samples longer than this (s) ends a held period (the pointer or the
    #: reference was lost: what happened in between is unknown).
    max_gap_s: float = 0.25


@dataclasses.dataclass(frozen=True)
class ToolTracking:
    """Acquiring a hand-held tool (a pointer) whose planar pose is ambiguous (ar_guide.tracking.status).

    A small planar tool seen nearly face-on has two IPPE poses whose reprojection errors differ by
    less than TrackingGates.min_ambiguity_ratio (4, the ArUco library's rule, made for single
    markers), and the tip, 100 mm or more from the markers, swings tens of mm between them.
    SciKit-Surgery's pointer in multipattern.avi (5 markers, 255 mm away, 11 degrees from face-on,
    nominal camera) has ratio 2.5-2.8 in all 10 frames; LM from the second IPPE start falls back
    into the first (one minimum), whose tip stays within 2 mm over the frames; the second start
    would put the tip 38 mm away, 30 mm above the plate (tests/test_tools.py).

    Simulated (benchmarks/tool_tracking.py; docs/benchmarks.md, "Registration: pivot and pointer"):
    that pointer, 5-6 markers at 200-600 mm, tilted 0-70 degrees, f 560 px, corner noise 0.3-1 px,
    with and without a 3 % focal / 0.05 k1 calibration error, moving slowly, 7 x 1500 sequences of
    15 frames (157 500 frames, 15 550 of them with the wrong branch as the best fit): this rule never
    showed the wrong branch, and tracked the pointer in 1.8-3.6 times as many sequences as the
    ArUco start rule (20-43 against 2 in the hardest cases), at a slightly larger tip error (p95
    2.5-2.9 mm against 2.0-2.3 mm with an exact calibration: it admits views closer to face-on).
    The threshold 2: in a one-off single-frame run of the same protocol (19 000 frames) no frame
    with a ratio of 2 or more was over 5 degrees off (the largest ratio of such a frame was 1.95,
    with the calibration error), and no frame keeping the wrong one of two distinct minima had a
    ratio above 1.25.  The steadiness test adds a margin: a flip between frames turns the pose by
    about twice its tilt.
    """

    #: An ambiguous tool pose is acquired only with at least this ratio ...
    min_ambiguity_ratio: float = 2.0
    #: ... at least this many markers (the simulations had 5-6; with one marker's 4 corners the
    #: better solution fits them almost exactly by chance and the ratio means little, see
    #: TrackingGates.ambiguity_noise_floor_px) ...
    min_markers: int = 3
    #: ... over this many consecutive frames, each turned less than agree_deg from the one
    #: before and its tip moved less than agree_mm (a tip held still, or moved slowly:
    #: 2 mm per frame is 60 mm/s at 30 fps).
    acquire_frames: int = 3
    agree_deg: float = 2.0
    agree_mm: float = 2.0


@dataclasses.dataclass(frozen=True)
class PivotCapture:
    """Collecting poses for pivot calibration from a camera or a video (``ar-guide pivot``)."""

    #: A tracked pose is kept only when the tool turned at least this much since the last pose
    #: kept: 30 frames of a tool held still add nothing but weight on one orientation.
    min_step_deg: float = 1.0
    #: A camera session stops by itself after this many poses, or, without a window, after
    #: max_seconds.
    max_poses: int = 400
    max_seconds: float = 60.0
    #: A pivot RMS above this (mm) is reported as suspicious: a good optical pivot calibration
    #: reaches 0.25 mm (Yaniv 2015, FIELD-NOTES.md); several mm mean the tip slipped in its
    #: divot or the poses are poor.
    warn_rms_mm: float = 1.0
    #: The algebraic and sphere-fit tips agree on good data; further apart than this (mm) the
    #: data are suspect (a slipping tip, a flipped pose).
    warn_methods_mm: float = 1.0


@dataclasses.dataclass(frozen=True)
class GuidanceSettings:
    """The pointer's guidance to a planned path (ar_guide.geometry.guidance, the bull's-eye inset in
    ar_guide.render.annotations) and the depth cue of planned paths.

    Colour classes follow the accuracy approved navigation systems are held to, about 2 mm and
    2 degrees (Perez-Pachon et al. 2021, FIELD-NOTES.md): green within it, yellow within 5 mm /
    5 degrees (a correction is needed), red beyond.
    """

    #: Lateral offset of the tip from the planned path (mm): green below ok, yellow below warn.
    lateral_ok_mm: float = 2.0
    lateral_warn_mm: float = 5.0
    #: Angle between the tool's axis and the path (deg): the same classes.
    angle_ok_deg: float = 2.0
    angle_warn_deg: float = 5.0
    #: Rings of the bull's-eye (mm of lateral offset); the largest sets the inset's scale.
    rings_mm: tuple[float, ...] = (2.0, 5.0, 10.0)
    #: The tip beyond this (times the largest ring) is drawn clamped at the edge, as an arrow.
    inset_range_factor: float = 1.25
    #: Side of the square bull's-eye as a fraction of the image height, with a floor (px).
    inset_fraction: float = 0.26
    inset_min_px: int = 120
    #: The tool's axis is extended to the target's depth plane only while it points at least
    #: this close to the path's direction (deg); beyond, where it meets that plane means little.
    max_axis_extension_deg: float = 60.0
    #: A tool whose tip is closer than this (mm) to its markers' centre has no shaft to give an
    #: axis: its guidance has no angle and no extended axis.
    min_shaft_mm: float = 1.0
    #: Stable bull's-eye axes: "up" is the patient's superior direction projected across the
    #: path, unless the path runs within this angle (deg) of the superior-inferior axis; then
    #: "up" is anterior.
    min_up_angle_deg: float = 30.0
    #: Anatomy roles whose closed meshes count as "inside" for the depth cue of a path.
    inside_roles: tuple[str, ...] = ("skin", "organ", "target")
    #: Two crossings of a path's line with a mesh closer than this (mm) are one crossing (the
    #: line through an edge or a vertex shared by several triangles hits each of them).
    crossing_merge_mm: float = 1e-6


@dataclasses.dataclass(frozen=True)
class LiveSettings:
    """The live overlay app (ar_guide.apps.live): HUD figures, keys, messages."""

    #: Frame rate and latency on the HUD are taken over the frames shown in this window (s):
    #: long enough to be steady, short enough to show a slowdown at once.
    hud_window_s: float = 1.0
    #: Capture-to-display latency shown in amber above this (ms): surgeons' performance degrades
    #: measurably with 105 ms of added latency (Kumcu et al. 2016, FIELD-NOTES.md "Latency").
    latency_warn_ms: float = 105.0
    #: Anatomy opacity: each +/- key press changes the scale by this step, within [min, 1];
    #: key a hides the anatomy altogether, so the floor keeps it visible.
    opacity_step: float = 0.1
    min_opacity_scale: float = 0.1
    #: A confirmation ("screenshot saved ...") stays on screen this long (s).
    flash_s: float = 2.5
    #: How often the window is redrawn (and keys read) while paused with no new frame (s).
    idle_poll_s: float = 0.05


@dataclasses.dataclass(frozen=True)
class LiveCaptureSettings:
    """Camera loss and reconnection of the live overlay (ar_guide.io.sources.LiveCamera)."""

    #: No new frame for this long (s): the camera is lost (unplugged, stream dropped).  30 frame
    #: periods at 30 fps, so an exposure change or network jitter is not a loss; the overlay is
    #: hidden long before by the tracking status (TrackingGates.lost_after_s).
    stall_timeout_s: float = 1.0
    #: While lost, the camera is reopened this often (s), after its old capture was released.
    retry_every_s: float = 1.0
    #: While lost, an event comes this often (s), so that the window stays responsive (10 Hz).
    lost_tick_s: float = 0.1
    #: Network streams (RTSP/HTTP URLs): FFmpeg's open and read timeouts (ms).  FFmpeg's own
    #: default is 30 s, during which a dead stream would hold the capture thread.
    stream_open_timeout_ms: int = 5000
    stream_read_timeout_ms: int = 2000
    #: Longest wait for a lost capture's thread to give the device back before reopening anyway (s):
    #: a read blocked in a dropped stream returns after stream_read_timeout_ms, about 1 s after the
    #: loss is noticed; a device still held just fails to open again, and is retried.
    release_wait_s: float = 1.0


@dataclasses.dataclass(frozen=True)
class RecorderSettings:
    """The crash-safe session recording (ar_guide.io.recorder).

    Videos are cut into segments of segment_s, each a complete Matroska file closed with its
    index, and inside a segment a cluster is flushed to the file every cluster_ms: a crash or
    kill -9 loses at most the last cluster plus the frames still queued (measured in
    docs/recording.md).  H.264 with x264's ultrafast preset and zerolatency tune (no frame
    look-ahead, no B-frames: a frame's packet leaves the encoder at once), one encoder thread
    so that recording takes at most one core: at 1280x720 about 5.5 ms a frame for the raw
    video at crf 18 and 4.3 ms for the overlay at crf 23 (2-core machine, synthetic phantom).
    """

    #: Length of a video segment (s of recording time).
    segment_s: float = 1.0
    #: Matroska cluster length (ms): data reach the file at least this often.
    cluster_ms: int = 250
    #: Raw camera video: evidence and the input of replay, so visually lossless (x264's crf 18).
    raw_crf: int = 18
    #: Overlay video: for review, like play's output.
    overlay_crf: int = 23
    preset: str = "ultrafast"
    encoder_threads: int = 1
    #: Frames waiting for the writer thread, at most: beyond this the recording drops frames
    #: (counted, and listed in frames.csv) rather than stall the display.  10 frames at
    #: 1280x720 hold 55 MB (raw and overlay images); 0.33 s at 30 fps.
    max_queue_frames: int = 10
    #: frames.csv, poses.csv and segments.csv are flushed every row and fsync'ed this often (s).
    fsync_every_s: float = 1.0
