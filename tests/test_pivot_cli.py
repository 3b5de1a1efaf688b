"""``ar-guide pivot`` end to end: pose logs with known poses and tracking noise, synthetic videos of a
tool pivoting about its tip (with a fixed camera, and with a moving camera and a reference body),
and every refusal as one pinned line.

Tracking noise: each pose is fitted (Arun et al. 1987, ar_guide.geometry.registration) to the tool's
marker corners displaced by isotropic Gaussian noise of 0.2 mm, as an optical tracker's marker
localisation error perturbs the pose of a rigid body.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ar_guide.camera import CameraModel, save_camera
from ar_guide.cli import main
from ar_guide.geometry.registration import rigid_register
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.io.poselog import PoseLogWriter
from ar_guide.registration.files import read_tool_file
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline

sys.path.insert(0, str(Path(__file__).parent))
from tracking_images import degrade, marker_sheet  # noqa: E402

POINTER_MARKERS = {}
for _id, (_cx, _cy) in {208: (-17.5, -8.75), 295: (0.0, -8.75), 365: (17.5, -8.75),
                        31: (-17.5, 8.75), 1: (0.0, 8.75), 757: (17.5, 8.75)}.items():
    POINTER_MARKERS[_id] = [[_cx - 7.25, _cy - 7.25, 0.0], [_cx + 7.25, _cy - 7.25, 0.0],
                            [_cx + 7.25, _cy + 7.25, 0.0], [_cx - 7.25, _cy + 7.25, 0.0]]
CORNERS = np.array([c for m in POINTER_MARKERS.values() for c in m], dtype=np.float64)
TIP = np.array([-100.0, 0.0, 0.0])     # SciKit-Surgery's pointer: 100 mm along -x


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, *fragments: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ar-guide: error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def marker_map_yaml(markers: dict, indent: str) -> str:
    return "\n".join(f"{indent}- {{id: {i}, corners: {np.asarray(c).tolist()}}}" for i, c in markers.items())


def write_tool(path: Path, name="pointer", markers=POINTER_MARKERS, dictionary="DICT_ARUCO_ORIGINAL") -> Path:
    path.write_text(f"name: {name}\nbody:\n  type: marker_map\n  dictionary: {dictionary}\n  markers:\n"
                    f"{marker_map_yaml(markers, '    ')}\n")
    return path


def stirring_poses(rng, n, tip_tool, pivot, tilt_deg=25.0, base=np.eye(3)):
    """frame_from_tool (n, 4, 4) pivoting about ``pivot`` with the tip ``tip_tool`` there: tilted by
    up to ``tilt_deg`` in every direction (two turns of a stirring motion) plus a random spin."""
    poses = []
    for k in range(n):
        azimuth = 4.0 * np.pi * k / n
        tilt = math.radians(tilt_deg) * (0.6 + 0.4 * rng.random())
        rotation = rotation_from_rotvec([tilt * math.cos(azimuth), tilt * math.sin(azimuth),
                                         rng.uniform(-0.3, 0.3)]) @ base
        poses.append(make_transform(rotation, pivot - rotation @ tip_tool))
    return np.array(poses)


def with_tracking_noise(rng, frame_from_tool, noise_mm):
    """The pose refitted to the tool's corners displaced by N(0, noise_mm) each (Arun et al. 1987)."""
    seen = transform_points(frame_from_tool, CORNERS) + rng.normal(0.0, noise_mm, CORNERS.shape)
    return rigid_register(CORNERS, seen)


def write_log(path: Path, rows) -> Path:
    """rows: (frame, body, status, camera_from_body or None)."""
    with PoseLogWriter(path) as log:
        for frame, body, status, pose in rows:
            log.write(frame, frame / 30.0, body, status, pose, 0.4 if pose is not None else None,
                      6 if pose is not None else 0, "ok" if status == "OK" else "not seen")
    return path


# ----------------------------------------------------------------------------- pose logs

