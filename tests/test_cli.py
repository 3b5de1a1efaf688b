"""The command line end to end: play on real and synthetic video, and every kind of bad input.

Bad input gets one clear line naming the file and the problem, a non-zero exit, no traceback,
and nothing lost; a corrupt frame in the middle of a video is skipped and counted.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ar_guide.cli import main
from ar_guide.geometry.transforms import rotation_angle_between, rotation_from_quaternion
from ar_guide.io.poselog import read_pose_log
from ar_guide.io.sources import VideoFileSource
from ar_guide.io.writers import VideoWriter
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence
from videotools import corrupt_packets

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_SCENE = ROOT / "assets" / "examples" / "multipattern" / "scene.yaml"


@pytest.fixture(scope="module")
def synthetic():
    return ensure_sequence(TEST_SPEC, progress=False)


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def transcode(src: Path, dst: Path) -> Path:
    """Re-encode a video into the container/codec that ``dst``'s extension selects."""
    with VideoFileSource(src) as source, VideoWriter(dst, source.fps, (source.width, source.height)) as writer:
        for frame in source:
            writer.write(frame.image_bgr)
    return dst


def assert_one_line_error(err: str, *fragments: str):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("ar-guide: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


# ----------------------------------------------------------------------------- real recording

def test_play_multipattern_frame0_matches_the_authors(shared_data, tmp_path, capsys):
    """SciKit-Surgery's recording with the example scene: frame 0's camera_from_reference in the
    pose log is within 2 mm and 1 degree of the authors' published value."""
    folder = shared_data / "video" / "sksurgery_aruco"
    poses = tmp_path / "poses.csv"
    report = tmp_path / "report.json"
    code, out, err = run_cli(capsys, "play", folder / "multipattern.avi", "--scene", EXAMPLE_SCENE,
                             "--calibration", folder / "calibration.txt", "--output", tmp_path / "out.mp4",
                             "--poses", poses, "--report", report, "--no-window")
    assert code == 0, err
    rows = [r for r in read_pose_log(poses) if r.body == "reference"]
    first = rows[0]
    assert first.frame == 0 and first.status == "OK"
    authors_t = np.array([-82.29, 48.50, 243.99])
    authors_r = np.array([[-0.847, 0.519, -0.116], [-0.487, -0.671, 0.559], [0.212, 0.530, 0.821]])
    assert np.linalg.norm(np.array(first.translation_mm) - authors_t) < 2.0
    rotation = rotation_from_quaternion(first.quaternion_wxyz)
    assert np.degrees(rotation_angle_between(rotation, authors_r)) < 1.0
    data = json.loads(report.read_text())
    assert data["frames"] == 10 and data["tracked_fraction"] == 1.0
    assert set(data["timings_ms"]) == {"detect", "pose", "render", "compose", "total"}
    with VideoFileSource(tmp_path / "out.mp4") as video:
        assert len(list(video)) == 10
    assert "tracked (OK): 100.0%" in out


# ----------------------------------------------------------------------------- synthetic sequence

def test_play_synthetic_writes_video_poses_and_report(synthetic, tmp_path, capsys):
    report = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "play", synthetic.video, "--scene", synthetic.scene, "--calibration",
                             synthetic.calibration, "--output", tmp_path / "o.mp4", "--poses", tmp_path / "p.csv",
                             "--report", report, "--no-window")
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["frames"] == TEST_SPEC.frame_count
    assert 0.5 < data["tracked_fraction"] <= 1.0
    for stage in ("detect", "pose", "render", "compose", "total"):
        assert data["timings_ms"][stage]["median"] > 0
        assert data["timings_ms"][stage]["p95"] >= data["timings_ms"][stage]["median"]
    statuses = {row.status for row in read_pose_log(tmp_path / "p.csv")}
    assert statuses <= {"OK", "STALE", "LOST"} and "OK" in statuses


def test_corrupt_frame_in_the_middle_is_skipped_and_counted(synthetic, tmp_path, capsys):
    clean = transcode(synthetic.video, tmp_path / "clean.avi")  # MJPEG: one damaged packet = one frame
    bad = tmp_path / "bad.avi"
    corrupt_packets(clean, bad, [20])
    report = tmp_path / "r.json"
    code, out, err = run_cli(capsys, "play", bad, "--scene", synthetic.scene, "--calibration", synthetic.calibration,
                             "--report", report, "--no-window")
    assert code == 0, err
    data = json.loads(report.read_text())
    assert data["frames_skipped_corrupt"] == 1
    assert data["frames"] == TEST_SPEC.frame_count - 1
    assert "corrupt skipped: 1" in out


