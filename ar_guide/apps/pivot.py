"""``ar-guide pivot``: pivot calibration of a tracked tool (a pointer); writes the tool file.

The user rests the tool's tip in a divot and pivots (stirs) the tool about it.  Every tracked
pose ``frame_from_tool`` then maps the same tip offset to the same point, which
ar_guide.geometry.pivot solves for, by the algebraic method (SlicerIGT's) and by a sphere fit
(Yaniv 2015, "Which pivot calibration?").  Both are run and reported; ``--method`` picks the one
written to the tool file (docs/registration.md, ar_guide.registration.files).

Poses come from

- ``--camera N`` or ``--video FILE``: the tool is tracked as the overlay tracks it (the tool rule
  of ar_guide.tracking.status: an ambiguous planar pose counts only once confirmed, so a
  planar-ambiguity flip never enters the fit).  Only OK poses are used, and only when the tool
  turned at least ``PivotCapture.min_step_deg`` since the last pose kept.  With ``--reference``
  (a scene, whose reference body is used, or a body file) the poses are ``reference_from_tool``
  from frames where both are OK, so the camera may move during the calibration;
- ``--poses LOG.csv``: a pose log (``play --poses``): the OK rows of the tool's body
  (``--body``, default the tool's name); ``--relative-to NAME`` pairs them with the OK rows of
  body NAME of the same frame (``reference_from_tool``).

A camera session shows a window where a display exists (the tool's axis, the poses and the
spread so far; s or Enter: finish, q or Esc: quit without writing) and runs headless otherwise,
until ``--max-seconds`` or ``PivotCapture.max_poses``.  Every user mistake, the refusals of the
pivot geometry included (fewer than 10 poses, less than 15 degrees of spread), is one line.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from ar_guide.constants import PivotCapture, ToolTracking, TrackingGates
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import invert_transform, rotation_angle_between, transform_points

METHODS = ("algebraic", "sphere")
TITLE = "ar_guide pivot calibration"
FINISH_KEYS = {ord("s"), 13, 10}
QUIT_KEYS = {ord("q"), 27}


def add_parser(sub) -> None:
    p = sub.add_parser(
        "pivot", help="pivot calibration of a tracked tool: find its tip, write the tool file",
        description="Rest the tool's tip in a divot and pivot the tool about it; the tip offset is the point "
                    "that stays still.  Poses come from a camera, a video or a pose log.  Both methods "
                    "(algebraic and sphere fit) are reported; --method picks the one written.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--camera", metavar="N_OR_URL", help="camera index or stream URL (or a video played "
                        "as a camera)")
    source.add_argument("--video", type=Path, help="a recorded video of the pivoting tool")
    source.add_argument("--poses", type=Path, help="a pose log (CSV, as written by play --poses)")
    p.add_argument("--tool", type=Path, required=True, help="tool file with the tool's 'name' and 'body' "
                   "(docs/registration.md); its tip, if any, is replaced")
    p.add_argument("--output", type=Path, required=True, help="write the calibrated tool file here (may be --tool)")
    p.add_argument("--reference", type=Path, help="camera/video: a scene (its reference body) or a body file; "
                   "poses are then taken relative to it, so the camera may move")
    p.add_argument("--calibration", type=Path, help="camera/video: camera calibration; default: the scene's "
                   "'calibration' when --reference is a scene")
    p.add_argument("--body", help="pose log: the body name of the tool's rows (default: the tool's name)")
    p.add_argument("--relative-to", metavar="NAME", help="pose log: take the tool's poses relative to this "
                   "body of the log (e.g. reference)")
    p.add_argument("--method", choices=METHODS, default="algebraic", help="the result written (default: algebraic)")
    p.add_argument("--no-window", action="store_true", help="never open a window")
    p.add_argument("--max-seconds", type=float, default=PivotCapture().max_seconds,
                   help="camera without a window: stop after this long (default %(default)g s)")
    p.set_defaults(run=run)


# ----------------------------------------------------------------------------------------------
# Poses


@dataclasses.dataclass(frozen=True, eq=False)
class PoseSet:
    """Tool poses for the calibration.

    frame_from_tool : (N, 4, 4) float64, mm; ``frame`` names the frame ("camera" or the
        reference body's name)
    frames : frames (or log frames) looked at; tracked : frames where the tool (and the
        reference, if any) was OK; not_ok : why the others were not (reason -> count)
    source : the file or camera the poses came from, for messages
    """

    frame_from_tool: np.ndarray
    frame: str
    frames: int
    tracked: int
    not_ok: Counter
    source: str


class DistinctPoses:
    """Keeps a pose only when the tool turned at least ``min_step_deg`` since the last one kept."""

    def __init__(self, min_step_deg: float):
        self.min_step_rad = math.radians(min_step_deg)
        self.poses: list[np.ndarray] = []

    def offer(self, frame_from_tool: np.ndarray) -> bool:
        if self.poses and rotation_angle_between(self.poses[-1][:3, :3], frame_from_tool[:3, :3]) < self.min_step_rad:
            return False
        self.poses.append(np.array(frame_from_tool, dtype=np.float64))
        return True

    def array(self) -> np.ndarray:
        return np.array(self.poses, dtype=np.float64).reshape(-1, 4, 4)


def poses_from_log(path: Path, body: str, relative_to: str | None,
                   settings: PivotCapture = PivotCapture()) -> PoseSet:
    """The OK poses of ``body`` in a pose log (relative to ``relative_to``'s OK pose of the same frame)."""
    from ar_guide.io.poselog import read_pose_log

    rows = read_pose_log(path)
    names = sorted({r.body for r in rows})
    for name, option in ((body, "--body"), (relative_to, "--relative-to")):
        if name is not None and name not in names:
            raise InputError(f"no rows of body {name!r} (bodies in this log: {', '.join(names) or 'none'}); "
                             f"name the tool's rows with {option}", path=path)
    tool_rows = {r.frame: r for r in rows if r.body == body}
    reference_rows = {r.frame: r for r in rows if r.body == relative_to} if relative_to else {}
    kept = DistinctPoses(settings.min_step_deg)
    not_ok = Counter()
    tracked = 0
    for frame in sorted(tool_rows):
        row = tool_rows[frame]
        if row.status != "OK" or row.camera_from_body is None:
            not_ok[f"{body} {row.status}"] += 1
            continue
        pose = row.camera_from_body
        if relative_to:
            ref = reference_rows.get(frame)
            if ref is None or ref.status != "OK" or ref.camera_from_body is None:
                not_ok[f"{relative_to} {'missing' if ref is None else ref.status}"] += 1
                continue
            pose = invert_transform(ref.camera_from_body) @ pose
        tracked += 1
        kept.offer(pose)
    return PoseSet(kept.array(), relative_to or "camera", len(tool_rows), tracked, not_ok, str(path))


class ToolPoseCollector:
    """Tracks the tool (and the reference) frame by frame, as the overlay pipeline does, and keeps
    the distinct OK poses.

    camera : CameraModel of the frames; tool : RigidBody; tip_body : (3,) the tool's tip if known
    (its steadiness gates acquisition, and the window draws the axis to it), else None;
    reference : RigidBody or None
    """

    def __init__(self, camera, tool, tip_body=None, reference=None, settings: PivotCapture = PivotCapture(),
                 gates: TrackingGates = TrackingGates(), tool_tracking: ToolTracking = ToolTracking()):
        from ar_guide.tracking.aruco import MarkerDetector
        from ar_guide.tracking.pose import BodyPoseEstimator
        from ar_guide.tracking.status import BodyTracker

        self.camera = camera
        self.tool = tool
        self.reference = reference
        self.tip_body = None if tip_body is None else np.asarray(tip_body, dtype=np.float64).reshape(3)
        bodies = [tool] + ([reference] if reference is not None else [])
        self._detectors = {b.dictionary: MarkerDetector(b.dictionary) for b in bodies}
        self._estimators = {b.name: BodyPoseEstimator(b, camera, gates) for b in bodies}
        self._trackers = {tool.name: BodyTracker(tool.name, gates, centre_body=tool.centre_body, tool=tool_tracking,
                                                 tip_body=self.tip_body)}
        if reference is not None:
            self._trackers[reference.name] = BodyTracker(reference.name, gates, centre_body=reference.centre_body)
        self._bodies = bodies
        self.kept = DistinctPoses(settings.min_step_deg)
        self.frames = 0
        self.tracked = 0
        self.not_ok = Counter()
        self.states = {}

    def process(self, timestamp_s: float, image_bgr: np.ndarray) -> bool:
        """Track one frame; True when a new pose was kept."""
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        detections = {d: detector.detect(gray) for d, detector in self._detectors.items()}
        from ar_guide.tracking.status import TrackingStatus

        self.frames += 1
        for body in self._bodies:
            tracker = self._trackers[body.name]
            measurement = self._estimators[body.name].measure(detections[body.dictionary], gray,
                                                              tracker.last_good_camera_from_body)
            self.states[body.name] = tracker.update(measurement, timestamp_s)
        for body in self._bodies:
            state = self.states[body.name]
            if state.status is not TrackingStatus.OK:
                self.not_ok[f"{body.name}: {state.reason}"] += 1
                return False
        pose = self.states[self.tool.name].camera_from_body
        if self.reference is not None:
            pose = invert_transform(self.states[self.reference.name].camera_from_body) @ pose
        self.tracked += 1
        return self.kept.offer(pose)

    def pose_set(self, source: str) -> PoseSet:
        frame = "camera" if self.reference is None else self.reference.name
        return PoseSet(self.kept.array(), frame, self.frames, self.tracked, self.not_ok, source)


# ----------------------------------------------------------------------------------------------
# Calibration


@dataclasses.dataclass(frozen=True, eq=False)
class Calibration:
    """Both methods' results (None where a method refused, with its reason in ``refusals``)."""

    results: dict
    refusals: dict
    chosen: str

    @property
    def result(self):
        return self.results[self.chosen]


def calibrate(poses: PoseSet, method: str) -> Calibration:
    """Runs both methods; InputError (naming the pose source) when the chosen one refuses."""
    from ar_guide.geometry.pivot import pivot_algebraic, pivot_sphere

    results, refusals = {}, {}
    for name, solve in (("algebraic", pivot_algebraic), ("sphere", pivot_sphere)):
        try:
            results[name] = solve(poses.frame_from_tool)
        except ValueError as exc:
            refusals[name] = str(exc)
    if method not in results:
        context = ""
        if poses.frames:
            context = f" (the tool was tracked in {poses.tracked} of {poses.frames} frames"
            if poses.tracked > len(poses.frame_from_tool):
                context += f", giving {len(poses.frame_from_tool)} distinct poses (turned at least " \
                           f"{PivotCapture().min_step_deg:g} degree from the one kept before)"
            if poses.not_ok:
                reason, count = poses.not_ok.most_common(1)[0]
                context += f"; not tracked most often because {reason!r}: {count} frame(s)"
            context += ")"
        raise InputError(f"{refusals[method]}{context}", path=poses.source)
    return Calibration(results, refusals, method)


def _vector(v) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"


def report_lines(tool_name: str, poses: PoseSet, calibration: Calibration,
                 settings: PivotCapture = PivotCapture()) -> list[str]:
    """What the command prints: both methods, their agreement, and warnings."""
    chosen = calibration.result
    lines = [f"pivot calibration of {tool_name!r}: {chosen.poses} poses ({poses.frame} frame), "
             f"orientation spread {chosen.spread_deg:.1f} deg"]
    if poses.frames:
        lines.append(f"  tracked in {poses.tracked} of {poses.frames} frames")
    for name in METHODS:
        r = calibration.results.get(name)
        mark = "*" if name == calibration.chosen else " "
        if r is None:
            lines.append(f" {mark}{name:9s}: refused: {calibration.refusals[name]}")
            continue
        lines.append(f" {mark}{name:9s}: tip {_vector(r.tip_tool)} mm (tool frame)  pivot point "
                     f"{_vector(r.pivot_frame)} mm ({poses.frame})  RMS {r.rms_mm:.3f} mm  "
                     f"max {float(np.max(r.residuals_mm)):.3f} mm")
    if len(calibration.results) == 2:
        gap = float(np.linalg.norm(calibration.results["algebraic"].tip_tool - calibration.results["sphere"].tip_tool))
        lines.append(f"  the two methods' tips are {gap:.3f} mm apart")
        if gap > settings.warn_methods_mm:
            lines.append(f"  warning: the methods disagree by more than {settings.warn_methods_mm:g} mm: did the "
                         "tip slip in its divot?")
    if chosen.rms_mm > settings.warn_rms_mm:
        lines.append(f"  warning: RMS {chosen.rms_mm:.2f} mm is above {settings.warn_rms_mm:g} mm (a good pivot "
                     "calibration reaches about 0.25 mm): keep the tip still in the divot and pivot slowly")
    return lines


# ----------------------------------------------------------------------------------------------
# The command


def run(args) -> int:
    from ar_guide.registration.files import ToolRecord, read_tool_file, write_tool_file
    from ar_guide.tracking.bodies import body_from_config

    record = read_tool_file(args.tool, require_tip=False)
    tool = body_from_config(record.body, record.base_dir, name=record.name, source=args.tool, key="body")
    _check_writable(args.output)
    if args.poses is not None:
        for option in ("reference", "calibration"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option} is for --camera and --video; a pose log holds poses already "
                                 "(use --relative-to NAME to take them relative to a body of the log)")
        poses = poses_from_log(args.poses, args.body or record.name, args.relative_to)
    else:
        for option in ("body", "relative_to"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')} is for --poses (a pose log)")
        poses = _track(args, tool, record)
        if poses is None:
            print("quit: nothing written", file=sys.stderr)
            return 1
    calibration = calibrate(poses, args.method)
    for line in report_lines(record.name, poses, calibration):
        print(line)
    result = calibration.result
    out = ToolRecord(name=record.name, body=record.body, tip_mm=result.tip_tool, pivot_rms_mm=result.rms_mm,
                     pivot_method=result.method, poses=result.poses, spread_deg=result.spread_deg,
                     pivot_point_mm=result.pivot_frame, description=record.description, base_dir=record.base_dir)
    write_tool_file(args.output, out)
    print(f"tool file: {args.output}")
    return 0


def _check_writable(path: Path) -> None:
    """Before minutes of pivoting, not after: can the tool file be written?"""
    folder = Path(path).parent if str(Path(path).parent) else Path(".")
    if not folder.is_dir():
        raise InputError("cannot write the tool file: no such folder", path=path)
    if Path(path).is_dir():
        raise InputError("cannot write the tool file: this is a folder", path=path)
    if not os.access(folder, os.W_OK):
        raise InputError("cannot write the tool file: the folder is not writable", path=path)


def _reference_and_calibration(args):
    """The reference body (or None) and the calibration path from --reference / --calibration."""
    from ar_guide.io.textfiles import load_yaml
    from ar_guide.tracking.bodies import body_from_config

    calibration = args.calibration
    reference = None
    if args.reference is not None:
        data = load_yaml(args.reference, "reference (scene or body file)")
        if isinstance(data, dict) and "reference" in data and "version" in data:
            from ar_guide.scene import load_scene

            scene = load_scene(args.reference, read_registration=False)
            reference = body_from_config(scene.reference, scene.base_dir, name="reference", source=scene.path,
                                         key="reference")
            calibration = calibration or scene.calibration_path
        else:
            reference = body_from_config({"file": str(args.reference.resolve())}, Path("."), name="reference",
                                         source=args.reference, key="reference")
    if calibration is None:
        raise InputError("no camera calibration: pass --calibration CAM.yaml (or a scene with 'calibration:' "
                         "as --reference)", key="--calibration")
    return reference, calibration


def _track(args, tool, record) -> PoseSet | None:
    from ar_guide.camera import load_camera
    from ar_guide.io.display import has_display
    from ar_guide.io.sources import CameraSource, VideoFileSource

    reference, calibration_path = _reference_and_calibration(args)
    camera = load_camera(calibration_path)
    settings = PivotCapture()
    if args.camera is not None:
        if not args.max_seconds > 0:
            raise InputError(f"expected a positive number of seconds, got {args.max_seconds:g}", key="--max-seconds")
        source, label, live = CameraSource(args.camera), str(args.camera), True
    else:
        source, label, live = VideoFileSource(args.video), str(args.video), False
    with source:
        if camera.image_size is None:
            print(f"ar-guide: note: {camera.source} does not say its image size; assuming it was made at "
                  f"{source.width}x{source.height}", file=sys.stderr)
            camera = dataclasses.replace(camera, image_size=(source.width, source.height))
        camera.check_image_size(source.width, source.height, what=label)
        collector = ToolPoseCollector(camera, tool, record.tip_mm, reference, settings)
        window = not args.no_window and has_display()
        if not args.no_window and not window and live:
            print("ar-guide: no display found; running the session without a window", file=sys.stderr)
        finished = _session(source, collector, window, live, args.max_seconds, settings)
    if not finished:
        return None
    return collector.pose_set(label)


def _session(source, collector: ToolPoseCollector, window: bool, live: bool, max_seconds: float,
             settings: PivotCapture) -> bool:
    """Feeds frames to the collector until the source ends, a key, or (live) the limits; False on quit."""
    from ar_guide.io.display import Window

    win = Window(TITLE, size=(source.width, source.height)) if window else None
    start = time.monotonic()
    last_note = start
    try:
        for frame in source:
            collector.process(frame.timestamp_s, frame.image_bgr)
            if win is not None:
                key = win.show(draw_session(frame.image_bgr, collector)) & 0xFF
                if key in QUIT_KEYS or not win.is_open():
                    return False
                if key in FINISH_KEYS:
                    return True
            now = time.monotonic()
            if live and len(collector.kept.poses) >= settings.max_poses:
                break
            if live and win is None:
                if now - start > max_seconds:
                    break
                if now - last_note > 5.0:
                    print(f"  {len(collector.kept.poses)} poses, spread {_spread(collector):.1f} deg",
                          file=sys.stderr)
                    last_note = now
    finally:
        if win is not None:
            win.close()
    return True


def _spread(collector: ToolPoseCollector) -> float:
    from ar_guide.geometry.pivot import orientation_spread_deg

    poses = collector.kept.array()
    return orientation_spread_deg(poses) if len(poses) >= 2 else 0.0


def draw_session(image_bgr: np.ndarray, collector: ToolPoseCollector) -> np.ndarray:
    """The live view: the tool's axis (to the tip estimated so far, or the known one) and the counts."""
    from ar_guide.constants import RegistrationLimits
    from ar_guide.geometry.pivot import pivot_algebraic
    from ar_guide.render import annotations
    from ar_guide.tracking.status import TrackingStatus

    frame = image_bgr.copy()
    poses = collector.kept.array()
    limits = RegistrationLimits()
    spread = _spread(collector)
    tip, rms = collector.tip_body, None
    if len(poses) >= limits.pivot_min_poses and spread >= limits.pivot_min_spread_deg:
        estimate = pivot_algebraic(poses)
        tip, rms = estimate.tip_tool, estimate.rms_mm
    state = collector.states.get(collector.tool.name)
    if state is not None and state.status is TrackingStatus.OK:
        centre = transform_points(state.camera_from_body, collector.tool.centre_body)[0]
        if tip is not None:
            tip_camera = transform_points(state.camera_from_body, tip)[0]
            annotations.draw_tool_axis(frame, collector.camera, centre, tip_camera)
            annotations.draw_tool_tip(frame, collector.camera, tip_camera, collector.tool.name)
        else:
            for axis, colour in zip(np.eye(3) * 30.0, ((0, 0, 255), (0, 255, 0), (255, 0, 0))):
                end = transform_points(state.camera_from_body, collector.tool.centre_body + axis)[0]
                annotations.draw_tool_axis(frame, collector.camera, centre, end, colour)
    status = "tracked" if state is not None and state.status is TrackingStatus.OK else \
        f"not tracked ({state.reason})" if state is not None else "waiting"
    lines = [(f"{collector.tool.name}: {status}", (230, 230, 230)),
             (f"poses {len(poses)} (at least {limits.pivot_min_poses})  spread {spread:.1f} deg (at least "
              f"{limits.pivot_min_spread_deg:g})" + ("" if rms is None else f"  RMS {rms:.2f} mm"), (80, 220, 80)),
             ("tip in the divot, pivot the tool in two directions.  s/Enter: finish  q/Esc: quit", (230, 230, 230))]
    annotations.draw_hud(frame, lines)
    return frame