@pytest.mark.parametrize("seed", range(5))
def test_tip_within_0_3_mm_with_0_2_mm_tracking_noise(tmp_path, capsys, seed):
    rng = np.random.default_rng(seed)
    pivot_camera = np.array([20.0, -15.0, 420.0])
    truth = stirring_poses(rng, 60, TIP, pivot_camera, base=rotation_from_rotvec([0.2, -0.4, 0.1]))
    noisy = [with_tracking_noise(rng, p, 0.2) for p in truth]
    log = write_log(tmp_path / "poses.csv", [(k, "pointer", "OK", p) for k, p in enumerate(noisy)]
                    + [(60, "pointer", "LOST", None)])
    tool = write_tool(tmp_path / "tool.yaml")
    out = tmp_path / "calibrated" / "pointer.yaml"
    out.parent.mkdir()
    code, stdout, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out)
    assert code == 0, err
    record = read_tool_file(out)
    assert np.linalg.norm(record.tip_mm - TIP) < 0.3                # measured 0.09-0.20 mm
    np.testing.assert_allclose(record.pivot_point_mm, pivot_camera, atol=0.3)
    # The tip of one pose scatters by about 0.3 mm (24 corners 10-25 mm from the centre, 0.2 mm
    # each; the tip 100 mm away): so does the RMS (measured 0.29-0.35 mm).
    assert 0.1 < record.pivot_rms_mm < 0.4
    assert record.pivot_method == "algebraic" and record.poses == 60 and record.spread_deg > 30
    assert record.name == "pointer" and record.body["type"] == "marker_map"
    assert "algebraic:" in stdout and "sphere" in stdout and "the two methods' tips are" in stdout
    assert f"tool file: {out}" in stdout


def test_sphere_method_and_poses_relative_to_a_moving_reference(tmp_path, capsys):
    """Camera moving during the calibration: the pivot is fixed on the reference, not in the camera."""
    rng = np.random.default_rng(3)
    pivot_reference = np.array([120.0, 40.0, 0.0])
    reference_from_tool = stirring_poses(rng, 50, TIP, pivot_reference, base=rotation_from_rotvec([0.0, 0.3, 0.0]))
    rows = []
    for k, pose in enumerate(reference_from_tool):
        camera_from_reference = make_transform(rotation_from_rotvec([0.3 + 0.004 * k, -0.1, 0.02 * k]),
                                               [-30.0 + 2.0 * k, 10.0, 400.0 - k])
        rows.append((k, "reference", "OK", camera_from_reference))
        rows.append((k, "pointer", "OK", with_tracking_noise(rng, camera_from_reference @ pose, 0.2)))
    rows.append((50, "pointer", "OK", rows[-1][3]))          # no reference row in this frame: skipped
    log = write_log(tmp_path / "poses.csv", rows)
    tool = write_tool(tmp_path / "tool.yaml", name="stylus")
    out = tmp_path / "out.yaml"
    code, stdout, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out, "--body",
                                "pointer", "--relative-to", "reference", "--method", "sphere")
    assert code == 0, err
    record = read_tool_file(out)
    assert record.name == "stylus" and record.pivot_method == "sphere" and record.poses == 50
    assert np.linalg.norm(record.tip_mm - TIP) < 0.3
    np.testing.assert_allclose(record.pivot_point_mm, pivot_reference, atol=0.3)
    assert "(reference frame)" in stdout and "tracked in 50 of 51 frames" in stdout
    # Without --relative-to the camera moved, so the "pivot" is not fixed: a large RMS, flagged.
    code, stdout, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out, "--body", "pointer")
    assert code == 0 and "warning: RMS" in stdout and "keep the tip still" in stdout


def _log_of(tmp_path, poses, body="pointer"):
    return write_log(tmp_path / "poses.csv", [(k, body, "OK", p) for k, p in enumerate(poses)])


