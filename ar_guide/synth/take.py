"""One take of the phantom: the world, the scripted motion and the camera, frame by frame.

:class:`Take` answers, for any time t (s): the true pose ``camera_from_reference`` (at t), the
board's visibility, and the camera frame exposed around t (motion blur over the exposure, sensor
noise, ...).  Ground truth is the pose at mid-exposure.  The sequence generator calls it frame by
frame; tests call it directly, e.g. for a clean frame without blur or noise.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import RenderSettings, SynthSettings
from ar_guide.geometry.transforms import invert_transform, transform_points
from ar_guide.synth.degrade import Developer, SensorModel
from ar_guide.synth.optics import make_canvas, synthetic_camera
from ar_guide.synth.phantom import Phantom, hand_capsules, make_phantom
from ar_guide.synth.raster import Lights, SceneRenderer, SubFrame, jitter_pattern
from ar_guide.synth.trajectory import SCRIPT_S, CameraPath, HandPath, Lighting
from ar_guide.synth.visibility import BoardVisibility, BoardVisibilityModel
from ar_guide.synth.world import HAND, build_world

#: Where the camera aims: this far from the board centre towards the tumour (0 = board centre),
#: so that the board and the target region share the view.
PIVOT_TOWARDS_TUMOUR = 0.5


@dataclasses.dataclass(frozen=True, eq=False)
class FrameTruth:
    """camera_from_reference : (4, 4) at mid-exposure; visibility of the board then."""

    camera_from_reference: np.ndarray
    visibility: BoardVisibility


class Take:
    """The scripted shot for an image size, duration and seed.

    The GL renderer is created on the first :meth:`render` (ground truth needs no OpenGL).
    """

    def __init__(self, width: int, height: int, duration_s: float, seed: int,
                 settings: SynthSettings = SynthSettings(), sensor: SensorModel = SensorModel()):
        self.settings = settings
        self.seed = int(seed)
        # A shortened take plays the script faster; its shutter is shortened alike, so that each
        # frame has the motion blur of the full take (tremor, in real time, blurs a little less).
        self.exposure_s = settings.exposure_s * min(1.0, float(duration_s) / SCRIPT_S)
        self.phantom: Phantom = make_phantom(seed, settings)
        self.camera: CameraModel = synthetic_camera(width, height)
        self.canvas = make_canvas(self.camera, RenderSettings().undistort_margin_px)
        w, h = self.phantom.board_size_mm
        board_centre = transform_points(self.phantom.ct_from_reference, [[w / 2, h / 2, 0.0]])[0]
        pivot = board_centre + PIVOT_TOWARDS_TUMOUR * (self.phantom.tumour_centre_ct - board_centre)
        self.camera_path = CameraPath(pivot, duration_s, seed)
        self.hand_path = HandPath(self.phantom.ct_from_reference, duration_s, seed)
        self.lighting = Lighting(board_centre, duration_s, seed)
        self.visibility_model = BoardVisibilityModel(
            self.phantom.board_markers_reference, self.phantom.board_corners_reference,
            self.phantom.board_size_mm, grid=settings.visibility_grid)
        self._capsules = hand_capsules()
        # Scene points whose image motion bounds the motion blur (see image_motion_px).
        outline = transform_points(self.phantom.ct_from_reference,
                                   [[0, 0, 0], [w, 0, 0], [w, h, 0], [0, h, 0], [w / 2, h / 2, 0]])
        skin = self.phantom.skin.vertices
        near_pivot = skin[np.linalg.norm(skin - pivot, axis=1) < 250.0][::50]
        self._motion_probes_ct = np.vstack([outline, near_pivot, self.phantom.entry_ct[None]])
        self._sensor = sensor
        self._renderer = None
        self._developer = None

    # -- ground truth ----------------------------------------------------------------------
    def camera_from_ct(self, t) -> np.ndarray:
        """(4, 4) for scalar t, (N, 4, 4) for an array of times."""
        poses = self.camera_path.ct_from_camera(t)
        if poses.ndim == 2:
            return invert_transform(poses)
        return np.stack([invert_transform(p) for p in poses])

    def hand_capsules_camera(self, t: float, camera_from_ct: np.ndarray) -> list | None:
        """The hand's capsules in the camera frame at t, or None when the hand is away."""
        if not self.hand_path.present(t):
            return None
        camera_from_hand = camera_from_ct @ self.hand_path.ct_from_hand(t)
        out = []
        for p0, p1, r in self._capsules:
            ends = transform_points(camera_from_hand, np.vstack([p0, p1]))
            out.append((ends[0], ends[1], r))
        return out

    def truth(self, t: float) -> FrameTruth:
        """Pose and board visibility at time t (s)."""
        camera_from_ct = self.camera_from_ct(float(t))
        camera_from_reference = camera_from_ct @ self.phantom.ct_from_reference
        visibility = self.visibility_model.evaluate(camera_from_reference, self.camera, self.canvas,
                                                    self.hand_capsules_camera(float(t), camera_from_ct))
        return FrameTruth(camera_from_reference, visibility)

    # -- exposure ------------------------------------------------------------------------------
    def image_motion_px(self, t0: float, t1: float) -> float:
        """How far the image moves between t0 and t1 (canvas px, the largest over the scene).

        Probes: the board's outline, points on the torso around the view's pivot and the hand's
        capsule ends (it moves on its own).  The far background (floor, walls) may move more while
        the camera turns; it is smooth and low in contrast, so its blur is left coarser.
        """
        poses = [self.camera_from_ct(t0), self.camera_from_ct(t1)]
        k = self.canvas.camera_matrix
        tracks = []
        for t, camera_from_ct in zip((t0, t1), poses):
            pts = transform_points(camera_from_ct, self._motion_probes_ct)
            caps = self.hand_capsules_camera(t, camera_from_ct)
            if caps is not None:
                pts = np.vstack([pts, [c[0] for c in caps], [c[1] for c in caps]])
            tracks.append(pts)
        if tracks[0].shape != tracks[1].shape:  # the hand enters or leaves during the exposure
            n = min(len(tracks[0]), len(tracks[1]))
            tracks = [tracks[0][:n], tracks[1][:n]]
        a, b = tracks
        front = (a[:, 2] > 50.0) & (b[:, 2] > 50.0)
        uv = [(k[:2, :2] @ (p[front, :2] / p[front, 2:3]).T).T + k[:2, 2] for p in (a, b)]
        # Only what is on the canvas at either end of the exposure can blur the image.
        size = np.asarray(self.canvas.size, dtype=np.float64)
        seen = np.zeros(len(uv[0]), bool)
        for p in uv:
            seen |= np.all((p >= 0.0) & (p <= size), axis=1)
        return float(np.max(np.linalg.norm(uv[1][seen] - uv[0][seen], axis=1), initial=0.0))

    def exposure_plan(self, t: float, base: int) -> tuple[int, int]:
        """(sub-frame renders, resolution level) for the frame at t.

        At least ``base`` renders, more until the image moves at most
        ``settings.motion_blur_max_step_px`` between two of them (at most ``base *
        settings.motion_blur_max_factor``).  Beyond ``settings.motion_blur_half_res_px`` of motion
        the blur hides fine detail: the frame is rendered at half resolution (level 1), where
        the step is measured in its own pixels and twice as many renders are allowed.
        """
        s = self.settings
        motion = self.image_motion_px(t - self.exposure_s / 2, t + self.exposure_s / 2)
        level = 1 if motion > s.motion_blur_half_res_px else 0
        cap = base * s.motion_blur_max_factor * (2 if level else 1)
        needed = int(np.ceil(motion * 0.5 ** level / s.motion_blur_max_step_px)) + 1
        return int(np.clip(needed, base, cap)), level

    def subframe_count(self, t: float, base: int) -> int:
        """Sub-frame renders for the frame at t (see :meth:`exposure_plan`)."""
        return self.exposure_plan(t, base)[0]

    def subframes(self, t: float, count: int, motion_blur: bool = True) -> list[SubFrame]:
        """``count`` sub-frames spread over the exposure around t (all at t without motion blur)."""
        e = self.exposure_s if motion_blur else 0.0
        offsets = e * ((np.arange(count) + 0.5) / count - 0.5)
        jitter = jitter_pattern(count)
        out = []
        for k in range(count):
            tk = t + float(offsets[k])
            camera_from_ct = self.camera_from_ct(tk)
            poses = {HAND: self.hand_path.ct_from_hand(tk)} if self.hand_path.present(tk) else {}
            out.append(SubFrame(camera_from_ct, (float(jitter[k, 0]), float(jitter[k, 1])), poses))
        return out

    def _ensure_renderer(self) -> None:
        if self._renderer is None:
            world = build_world(self.phantom, self.seed)
            self._renderer = SceneRenderer(self.canvas.camera_matrix, self.canvas.size, world)
            self._developer = Developer(self.canvas, self._sensor)

    def render_linear(self, t: float, samples: int, motion_blur: bool = True, level: int = 0) -> np.ndarray:
        """The mean canvas radiance around t: (Hc, Wc, 3) float32 (a reused buffer); ``level`` 1
        renders at half resolution (pass the same level to :meth:`distort`)."""
        self._ensure_renderer()
        light = self.lighting.at(t)
        lights = Lights(light.lamp_ct, light.lamp_power)
        return self._renderer.render(self.subframes(t, samples, motion_blur), lights, level)

    def render_static(self, camera_from_ct: np.ndarray, samples: int = 4, t: float = 0.0) -> np.ndarray:
        """A clean frame (no motion, noise, drift or hand) from any camera pose: (H, W, 3) uint8 BGR.

        Lit as at time t.  For tests that need the board somewhere the script never puts it.
        """
        self._ensure_renderer()
        jitter = jitter_pattern(samples)
        subs = [SubFrame(np.asarray(camera_from_ct, dtype=np.float64), (float(j[0]), float(j[1])), {})
                for j in jitter]
        light = self.lighting.at(t)
        linear = self._renderer.render(subs, Lights(light.lamp_ct, light.lamp_power))
        return self._developer.develop(linear, 1.0, (1.0, 1.0, 1.0), None, blur=True)

    def develop(self, canvas_linear: np.ndarray, t: float, rng: np.random.Generator | None,
                optics_blur: bool = True, lighting_drift: bool = True) -> np.ndarray:
        """Camera image (H, W, 3) uint8 BGR from a canvas render of time t."""
        return self.finish(self.distort(canvas_linear), t, rng, optics_blur, lighting_drift)

    def distort(self, canvas_linear: np.ndarray, level: int = 0) -> np.ndarray:
        """Canvas render -> new (H, W, 3) float32 linear image through the lens model."""
        return self._developer.distort(canvas_linear, level)

    def finish(self, image_linear: np.ndarray, t: float, rng: np.random.Generator | None,
               optics_blur: bool = True, lighting_drift: bool = True) -> np.ndarray:
        """Sensor and processing of a distorted linear image of time t -> (H, W, 3) uint8 BGR."""
        light = self.lighting.at(t)
        gain, wb = (light.gain, light.white_balance) if lighting_drift else (1.0, (1.0, 1.0, 1.0))
        return self._developer.finish(image_linear, gain, wb, rng, blur=optics_blur)

    def render(self, t: float, samples: int = 4, motion_blur: bool = True, noise_seed: int | None = None,
               optics_blur: bool = True, lighting_drift: bool = True, level: int = 0) -> np.ndarray:
        """One camera frame at t: (H, W, 3) uint8 BGR.  ``noise_seed`` None: no sensor noise."""
        linear = self.render_linear(t, samples, motion_blur, level)
        rng = None if noise_seed is None else np.random.default_rng(noise_seed)
        return self.finish(self.distort(linear, level), t, rng, optics_blur, lighting_drift)

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.release()
            self._renderer = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
