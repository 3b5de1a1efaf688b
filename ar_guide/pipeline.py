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
from ar_guide.constants import GuidanceSettings, ToolTracking, TrackingGates
from ar_guide.geometry.guidance import PathBasis, PathSegment, PointerGuidance, level, path_basis, pointer_guidance
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
    """A planned path: entry and target (CT, mm), tool diameter (mm), colour (BGR).

    target_name : the scene target it leads to (None: a bare point); the pointer's guidance for
        the active target uses the first path to it
    segments : depth cue, (PathSegment, ...) covering 0 (entry) .. 1 (target), inside or outside
        the anatomy (session.path_depth); empty: drawn solid throughout
    """

    name: str
    entry_ct: np.ndarray
    target_ct: np.ndarray
    diameter_mm: float
    color_bgr: tuple[int, int, int]
    target_name: str | None = None
    segments: tuple[PathSegment, ...] = ()


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
    #: The pointer's bull's-eye inset (shown only with the HUD on).
    guidance: bool = True
    opacity_scale: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class GuidanceReadout:
    """What the bull's-eye inset showed this frame.

    tool, target : names; path : the planned path used (None: no path leads to the target)
    guidance : the figures (CT frame), None when the tool or the reference is not OK (never from a
        stale pose) or there is no path
    tip_ct : (3,) the tip in CT mm when both poses are OK, else None
    lines : (text, BGR) readouts as drawn
    inset : where the bull's-eye was drawn (annotations.InsetLayout), None when hidden
    """

    tool: str
    target: str | None
    path: str | None
    guidance: PointerGuidance | None
    tip_ct: np.ndarray | None
    lines: tuple[tuple[str, tuple[int, int, int]], ...]
    inset: annotations.InsetLayout | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class FrameResult:
    """Everything one frame produced.

    states : tracking state per body name (the reference first)
    camera_from_ct : (4, 4) used for the overlay this frame, or None when nothing was drawn
    overlay : "current" (drawn from this frame's pose), "stale" (last pose, visibly marked) or "none"
    targets_uv_px : (T, 2) where the targets were drawn (NaN where not drawn); None if no overlay
    timings_ms : per stage, keys of STAGES
    image_bgr : the composited frame (the input frame, drawn over in place)
    guidance : the pointer's bull's-eye readout, None without a tracked tool or an active target
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
    guidance: GuidanceReadout | None = None

    @property
    def reference_state(self) -> BodyState:
        return next(iter(self.states.values()))


class OverlayPipeline:
    """Tracks the reference (and tools) and draws the registered scene on each frame.

    reference_from_ct : (4, 4) the registration, mm
    renderer : an AnatomyRenderer for ``camera`` or None (no anatomy meshes)
    registration : what the HUD says about the registration (None: nothing)
    active_target : index into ``targets`` of the target whose predicted TRE the HUD shows (the
        live app cycles it); None for none.  The pointer's guidance (bull's-eye) leads to it.
    guidance_tool : the tool whose tip the bull's-eye follows (the first tool; None: no inset)
    """

    def __init__(self, camera: CameraModel, reference: RigidBody, reference_from_ct: np.ndarray,
                 renderer=None, targets: list[TargetOverlay] = (), paths: list[PathOverlay] = (),
                 tools: dict[str, ToolOverlay] | None = None, gates: TrackingGates = TrackingGates(),
                 detector_settings: DetectorSettings = DetectorSettings(),
                 registration: RegistrationOverlay | None = None,
                 tool_tracking: ToolTracking = ToolTracking(),
                 guidance_settings: GuidanceSettings = GuidanceSettings()):
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
        self.guidance_settings = guidance_settings
        self.guidance_tool: str | None = next(iter(self.tools), None)
        self._ct_from_reference = invert_transform(self.reference_from_ct)
        # Fixed per path (never from the tool), so the inset's left and right do not spin.
        self._path_bases: list[PathBasis] = [path_basis(p.entry_ct, p.target_ct, guidance_settings.min_up_angle_deg)
                                             for p in self.paths]
        #: Notes from preparing the paths' depth cue (meshes left out and why); set by session.
        self.path_depth_notes: tuple[str, ...] = ()

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
        return self._draw(frame_index, timestamp_s, image_bgr, states, hud_extra, t0, t1, t2,
                          sum(len(d) for d in detections.values()))

    def draw_states(self, frame_index: int, timestamp_s: float, image_bgr: np.ndarray,
                    states: dict[str, BodyState],
                    hud_extra: tuple[tuple[str, tuple[int, int, int]], ...] = ()) -> FrameResult:
        """Draw one frame (in place) from given tracking states instead of tracking it: for
        replaying a pose log and for tests.  ``states`` holds every body (the reference first)."""
        t0 = time.perf_counter()
        return self._draw(frame_index, timestamp_s, image_bgr, dict(states), hud_extra, t0, t0, t0, 0)

    def _draw(self, frame_index, timestamp_s, image_bgr, states, hud_extra, t0, t1, t2,
              markers_detected) -> FrameResult:
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
        readout = self.guidance_readout(states)
        if rgba is not None:
            compose_premultiplied(image_bgr, rgba, out=image_bgr, style=overlay)
        if camera_from_ct is not None:
            targets_uv = self._draw_plan(image_bgr, camera_from_ct, overlay, readout)
            if overlay == "stale":
                annotations.draw_stale_marking(
                    image_bgr, f"STALE {reference_state.age_s:.2f} s - last pose, not current")
        else:
            annotations.draw_banner(image_bgr, "REFERENCE LOST - overlay hidden",
                                    STATUS_COLOURS_BGR[TrackingStatus.LOST])
        # A tool's pose is relative to the camera: its tip is right whatever the reference does.
        self._draw_tools(image_bgr, states)
        if readout is not None and self.toggles.hud and self.toggles.guidance:
            # The HUD is drawn last (its frame time includes this); its box is known already.
            provisional = {"detect": 0.0, "pose": 0.0, "render": 0.0, "compose": 0.0}
            hud = annotations.hud_box(image_bgr, self._hud_lines(states, provisional, 0.0) + list(hud_extra))
            inset = self._draw_bullseye(image_bgr, readout, targets_uv, states, hud)
            readout = dataclasses.replace(readout, inset=inset)
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
            markers_detected=markers_detected,
            timings_ms=timings,
            image_bgr=image_bgr,
            guidance=readout,
        )

    # -- the pointer's guidance ------------------------------------------------------------------

    def path_for_target(self, target_name: str | None) -> int | None:
        """Index of the first planned path to the named target (by name, else ending inside its
        sphere), or None."""
        if target_name is None:
            return None
        for i, path in enumerate(self.paths):
            if path.target_name == target_name:
                return i
        target = next((t for t in self.targets if t.name == target_name), None)
        if target is None:
            return None
        for i, path in enumerate(self.paths):
            if path.target_name is None and np.linalg.norm(path.target_ct - target.position_ct) <= target.radius_mm:
                return i
        return None

    def guidance_readout(self, states: dict[str, BodyState]) -> GuidanceReadout | None:
        """The bull's-eye's content this frame: the guidance tool's tip and axis against the path
        to the active target.  None without a guidance tool or an active target.  Figures only
        while the tool and the reference are both OK (never from a stale pose)."""
        tool_name = self.guidance_tool
        target_name = self.active_target_name
        if tool_name is None or target_name is None or tool_name not in states:
            return None
        gs = self.guidance_settings
        neutral = (230, 230, 230)
        path_index = self.path_for_target(target_name)
        path_name = None if path_index is None else self.paths[path_index].name
        tool_state = states[tool_name]
        reference_state = states[self.reference.name]
        for body, state in ((tool_name, tool_state), (self.reference.name, reference_state)):
            if state.status is not TrackingStatus.OK:
                colour = STATUS_COLOURS_BGR[state.status]
                return GuidanceReadout(tool_name, target_name, path_name, None, None,
                                       ((f"{body} {state.status.value}: no guidance", colour),))
        tool = self.tools[tool_name]
        ct_from_tool = (self._ct_from_reference @ invert_transform(reference_state.camera_from_body)
                        @ tool_state.camera_from_body)
        centre_ct, tip_ct = transform_points(ct_from_tool, np.vstack([tool.body.centre_body, tool.tip_body]))
        target = next(t for t in self.targets if t.name == target_name)
        distance = float(np.linalg.norm(tip_ct - target.position_ct))
        if path_index is None:
            return GuidanceReadout(tool_name, target_name, None, None, tip_ct,
                                   ((f"tip {distance:.1f} mm to {target_name}", neutral),
                                    (f"no planned path to {target_name}", STATUS_COLOURS_BGR[TrackingStatus.STALE])))
        # The tool's axis as drawn: from the markers' centre to the tip (none when the tip is there).
        shaft = tip_ct - centre_ct
        axis = shaft if np.linalg.norm(shaft) >= gs.min_shaft_mm else None
        guidance = pointer_guidance(tip_ct, axis, self._path_bases[path_index], gs.max_axis_extension_deg)
        worst = level(guidance.lateral_mm, gs.lateral_ok_mm, gs.lateral_warn_mm)
        angle_text = ""
        if axis is not None:
            worst = max(worst, level(guidance.angle_deg, gs.angle_ok_deg, gs.angle_warn_deg))
            angle_text = f", {guidance.angle_deg:.1f} deg"
        if guidance.depth_to_go_mm >= 0.0:
            depth_line = (f"{guidance.depth_to_go_mm:.1f} mm to go along path", neutral)
        else:
            past = -guidance.depth_to_go_mm
            depth_line = (f"{past:.1f} mm past target",
                          annotations.LEVEL_COLOURS_BGR[level(past, gs.lateral_ok_mm, gs.lateral_warn_mm)])
        lines = ((f"tip {guidance.tip_to_target_mm:.1f} mm to {target_name}", neutral),
                 (f"{guidance.lateral_mm:.1f} mm off path{angle_text}", annotations.LEVEL_COLOURS_BGR[worst]),
                 depth_line)
        return GuidanceReadout(tool_name, target_name, path_name, guidance, tip_ct, lines)

    def _draw_bullseye(self, image_bgr, readout: GuidanceReadout, targets_uv, states,
                       hud_box) -> annotations.InsetLayout:
        # Never over the active target or the tool's tip.
        avoid = []
        if targets_uv is not None and self.active_target is not None:
            avoid.append(targets_uv[self.active_target % len(self.targets)])
        tool_state = states[readout.tool]
        if tool_state.camera_from_body is not None:
            tip_camera = transform_points(tool_state.camera_from_body, self.tools[readout.tool].tip_body)
            avoid.append(annotations.project_drawable(self.camera, tip_camera)[0][0])
        path_index = self.path_for_target(readout.target)
        labels = None if path_index is None else self._path_bases[path_index].labels()
        margin = 40.0 * max(image_bgr.shape[0] / 720.0, 0.6)
        return annotations.draw_bullseye(image_bgr, readout.guidance, readout.lines, labels=labels,
                                         avoid_uv_px=np.array(avoid).reshape(-1, 2), avoid_boxes=(hud_box,),
                                         avoid_radius_px=margin, guidance_settings=self.guidance_settings)

    def _target_detail(self, index: int, position_camera, readout: GuidanceReadout | None) -> str:
        """The target's depth: from the tracked tip (the active target), else from the camera."""
        if readout is not None and readout.tip_ct is not None and index == self.active_target % len(self.targets):
            if readout.guidance is not None:
                depth = readout.guidance.depth_to_go_mm
                return (f"{depth:.1f} mm from tip along path" if depth >= 0.0
                        else f"tip {-depth:.1f} mm past along path")
            return f"{np.linalg.norm(readout.tip_ct - self.targets[index].position_ct):.1f} mm from tip"
        return f"{np.linalg.norm(position_camera):.0f} mm from camera"

    def _draw_plan(self, image_bgr, camera_from_ct, style, readout: GuidanceReadout | None = None) -> np.ndarray:
        targets_camera = transform_points(camera_from_ct, self._targets_ct)
        if self.toggles.paths:
            for path in self.paths:
                entry_camera, target_camera = transform_points(camera_from_ct,
                                                               np.stack([path.entry_ct, path.target_ct]))
                annotations.draw_path(image_bgr, self.camera, entry_camera, target_camera, path.diameter_mm,
                                      path.name, path.color_bgr, style=style, segments=path.segments)
        if self.toggles.targets:
            for i, (target, position_camera) in enumerate(zip(self.targets, targets_camera)):
                annotations.draw_target(image_bgr, self.camera, position_camera, target.radius_mm,
                                        target_label(target), target.color_bgr, style=style,
                                        detail=self._target_detail(i, position_camera, readout))
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