def test_refusals_are_one_pinned_line(tmp_path, capsys):
    rng = np.random.default_rng(0)
    tool = write_tool(tmp_path / "tool.yaml")
    out = tmp_path / "out.yaml"
    # Fewer than 10 poses.
    log = _log_of(tmp_path, stirring_poses(rng, 7, TIP, np.array([0.0, 0.0, 400.0])))
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out)
    assert code == 2 and not out.exists()
    assert_one_line_error(err, "poses.csv: pivot calibration needs at least 10 poses, got 7")
    # Turned too little: +-5 degrees of stirring.
    log = _log_of(tmp_path, stirring_poses(rng, 40, TIP, np.array([0.0, 0.0, 400.0]), tilt_deg=5.0))
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out)
    assert code == 2
    assert_one_line_error(err, "poses.csv: the tool turned only ", " degrees (at least 15 needed): pivot it more "
                               "widely about its tip")
    # The sphere fit needs the tool's origin away from the tip; the algebraic method does not.
    log = _log_of(tmp_path, stirring_poses(rng, 40, np.zeros(3), np.array([0.0, 0.0, 400.0])))
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out, "--method", "sphere")
    assert_one_line_error(err, "sphere fit: the tool's origin moved only", "use the algebraic method")
    code, stdout, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out)
    assert code == 0 and "sphere   : refused: sphere fit: the tool's origin moved only" in stdout
    # A log without the tool's rows.
    log = _log_of(tmp_path, stirring_poses(rng, 20, TIP, np.array([0.0, 0.0, 400.0])), body="reference")
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out)
    assert_one_line_error(err, "poses.csv: no rows of body 'pointer' (bodies in this log: reference); name the "
                               "tool's rows with --body")
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out, "--body", "reference",
                           "--relative-to", "patient")
    assert_one_line_error(err, "no rows of body 'patient'", "--relative-to")
    # Options that belong to the other sources.
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", out, "--reference", tool)
    assert_one_line_error(err, "--reference is for --camera and --video; a pose log holds poses already")
    code, _, err = run_cli(capsys, "pivot", "--video", log, "--tool", tool, "--output", out, "--body", "x")
    assert_one_line_error(err, "--body is for --poses (a pose log)")
    # Files.
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tmp_path / "none.yaml", "--output", out)
    assert_one_line_error(err, "none.yaml: tool file not found")
    (tmp_path / "nobody.yaml").write_text("name: pointer\n")
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tmp_path / "nobody.yaml", "--output", out)
    assert_one_line_error(err, "nobody.yaml: 'body': missing")
    code, _, err = run_cli(capsys, "pivot", "--poses", log, "--tool", tool, "--output", tmp_path / "no" / "t.yaml")
    assert_one_line_error(err, "t.yaml: cannot write the tool file: no such folder")
    code, _, err = run_cli(capsys, "pivot", "--video", log, "--tool", tool, "--output", out)
    assert_one_line_error(err, "'--calibration': no camera calibration: pass --calibration CAM.yaml")
    with pytest.raises(SystemExit):
        main(["pivot", "--poses", str(log), "--video", str(log), "--tool", str(tool), "--output", str(out)])
    assert "not allowed with argument" in capsys.readouterr().err


# ----------------------------------------------------------------------------- synthetic videos

class PlaneRenderer:
    """Flat textures seen by a fixed camera, nearest plane in front: rays are undistorted once (the
    slow part of tests/tracking_images.render_plane) and reused for every frame."""

    def __init__(self, camera: CameraModel, supersample: int = 2):
        w, h = camera.image_size
        k = supersample
        us = (np.arange(w * k) + 0.5) / k - 0.5
        vs = (np.arange(h * k) + 0.5) / k - 0.5
        uu, vv = np.meshgrid(us, vs)
        pts = np.stack([uu.ravel(), vv.ravel()], axis=1).reshape(-1, 1, 2)
        criteria = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-12)
        xy = cv2.undistortPoints(pts, camera.camera_matrix, camera.distortion, criteria=criteria).reshape(-1, 2)
        self.ray_x = xy[:, 0].reshape(h * k, w * k).astype(np.float32)    # rays (x, y, 1), camera frame
        self.ray_y = xy[:, 1].reshape(h * k, w * k).astype(np.float32)
        self.size = (w, h)

    def render(self, planes, background=110.0) -> np.ndarray:
        """planes: [(texture (h, w) uint8, mm_per_px, camera_from_plane)]; (H, W) uint8."""
        image = np.full(self.ray_x.shape, background, np.float32)
        depth = np.full(self.ray_x.shape, np.inf, np.float32)
        for texture, mm_per_px, camera_from_plane in planes:
            r, t = camera_from_plane[:3, :3], camera_from_plane[:3, 3]
            n = r[:, 2]
            with np.errstate(divide="ignore", invalid="ignore"):
                s = np.float32(n @ t) / (np.float32(n[0]) * self.ray_x + np.float32(n[1]) * self.ray_y
                                         + np.float32(n[2]))
            x, y, z = self.ray_x * s - np.float32(t[0]), self.ray_y * s - np.float32(t[1]), s - np.float32(t[2])
            scale = np.float32(1.0 / mm_per_px)
            u = (np.float32(r[0, 0]) * x + np.float32(r[1, 0]) * y + np.float32(r[2, 0]) * z) * scale - np.float32(0.5)
            v = (np.float32(r[0, 1]) * x + np.float32(r[1, 1]) * y + np.float32(r[2, 1]) * z) * scale - np.float32(0.5)
            front = (s > 0) & (s < depth) & (u >= 0) & (v >= 0) & (u <= texture.shape[1] - 1) & \
                (v <= texture.shape[0] - 1)
            sampled = cv2.remap(texture.astype(np.float32), u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            image[front] = sampled[front]
            depth[front] = s[front]
        return np.clip(np.rint(cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)), 0, 255).astype(np.uint8)