# ----------------------------------------------------------------------------- bad input

@pytest.fixture()
def scene_copy(synthetic, tmp_path):
    """The synthetic scene and its meshes in a folder the test may edit."""
    folder = tmp_path / "scene"
    shutil.copytree(synthetic.root, folder, ignore=shutil.ignore_patterns("*.mp4", "ground_truth.csv"))
    return folder


def test_missing_video(synthetic, tmp_path, capsys):
    code, _, err = run_cli(capsys, "play", tmp_path / "nope.mp4", "--scene", synthetic.scene,
                           "--calibration", synthetic.calibration, "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "nope.mp4", "not found")


def test_missing_scene(synthetic, tmp_path, capsys):
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", tmp_path / "none.yaml",
                           "--calibration", synthetic.calibration, "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "none.yaml", "not found")


def test_malformed_scene(synthetic, scene_copy, tmp_path, capsys):
    scene = scene_copy / "scene.yaml"
    scene.write_text(scene.read_text().replace("anatomy:", "anatomy: [oops", 1))
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", scene, "--calibration", synthetic.calibration,
                           "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, str(scene), "line")


def test_unknown_dictionary(synthetic, scene_copy, tmp_path, capsys):
    scene = scene_copy / "scene.yaml"
    text = scene.read_text()
    assert "DICT_5X5_100" in text
    scene.write_text(text.replace("DICT_5X5_100", "DICT_5X5_1OO"))
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", scene, "--calibration", synthetic.calibration,
                           "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, str(scene), "dictionary", "DICT_5X5_1OO")


def test_mesh_that_fails_to_load(synthetic, scene_copy, tmp_path, capsys):
    mesh = sorted((scene_copy / "meshes").iterdir())[0]
    mesh.write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vertex 10\nend_header\n\x00\x01")
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", scene_copy / "scene.yaml",
                           "--calibration", synthetic.calibration, "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, mesh.name)


def test_calibration_of_another_image_size(synthetic, tmp_path, capsys):
    from ar_guide.camera import load_camera, save_camera

    camera = load_camera(synthetic.calibration)
    other = tmp_path / "cam_1280.yaml"
    save_camera(other, camera.scaled(1280, 720))
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", synthetic.scene, "--calibration", other,
                           "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "cam_1280.yaml", "1280x720", f"{TEST_SPEC.width}x{TEST_SPEC.height}")


def test_not_a_video(synthetic, tmp_path, capsys):
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    code, _, err = run_cli(capsys, "play", junk, "--scene", synthetic.scene, "--calibration", synthetic.calibration,
                           "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "junk.mp4")


def test_truncated_video(synthetic, tmp_path, capsys):
    # An MP4 cut off mid-recording has no index: a clear error, not a crash.
    cut = tmp_path / "cut.mp4"
    data = synthetic.video.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    code, _, err = run_cli(capsys, "play", cut, "--scene", synthetic.scene, "--calibration", synthetic.calibration,
                           "--no-window", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "cut.mp4")


def test_truncated_mkv_plays_what_was_recorded(synthetic, tmp_path, capsys):
    full = transcode(synthetic.video, tmp_path / "full.mkv")
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    report = tmp_path / "r.json"
    code, _, err = run_cli(capsys, "play", cut, "--scene", synthetic.scene, "--calibration", synthetic.calibration,
                           "--no-window", "--report", report)
    assert code == 0, err
    frames = json.loads(report.read_text())["frames"]
    assert 0 < frames < TEST_SPEC.frame_count


def test_missing_calibration_is_explained(synthetic, scene_copy, tmp_path, capsys):
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", scene_copy / "scene.yaml", "--no-window",
                           "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_line_error(err, "scene.yaml", "--calibration")


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["play"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "ar-guide: error:" in err and "Traceback" not in err


def test_real_process_exit_code_and_no_traceback(tmp_path):
    """The installed entry point, as a user runs it."""
    result = subprocess.run([sys.executable, "-m", "ar_guide", "play", str(tmp_path / "missing.mp4"), "--scene",
                             str(tmp_path / "s.yaml"), "--no-window", "--report", str(tmp_path / "r.json")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "s.yaml" in result.stderr


def test_nothing_to_show_or_write(synthetic, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    code, _, err = run_cli(capsys, "play", synthetic.video, "--scene", synthetic.scene, "--calibration",
                           synthetic.calibration)
    assert code == 2
    assert_one_line_error(err, "there is no display", "--output")
