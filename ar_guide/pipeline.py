"""One frame in, one FrameResult out: detect -> pose -> status -> render -> compose.

No hidden I/O: sources, windows, writers and clocks belong to the apps.  The same pipeline runs
live, on a file, in tests and in the benchmark.
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import ToolTracking, TrackingGates
from ar_guide.geometry.transforms import invert_transform, transform_points
from ar_guide.render import annotations
from ar_guide.render.compose import compose_premultiplied
from ar_guide.tracking.aruco import DetectorSettings, MarkerDetector
from ar_guide.tracking.bodies import RigidBody
from ar_guide.tracking.pose import BodyPoseEstimator
from ar_guide.tracking.status import BodyState, BodyTracker, TrackingStatus

STAGES = ("detect", "pose", "render", "compose", "total")

#: Overlay colours (BGR) by tracking status, used in the HUD.
STATUS_COLOURS_BGR = {
    TrackingStatus.OK: (80, 220, 80),
    TrackingStatus.STALE: (0, 200, 255),
    TrackingStatus.LOST: (60, 60, 255),
}


@dataclasses.dataclass(frozen=True)
class TargetOverlay:
    """A target as the overlay needs it: name, CT position (mm), radius (mm), colour (BGR), and
    the registration's predicted TRE there (mm; None when not known)."""

    name: str
    position_ct: np.ndarray
    radius_mm: float
    color_bgr: tuple[int, int, int]
    tre_mm: float | None = None


@dataclasses.dataclass(frozen=True)
class RegistrationOverlay:
    """What the HUD says about the registration (DESIGN.md: its quality travels with it and is shown).

    method : how it was obtained; the HUD shows the part before the first " (" ("paired-point")
    fre_mm : fiducial registration error (RMS, mm) or None
    predicted_tre_mm : predicted TRE (mm) by target name
    """

    method: str
    fre_mm: float | None = None
    predicted_tre_mm: dict = dataclasses.field(default_factory=dict)


def target_label(target: TargetOverlay) -> str:
    """The label drawn at a target: "tumour  TRE 0.8 mm" when the predicted TRE is known."""
    if target.tre_mm is None:
        return target.name
    return f"{target.name}  TRE {target.tre_mm:.1f} mm"


def registration_hud_text(registration: RegistrationOverlay, active_target: str | None) -> str:
    """"registration: paired-point  FRE 0.42 mm  predicted TRE at tumour 0.80 mm".

    A target without a prediction says so ("predicted TRE at tumour: not computed"): a missing
    figure must not look like a good one.
    """
    parts = [f"registration: {registration.method.split(' (')[0]}"]
    if registration.fre_mm is not None:
        parts.append(f"FRE {registration.fre_mm:.2f} mm")
    if active_target is not None:
        tre = registration.predicted_tre_mm.get(active_target)
        parts.append(f"predicted TRE at {active_target} {tre:.2f} mm" if tre is not None
                     else f"predicted TRE at {active_target}: not computed")
    return "  ".join(parts)


@dataclasses.dataclass(frozen=True)
class PathOverlay:
    name: str
    entry_ct: np.ndarray
    target_ct: np.ndarray
    diameter_mm: float
    color_bgr: tuple[int, int, int]


@dataclasses.dataclass(frozen=True)
class ToolOverlay:
    """A tracked tool: its body and the tip offset in the body frame.

    tip_body : (1, 3) float64, mm.  The tool's axis is drawn from the markers' centre to the tip.
    """

    body: RigidBody
    tip_body: np.ndarray
    color_bgr: tuple[int, int, int] = (255, 255, 0)