CAMERA = CameraModel(np.array([[600.0, 0, 319.5], [0, 600, 239.5], [0, 0, 1]]), np.array([0.05, -0.1, 0, 0, 0.0]),
                     (640, 480))


@pytest.fixture(scope="module")
def pivot_videos(tmp_path_factory):
    """Two 45-frame videos (30 fps) of a 4-marker tool stirred about its tip (20 degrees, 1.5 turns):
    'fixed.mp4' seen by a still camera ('slow.mp4': the same at 10 fps); 'moving.mp4' with a reference
    sheet on the table and a moving camera (the pivot is then fixed on the reference only)."""
    from ar_guide.io.writers import VideoWriter

    folder = tmp_path_factory.mktemp("pivot")
    save_camera(folder / "camera.yaml", CAMERA)
    tool_sheet, tool_mm, tool_markers = marker_sheet("DICT_4X4_50", [3, 7, 11, 15], columns=2, marker_mm=20.0,
                                                     gap_cells=2)
    ref_sheet, ref_mm, ref_markers = marker_sheet("DICT_4X4_50", [20, 21, 22, 23], columns=2, marker_mm=30.0,
                                                  gap_cells=2)
    write_tool(folder / "tool.yaml", markers=tool_markers, dictionary="DICT_4X4_50")
    (folder / "reference.yaml").write_text("type: marker_map\ndictionary: DICT_4X4_50\nmarkers:\n"
                                           f"{marker_map_yaml(ref_markers, '  ')}\n")
    centre = np.array([20.0, 20.0, 0.0])            # the tool sheet's centre (60 x 60 mm sheet)
    tip = centre + np.array([0.0, 40.0, 110.0])     # below and behind the plate (z into the plate)
    renderer = PlaneRenderer(CAMERA)
    rng = np.random.default_rng(5)
    frames = 45
    base = rotation_from_rotvec([math.radians(-10.0), 0.0, 0.0])
    # Still camera: the pivot in the camera frame.
    pivot_camera = np.array([0.0, 30.0, 400.0])
    with VideoWriter(folder / "fixed.mp4", 30.0, CAMERA.image_size, crf=12) as writer, \
            VideoWriter(folder / "slow.mp4", 10.0, CAMERA.image_size, crf=12) as slow:
        for k in range(frames):
            azimuth = 3.0 * np.pi * k / frames
            rotation = rotation_from_rotvec(math.radians(20.0) * np.array([math.cos(azimuth), math.sin(azimuth), 0]))
            camera_from_tool = make_transform(rotation @ base, pivot_camera - rotation @ base @ tip)
            gray = degrade(renderer.render([(tool_sheet, tool_mm, camera_from_tool)]), rng)
            writer.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))
            slow.write(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR))      # 4.5 s: time for keys in window tests
    # Moving camera, reference sheet on the table (z = 0 of the reference frame), pivot on it.
    pivot_reference = np.array([150.0, 40.0, 0.0])
    with VideoWriter(folder / "moving.mp4", 30.0, CAMERA.image_size, crf=12) as writer:
        for k in range(frames):
            azimuth = 3.0 * np.pi * k / frames
            rotation = rotation_from_rotvec(math.radians(20.0) * np.array([math.cos(azimuth), math.sin(azimuth), 0]))
            reference_from_tool = make_transform(rotation, pivot_reference - rotation @ tip)
            camera_from_reference = make_transform(rotation_from_rotvec([-0.35 + 0.003 * k, 0.1, 0.005 * k]),
                                                   [-95.0 + 0.6 * k, -20.0, 420.0 - 0.5 * k])
            gray = renderer.render([(ref_sheet, ref_mm, camera_from_reference),
                                    (tool_sheet, tool_mm, camera_from_reference @ reference_from_tool)])
            writer.write(cv2.cvtColor(degrade(gray, rng), cv2.COLOR_GRAY2BGR))
    return folder, tip, pivot_camera, pivot_reference


