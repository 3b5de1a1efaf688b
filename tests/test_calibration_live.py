"""The live calibration session (``calibrate run --camera``) and ``calibrate check``, end to end.

A synthetic video of the board held still at key poses (tests/calibration_live_video.py, 640x360,
15 fps, 11 s; generated once per test session into the session's cache) stands in for a camera:
CameraSource plays a video file in real time, so the session sees what it would see live.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from xdisplay import find_window

from ar_guide.camera import load_camera, save_camera
from ar_guide.cli import main
from ar_guide.geometry.projection import pixels_to_normalized
from ar_guide.io.live import LatestWorker
from ar_guide.io.sources import CameraSource
from ar_guide.io.writers import VideoWriter
from ar_guide.synth.optics import synthetic_camera
from calibration_live_video import BOARD_CONFIG, KEY_POSES, write_board_video

W, H = 640, 360


@pytest.fixture(scope="module")
def board_file(tmp_path_factory) -> Path:
    import yaml

    path = tmp_path_factory.mktemp("board") / "board.yaml"
    path.write_text(yaml.safe_dump(BOARD_CONFIG))
    return path


@pytest.fixture(scope="module")
def board_video() -> Path:
    cache = Path(os.environ["AR_GUIDE_CACHE"]) / "calibration_live"
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"board_{W}x{H}.mp4"
    if not path.exists():
        write_board_video(path, size=(W, H))
    return path


# -- the worker and the camera source -------------------------------------------------------------


def test_latest_worker_newest_wins():
    gate = threading.Event()
    seen = []

    def work(item):
        gate.wait(5.0)
        seen.append(item)
        return item * 10

    with LatestWorker(work) as worker:
        assert worker.latest() is None
        worker.submit(1, index=1, timestamp_s=0.1)
        time.sleep(0.05)                  # 1 is being worked on
        for k in range(2, 6):             # 2..4 are replaced before they start
            worker.submit(k, index=k, timestamp_s=k / 10)
        gate.set()
        result = worker.wait(timeout_s=5.0)
    assert seen == [1, 5]
    assert (result.value, result.index, result.timestamp_s, result.sequence) == (50, 5, 0.5, 2)
    assert (worker.submitted, worker.processed, worker.dropped) == (5, 2, 3)
    assert result.duration_s >= 0 and result.age_s() >= 0


def test_latest_worker_raises_the_workers_error_in_the_caller():
    def work(item):
        raise ValueError(f"bad item {item}")

    with LatestWorker(work) as worker:
        worker.submit(7)
        with pytest.raises(ValueError, match="bad item 7"):
            worker.wait(timeout_s=5.0)
        assert worker.latest() is None    # reported once


def _small_video(path: Path, frames: int, fps: float) -> Path:
    with VideoWriter(path, fps, (64, 48)) as writer:
        for i in range(frames):
            writer.write(np.full((48, 64, 3), 8 * i, np.uint8))
    return path


def test_camera_source_plays_a_video_file_in_real_time(tmp_path):
    video = _small_video(tmp_path / "clip.mp4", 20, 20.0)   # 1 s
    with CameraSource(str(video)) as camera:
        assert camera.realtime
        start = time.monotonic()
        frames = list(camera)
        elapsed = time.monotonic() - start
    # Paced: the last frame (0.95 s into the clip) cannot come before 0.95 s after the first.
    # (Only a lower bound: a busy machine may be slower, never faster.)
    assert elapsed >= 0.9
    assert frames[-1].timestamp_s - frames[0].timestamp_s >= 0.9
    assert [f.index for f in frames] == sorted({f.index for f in frames})
    # Not paced on request: a slow reader makes it drop frames (newest frame wins).
    with CameraSource(str(video), realtime=False) as camera:
        assert not camera.realtime
        got = []
        for frame in camera:
            got.append(frame.index)
            time.sleep(0.02)
    assert got[0] == 0 and camera.dropped_frames == got[-1] + 1 - len(got)


# -- calibrate run --camera ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_run(board_video, board_file, tmp_path_factory):
    """``calibrate run --camera VIDEO --no-window`` once (about 10 s in real time): (rc, stdout, stderr, paths)."""
    folder = tmp_path_factory.mktemp("live")
    out, report = folder / "cam.yaml", folder / "report"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        rc = main(["calibrate", "run", "--camera", str(board_video), "--board", str(board_file), "--output",
                   str(out), "--report", str(report), "--no-window", "--max-seconds", "60"])
    return rc, stdout.getvalue(), stderr.getvalue(), out, report


def _mapping_error_px(camera, truth, w: int = W, h: int = H) -> np.ndarray:
    """Pixel differences between two lenses over a 17 x 9 grid of the image, after the rotation
    that best aligns their rays (a principal point offset is partly a rotation of the camera,
    which the board poses absorb)."""
    grid = np.stack(np.meshgrid(np.linspace(0, w - 1, 17), np.linspace(0, h - 1, 9)), -1).reshape(-1, 2)

    def rays(cam):
        xy = pixels_to_normalized(grid, cam.camera_matrix, cam.distortion)
        r = np.column_stack([xy, np.ones(len(xy))])
        return r / np.linalg.norm(r, axis=1, keepdims=True)

    a, b = rays(camera), rays(truth)
    u, _, vt = np.linalg.svd(b.T @ a)                       # Kabsch (Arun et al. 1987)
    r = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    uv = camera.project(b @ r)
    return np.linalg.norm(uv - grid, axis=1)


def test_live_session_headless_calibrates(live_run):
    rc, out, err, calibration, report = live_run
    assert rc == 0, err
    assert "[" in err and "view 1 taken (" in err and "view 15 taken (" in err
    assert "session: coverage is sufficient after" in err and "15 views taken" in err
    assert f"wrote {calibration}" in out and (report / "report.html").exists()
    camera = load_camera(calibration)
    truth = synthetic_camera(W, H)
    assert camera.image_size == (W, H)
    assert camera.extras["views"] == 15
    # What 15 views at 640x360 (0.13 px RMS) honestly give: focal lengths within 0.5 %, the
    # principal point within 4 px (measured: 0.15 % / 0.22 % and 1.7 / 2.0 px, about one standard
    # deviation of the solve), and the lens as a whole within 1 px RMS over the image (0.54 px
    # measured; up to 2.2 px in the extreme image corners, beyond the outermost board corners).
    assert camera.fx == pytest.approx(truth.fx, rel=0.005)
    assert camera.fy == pytest.approx(truth.fy, rel=0.005)
    assert abs(camera.cx - truth.cx) < 4.0 and abs(camera.cy - truth.cy) < 4.0
    error = _mapping_error_px(camera, truth)
    assert np.sqrt(np.mean(error ** 2)) < 1.0 and error.max() < 3.5


def test_check_says_good_for_the_session_result_and_not_for_wrong_ones(live_run, board_video, board_file,
                                                                      tmp_path, capsys):
    rc, _, err, calibration, _ = live_run
    assert rc == 0, err
    report = tmp_path / "check.json"
    rc = main(["calibrate", "check", "--video", str(board_video), "--board", str(board_file), "--calibration",
               str(calibration), "--report", str(report), "--no-window"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "calibration looks good for this board" in out
    data = json.loads(report.read_text())
    assert data["verdict"]["good"] and data["frames_with_board"] == data["frames"] == 168
    assert data["summary"]["reprojection"]["rms_px"] < 0.2            # 0.13 measured
    assert data["summary"]["metric"]["rms_percent"] < 0.35            # 0.21 % measured
    assert len(data["per_frame"]) == 168 and data["per_frame"][0]["index"] == 0
    camera = load_camera(calibration)
    # Distortion left out: not good, and why.
    wrong = tmp_path / "no_distortion.yaml"
    save_camera(wrong, dataclasses.replace(camera, distortion=np.zeros(5), extras={}))
    rc = main(["calibrate", "check", "--video", str(board_video), "--board", str(board_file), "--calibration",
               str(wrong), "--no-window"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "calibration NOT good for this board" in out
    assert "errors grow towards the image corners" in out
    # fx 3 % off: not good either.
    k = camera.camera_matrix.copy()
    k[0, 0] *= 1.03
    save_camera(wrong, dataclasses.replace(camera, camera_matrix=k, extras={}))
    rc = main(["calibrate", "check", "--video", str(board_video), "--board", str(board_file), "--calibration",
               str(wrong), "--no-window"])
    out = capsys.readouterr().out
    assert rc == 1 and "calibration NOT good for this board" in out


def test_check_on_a_live_camera_without_a_window(live_run, board_video, board_file, tmp_path, capsys):
    calibration = live_run[3]
    report = tmp_path / "live_check.json"
    rc = main(["calibrate", "check", "--camera", str(board_video), "--board", str(board_file), "--calibration",
               str(calibration), "--no-window", "--max-seconds", "2", "--report", str(report)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "calibration looks good for this board" in out
    data = json.loads(report.read_text())
    assert data["ended_by"] == "time limit" and data["frames_with_board"] >= 10
    assert data["input"]["source"] == str(board_video)


# -- bad input ------------------------------------------------------------------------------------


def test_check_refuses_a_calibration_of_another_size(board_video, board_file, tmp_path, capsys):
    other = tmp_path / "other.yaml"
    save_camera(other, synthetic_camera(1280, 720))
    rc = main(["calibrate", "check", "--video", str(board_video), "--board", str(board_file), "--calibration",
               str(other), "--no-window"])
    err = capsys.readouterr().err
    assert rc == 2
    assert (f"{other}: calibration is for 1280x720 images but {board_video} is 640x360; recalibrate at this "
            f"resolution") in err


def test_camera_that_cannot_be_opened(board_file, tmp_path, capsys):
    rc = main(["calibrate", "run", "--camera", "97", "--board", str(board_file), "--output",
               str(tmp_path / "cam.yaml"), "--no-window"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "97: cannot open this camera or stream" in err
    assert not (tmp_path / "cam.yaml").exists()


def test_bad_options_are_refused_before_the_session(board_file, tmp_path, capsys):
    base = ["calibrate", "run", "--camera", "97", "--board", str(board_file), "--no-window"]
    assert main(base + ["--output", str(tmp_path / "cam.yaml"), "--max-seconds", "0"]) == 2
    assert "'--max-seconds': expected a positive number of seconds, got 0" in capsys.readouterr().err
    assert main(base + ["--output", str(tmp_path / "cam.txt")]) == 2
    assert "'--output': expected a .yaml (or .yml, .xml) file name for the calibration" in capsys.readouterr().err


def test_no_board_in_the_session(board_file, tmp_path, capsys):
    blank = _small_video(tmp_path / "blank.mp4", 10, 10.0)
    rc = main(["calibrate", "run", "--camera", str(blank), "--board", str(board_file), "--output",
               str(tmp_path / "cam.yaml"), "--no-window"])
    err = capsys.readouterr().err
    assert rc == 2
    assert (f"{blank}: no ChArUco 7x5 squares, 25/18 mm, DICT_5X5_100 was seen in " in err)
    assert "frames (64x48)" in err and "no markers of DICT_5X5_100" in err
    assert not (tmp_path / "cam.yaml").exists()


def test_board_never_still(board_file, tmp_path, capsys):
    # Every frame a new pose: seen, never steady, nothing taken; the message says what to do.
    video = write_board_video(tmp_path / "moving.mp4", size=(W, H), fps=10.0, hold_frames=1, move_frames=1,
                              key_poses=KEY_POSES[:5])
    rc = main(["calibrate", "run", "--camera", str(video), "--board", str(board_file), "--output",
               str(tmp_path / "cam.yaml"), "--no-window"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "the board was seen in 9 frames but no view was taken: hold the board still for 0.3 s with at least " \
           "12 corners in view, or press space to take a view" in err
    assert not (tmp_path / "cam.yaml").exists()


def test_no_board_in_check(board_file, tmp_path, capsys):
    blank = _small_video(tmp_path / "blank.mp4", 5, 10.0)
    calibration = tmp_path / "small.yaml"
    save_camera(calibration, synthetic_camera(64, 48))
    rc = main(["calibrate", "check", "--video", str(blank), "--board", str(board_file), "--calibration",
               str(calibration), "--no-window"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no ChArUco 7x5 squares, 25/18 mm, DICT_5X5_100 was found in 5 frames (64x48): no markers of " \
           "DICT_5X5_100 (5 frames)" in err


# -- the window (on a virtual display) --------------------------------------------------------------


def test_window_capture_key_and_quit_without_writing(xvfb, board_video, board_file, tmp_path):
    out = tmp_path / "cam.yaml"
    env = dict(os.environ, DISPLAY=xvfb)
    proc = subprocess.Popen([sys.executable, "-m", "ar_guide", "calibrate", "run", "--camera", str(board_video),
                             "--board", str(board_file), "--output", str(out)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = find_window(xvfb, "ar_guide calibration")
        time.sleep(1.0)
        subprocess.run(["xdotool", "key", "--window", window, "c"], env=env, check=True)
        time.sleep(0.7)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err
    assert "taken (key;" in err
    assert "quit: nothing written" in err
    assert "session: quit on a key" in err
    assert not out.exists()