@dataclasses.dataclass
class LayerToggles:
    """What the overlay shows; the live window flips these from the keyboard."""

    anatomy: bool = True
    targets: bool = True
    paths: bool = True
    hud: bool = True
    opacity_scale: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything one frame produced.

    states : tracking state per body name (the reference first)
    camera_from_ct : (4, 4) used for the overlay this frame, or None when nothing was drawn
    overlay : "current" (drawn from this frame's pose), "stale" (last pose, visibly marked) or "none"
    targets_uv_px : (T, 2) where the targets were drawn (NaN where not drawn); None if no overlay
    timings_ms : per stage, keys of STAGES
    image_bgr : the composited frame (the input frame, drawn over in place)
    """

    frame_index: int
    timestamp_s: float
    states: dict[str, BodyState]
    camera_from_ct: np.ndarray | None
    overlay: str
    targets_uv_px: np.ndarray | None
    markers_detected: int
    timings_ms: dict[str, float]
    image_bgr: np.ndarray

    @property
    def reference_state(self) -> BodyState:
        return next(iter(self.states.values()))


class OverlayPipeline:
    """Tracks the reference (and tools) and draws the registered scene on each frame.

    reference_from_ct : (4, 4) the registration, mm
    renderer : an AnatomyRenderer for ``camera`` or None (no anatomy meshes)
    registration : what the HUD says about the registration (None: nothing)
    active_target : index into ``targets`` of the target whose predicted TRE the HUD shows (the
        live app cycles it); None for none
    """

    def __init__(self, camera: CameraModel, reference: RigidBody, reference_from_ct: np.ndarray,
                 renderer=None, targets: list[TargetOverlay] = (), paths: list[PathOverlay] = (),
                 tools: dict[str, ToolOverlay] | None = None, gates: TrackingGates = TrackingGates(),
                 detector_settings: DetectorSettings = DetectorSettings(),
                 registration: RegistrationOverlay | None = None,
                 tool_tracking: ToolTracking = ToolTracking()):
        self.camera = camera
        self.reference = reference
        self.reference_from_ct = np.asarray(reference_from_ct, dtype=np.float64)
        self.renderer = renderer
        self.targets = list(targets)
        self.paths = list(paths)
        self.tools = dict(tools or {})
        self.toggles = LayerToggles()
        self.registration = registration
        self.active_target: int | None = 0 if self.targets else None
        bodies = [reference] + [t.body for t in self.tools.values()]
        self._detectors = {}
        for body in bodies:
            if body.dictionary not in self._detectors:
                self._detectors[body.dictionary] = MarkerDetector(body.dictionary, detector_settings)
        self._estimators = {b.name: BodyPoseEstimator(b, camera, gates) for b in bodies}
        self._trackers = {b.name: BodyTracker(b.name, gates, centre_body=b.centre_body) for b in bodies}
        for name, tool in self.tools.items():
            # Small planar tools are ambiguous in most views: the stricter tool rule (status.py).
            self._trackers[name] = BodyTracker(name, gates, centre_body=tool.body.centre_body, tool=tool_tracking,
                                               tip_body=tool.tip_body.reshape(3))
        self._bodies = bodies
        self._targets_ct = (np.array([t.position_ct for t in self.targets], dtype=np.float64).reshape(-1, 3))
        self._gray = None

    def reset(self) -> None:
        for tracker in self._trackers.values():
            tracker.reset()

    def process(self, frame_index: int, timestamp_s: float, image_bgr: np.ndarray,
                hud_extra: tuple[tuple[str, tuple[int, int, int]], ...] = ()) -> FrameResult:
        """Track, render and draw one frame (in place).  ``hud_extra``: (text, BGR) lines the
        caller adds to the HUD (e.g. the live app's frame rate and latency)."""
        t0 = time.perf_counter()
        if self._gray is None or self._gray.shape != image_bgr.shape[:2]:
            self._gray = np.empty(image_bgr.shape[:2], np.uint8)
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY, dst=self._gray)
        detections = {name: det.detect(gray) for name, det in self._detectors.items()}
        t1 = time.perf_counter()

        states = {}
        for body in self._bodies:
            tracker = self._trackers[body.name]
            # The last trusted pose picks between the two planar solutions of an ambiguous frame.
            measurement = self._estimators[body.name].measure(
                detections[body.dictionary], gray, tracker.last_good_camera_from_body)
            states[body.name] = tracker.update(measurement, timestamp_s)
        t2 = time.perf_counter()

        reference_state = states[self.reference.name]
        overlay = "none"
        camera_from_ct = None
        rgba = None
        if reference_state.status is not TrackingStatus.LOST:
            overlay = "current" if reference_state.status is TrackingStatus.OK else "stale"
            camera_from_ct = reference_state.camera_from_body @ self.reference_from_ct
            if self.renderer is not None and self.toggles.anatomy:
                rgba = self.renderer.render(camera_from_ct, opacity_scale=self.toggles.opacity_scale)
        t3 = time.perf_counter()

        targets_uv = None
        if rgba is not None:
            compose_premultiplied(image_bgr, rgba, out=image_bgr, style=overlay)
        if camera_from_ct is not None:
            targets_uv = self._draw_plan(image_bgr, camera_from_ct, overlay)
            if overlay == "stale":
                annotations.draw_stale_marking(
                    image_bgr, f"STALE {reference_state.age_s:.2f} s - last pose, not current")
        else:
            annotations.draw_banner(image_bgr, "REFERENCE LOST - overlay hidden", STATUS_COLOURS_BGR[TrackingStatus.LOST])
        # A tool's pose is relative to the camera: its tip is right whatever the reference does.
        self._draw_tools(image_bgr, states)
        t4 = time.perf_counter()
        timings = {
            "detect": (t1 - t0) * 1e3,
            "pose": (t2 - t1) * 1e3,
            "render": (t3 - t2) * 1e3,
            "compose": (t4 - t3) * 1e3,
        }
        if self.toggles.hud:
            annotations.draw_hud(image_bgr, self._hud_lines(states, timings, t4 - t0) + list(hud_extra))
        timings["total"] = (time.perf_counter() - t0) * 1e3
        return FrameResult(
            frame_index=frame_index,
            timestamp_s=timestamp_s,
            states=states,
            camera_from_ct=camera_from_ct,
            overlay=overlay,
            targets_uv_px=targets_uv,
            markers_detected=sum(len(d) for d in detections.values()),
            timings_ms=timings,
            image_bgr=image_bgr,
        )

    def _draw_plan(self, image_bgr, camera_from_ct, style) -> np.ndarray:
        targets_camera = transform_points(camera_from_ct, self._targets_ct)
        if self.toggles.paths:
            for path in self.paths:
                entry_camera, target_camera = transform_points(camera_from_ct, np.stack([path.entry_ct, path.target_ct]))
                annotations.draw_path(image_bgr, self.camera, entry_camera, target_camera, path.diameter_mm,
                                      path.name, path.color_bgr, style=style)
        if self.toggles.targets:
            for target, position_camera in zip(self.targets, targets_camera):
                annotations.draw_target(image_bgr, self.camera, position_camera, target.radius_mm,
                                        target_label(target), target.color_bgr, style=style)
        return self.camera.project(targets_camera)

    def _draw_tools(self, image_bgr, states) -> None:
        for name, tool in self.tools.items():
            state = states[name]
            if state.status is TrackingStatus.OK:
                centre_camera, tip_camera = transform_points(
                    state.camera_from_body, np.vstack([tool.body.centre_body, tool.tip_body]))
                annotations.draw_tool_axis(image_bgr, self.camera, centre_camera, tip_camera, tool.color_bgr)
                annotations.draw_tool_tip(image_bgr, self.camera, tip_camera, name, tool.color_bgr)

    def tip_reference(self, states: dict[str, BodyState], tool_name: str) -> np.ndarray | None:
        """(3,) the tool's tip in the reference frame (mm) this frame, or None unless the tool and
        the reference are both OK (current poses; never a stale one)."""
        reference = states.get(self.reference.name)
        state = states.get(tool_name)
        if reference is None or state is None or reference.status is not TrackingStatus.OK \
                or state.status is not TrackingStatus.OK:
            return None
        reference_from_tool = invert_transform(reference.camera_from_body) @ state.camera_from_body
        return transform_points(reference_from_tool, self.tools[tool_name].tip_body)[0]

    def _tool_hud_line(self, name: str, states) -> tuple[str, tuple[int, int, int]] | None:
        """Distance from the tool's tip to the active target, when the tool is tracked."""
        target_name = self.active_target_name
        if target_name is None or states[name].status is not TrackingStatus.OK:
            return None
        tip_reference = self.tip_reference(states, name)
        if tip_reference is None:
            return (f"{name} tip to {target_name}: reference not current", STATUS_COLOURS_BGR[TrackingStatus.STALE])
        target = next(t for t in self.targets if t.name == target_name)
        tip_ct = transform_points(invert_transform(self.reference_from_ct), tip_reference)[0]
        distance = float(np.linalg.norm(tip_ct - target.position_ct))
        return (f"{name} tip to {target_name}: {distance:.1f} mm", self.tools[name].color_bgr)

    @property
    def active_target_name(self) -> str | None:
        """Name of the target the HUD reports on (``active_target``), or None."""
        if self.active_target is None or not self.targets:
            return None
        return self.targets[self.active_target % len(self.targets)].name

    def _hud_lines(self, states, timings, elapsed_s):
        lines = []
        for name, state in states.items():
            text = f"{name}: {state.status.value}"
            if state.status is TrackingStatus.OK:
                text += f"  {state.markers_used} markers  {state.reprojection_rms_px:.2f} px"
            elif state.reason:
                text += f"  ({state.reason})"
            lines.append((text, STATUS_COLOURS_BGR[state.status]))
        for name in self.tools:
            line = self._tool_hud_line(name, states)
            if line is not None:
                lines.append(line)
        if self.registration is not None:
            lines.append((registration_hud_text(self.registration, self.active_target_name), (230, 230, 230)))
        lines.append((f"frame {elapsed_s * 1e3:.1f} ms (detect {timings['detect']:.1f}, pose {timings['pose']:.1f}, "
                      f"render {timings['render']:.1f}, compose {timings['compose']:.1f})", (230, 230, 230)))
        return lines