def test_pivot_from_a_video(pivot_videos, tmp_path, capsys):
    folder, tip, pivot_camera, _ = pivot_videos
    out = tmp_path / "pointer.yaml"
    code, stdout, err = run_cli(capsys, "pivot", "--video", folder / "fixed.mp4", "--tool", folder / "tool.yaml",
                                "--output", out, "--calibration", folder / "camera.yaml")
    assert code == 0, err
    record = read_tool_file(out)
    assert np.linalg.norm(record.tip_mm - tip) < 0.3                     # measured 0.11 mm
    assert np.linalg.norm(record.pivot_point_mm - pivot_camera) < 0.3    # measured 0.10 mm
    assert record.pivot_rms_mm < 0.4 and record.poses >= 40 and record.spread_deg > 30
    assert "tracked in 45 of 45 frames" in stdout
    # The calibrated tool in a scene (tools: [{file: ...}]): its tip is used as written.
    scene = tmp_path / "scene.yaml"
    scene.write_text("version: 1\nunits: mm\nreference: {file: " + str(folder / "reference.yaml") + "}\n"
                     "registration: {reference_from_ct: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}\n"
                     "tools:\n  - {file: pointer.yaml}\n")
    loaded = load_scene(scene)
    np.testing.assert_allclose(loaded.tools[0].tip_mm, record.tip_mm, atol=1e-6)
    pipeline = build_pipeline(loaded, CAMERA, render=False)
    assert sorted(pipeline.tools["pointer"].body.marker_ids) == [3, 7, 11, 15]


def test_pivot_from_a_camera_headless(pivot_videos, tmp_path, capsys):
    """A video played as a camera (real time): the same session a webcam gets, without a window."""
    folder, tip, _, _ = pivot_videos
    out = tmp_path / "pointer.yaml"
    code, stdout, err = run_cli(capsys, "pivot", "--camera", folder / "fixed.mp4", "--tool", folder / "tool.yaml",
                                "--output", out, "--calibration", folder / "camera.yaml", "--no-window")
    assert code == 0, err
    record = read_tool_file(out)
    assert np.linalg.norm(record.tip_mm - tip) < 0.5
    assert record.poses >= 20      # frames dropped while busy are fine; a camera gives more
    code, _, err = run_cli(capsys, "pivot", "--camera", folder / "fixed.mp4", "--tool", folder / "tool.yaml",
                           "--output", out, "--calibration", folder / "camera.yaml", "--max-seconds", "0")
    assert_one_line_error(err, "'--max-seconds': expected a positive number of seconds, got 0")


def test_pivot_with_a_moving_camera_and_a_reference(pivot_videos, tmp_path, capsys):
    folder, tip, _, pivot_reference = pivot_videos
    out = tmp_path / "pointer.yaml"
    code, stdout, err = run_cli(capsys, "pivot", "--video", folder / "moving.mp4", "--tool", folder / "tool.yaml",
                                "--output", out, "--calibration", folder / "camera.yaml", "--reference",
                                folder / "reference.yaml")
    assert code == 0, err
    record = read_tool_file(out)
    assert np.linalg.norm(record.tip_mm - tip) < 0.3                     # measured 0.13 mm
    assert np.linalg.norm(record.pivot_point_mm - pivot_reference) < 0.3  # measured 0.16 mm
    assert "(reference frame)" in stdout
    # In the camera frame the pivot moved with the camera: the fit is poor and says so.
    code, stdout, err = run_cli(capsys, "pivot", "--video", folder / "moving.mp4", "--tool", folder / "tool.yaml",
                                "--output", out, "--calibration", folder / "camera.yaml")
    assert code == 0 and "warning: RMS" in stdout
    assert read_tool_file(out).pivot_rms_mm > 3.0


def test_session_view_shows_the_axis_and_the_counts(pivot_videos):
    """The live view: the tip estimated so far (once 10 poses and 15 degrees are in) and the counts."""
    from ar_guide.apps.pivot import ToolPoseCollector, draw_session
    from ar_guide.io.sources import VideoFileSource
    from ar_guide.registration.files import read_tool_file as read_tool
    from ar_guide.tracking.bodies import body_from_config

    folder, tip, _, _ = pivot_videos
    record = read_tool(folder / "tool.yaml", require_tip=False)
    tool = body_from_config(record.body, record.base_dir, name="pointer")
    collector = ToolPoseCollector(CAMERA, tool)
    with VideoFileSource(folder / "fixed.mp4") as source:
        for frame in source:
            collector.process(frame.timestamp_s, frame.image_bgr)
            if frame.index in (3, 44):
                view = draw_session(frame.image_bgr, collector)
                assert view.shape == frame.image_bgr.shape and not np.shares_memory(view, frame.image_bgr)
                state = collector.states["pointer"]
                # Before 10 poses the body's axes are drawn at its centre; later the axis to the tip.
                end = state.camera_from_body[:3, :3] @ (tip if frame.index == 44 else tool.centre_body + [30, 0, 0]) \
                    + state.camera_from_body[:3, 3]
                u, v = np.round(CAMERA.project(end[None])[0]).astype(int)
                changed = np.abs(view[v - 3:v + 4, u - 3:u + 4].astype(int)
                                 - frame.image_bgr[v - 3:v + 4, u - 3:u + 4].astype(int)).max()
                assert changed > 60, frame.index
    assert len(collector.kept.poses) == 45


def test_pivot_window_finish_and_quit_keys(xvfb, pivot_videos, tmp_path):
    import os
    import subprocess
    import time

    from xdisplay import find_window

    folder, tip, _, _ = pivot_videos
    env = dict(os.environ, DISPLAY=xvfb)
    results = {}
    for key in ("q", "s"):
        out = tmp_path / f"{key}.yaml"
        proc = subprocess.Popen([sys.executable, "-m", "ar_guide", "pivot", "--camera", str(folder / "slow.mp4"),
                                 "--tool", str(folder / "tool.yaml"), "--output", str(out), "--calibration",
                                 str(folder / "camera.yaml")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            window = find_window(xvfb, "ar_guide pivot calibration")
            time.sleep(1.5)    # a third of the 4.5 s video
            subprocess.run(["xdotool", "key", "--window", window, key], env=env, check=True)
            stdout, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        results[key] = (proc.returncode, stdout, stderr, out.exists())
    assert results["q"][0] == 1 and "quit: nothing written" in results["q"][2] and not results["q"][3]
    code, stdout, stderr, written = results["s"]
    assert code == 0 and written, stderr
    assert "tracked in" in stdout
    assert np.linalg.norm(read_tool_file(tmp_path / "s.yaml").tip_mm - tip) < 0.5


def test_still_pointer_of_multipattern_is_refused(shared_data, tmp_path, capsys):
    """The recording's pointer lies still: 8 tracked frames, one distinct pose, a one-line refusal."""
    folder = shared_data / "video" / "sksurgery_aruco"
    tool = tmp_path / "pointer.yaml"
    tool.write_text(f"name: pointer\nbody: {{type: sksurgery, file: {folder / 'pointer.txt'}, "
                    "dictionary: DICT_ARUCO_ORIGINAL}\n")
    code, _, err = run_cli(capsys, "pivot", "--video", folder / "multipattern.avi", "--tool", tool, "--output",
                           tmp_path / "out.yaml", "--calibration", folder / "calibration.txt")
    assert code == 2 and not (tmp_path / "out.yaml").exists()
    lines = [line for line in err.splitlines() if line.startswith("ar-guide: error:")]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0].endswith("multipattern.avi: pivot calibration needs at least 10 poses, got 1 (the tool was "
                             "tracked in 8 of 10 frames, giving 1 distinct poses (turned at least 1 degree from the "
                             "one kept before); not tracked most often because 'pointer: ambiguous planar pose "
                             "(ratio 2.7): confirming (1/3)': 1 frame(s))")
