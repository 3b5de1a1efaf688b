"""``ar-guide calibrate run`` end to end through ar_guide.cli.main: images and video of a
synthetic board, the calibration file (OpenCV FileStorage, ar_guide's keys), the report, the
warnings written with a weak result, and every kind of bad input (exit 2, one line, no
traceback, nothing written)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import calibration_synth as cs
from ar_guide.apps.calibrate_run import finish
from ar_guide.calibration.detect import BoardDetector
from ar_guide.calibration.solve import CameraModelOptions
from ar_guide.camera import load_camera
from ar_guide.cli import main
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, rotvec_from_rotation
from ar_guide.io.writers import VideoWriter

W, H = 640, 360
BOARD = {"type": "charuco", "squares": [9, 7], "square_mm": 15, "marker_mm": 11, "dictionary": "DICT_5X5_100"}


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


def write_board(path: Path, **changes) -> Path:
    data = dict(BOARD, **changes)
    lines = [f"{k}: {v}" if not isinstance(v, bool) else f"{k}: {'true' if v else 'false'}" for k, v in data.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def camera():
    return cs.camera(W, H)


@pytest.fixture(scope="module")
def photos(camera, tmp_path_factory):
    """A folder of the 12 careful views (PNG) of the 9x7 15 mm board."""
    board = cs.charuco((9, 7), 15.0, 11.0)
    poses = cs.covering_poses(board, camera, cs.PLAN_12, seed=0, distance_mm=(180.0, 280.0))
    folder = tmp_path_factory.mktemp("photos")
    cs.write_images(folder, cs.render_all(board, camera, poses))
    return folder


def test_images_to_calibration_and_report(photos, camera, tmp_path, capsys):
    board = write_board(tmp_path / "board.yaml")
    out = tmp_path / "cam" / "camera.yaml"
    code, stdout, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output", out,
                                "--report", tmp_path / "report")
    assert code == 0, err
    assert "found in 12 of 12 images" in stdout and "RMS reprojection error" in stdout
    assert "calibration looks good: no warnings" in stdout and err == ""
    cam = load_camera(out)
    assert cam.image_size == (W, H)
    assert abs(cam.fx / camera.fx - 1) < 0.005 and abs(cam.cx / camera.cx - 1) < 0.005
    fs = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
    try:
        assert fs.getNode("views").real() == 12 and fs.getNode("views_dropped").real() == 0
        assert fs.getNode("board").string() == "ChArUco 9x7 squares, 15/11 mm, DICT_5X5_100"
        params = fs.getNode("board_parameters")
        assert params.getNode("squares").at(0).real() == 9 and params.getNode("dictionary").string() == "DICT_5X5_100"
        std = fs.getNode("std_deviations")
        assert 0 < std.getNode("fx").real() < 0.005 * cam.fx and not std.getNode("k3").empty()
        assert fs.getNode("verdict").string() == "good" and fs.getNode("warnings").size() == 0
        assert fs.getNode("ar_guide_version").string() and fs.getNode("date").string()
        rms = fs.getNode("rms_px").real()
        assert 0 < rms < 0.15 and cam.extras["rms_px"] == pytest.approx(rms)
    finally:
        fs.release()
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["rms_px"] == pytest.approx(rms, rel=1e-6) and data["written"] == str(out)
    assert (tmp_path / "report" / "report.html").is_file()
    assert not list(out.parent.glob(".*tmp*"))  # the temporary file was renamed


def test_model_options_reach_the_file(photos, tmp_path, capsys):
    board = write_board(tmp_path / "board.yaml")
    out = tmp_path / "camera.yaml"
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output", out,
                           "--fix-aspect", "--rational")
    assert code == 0, err
    cam = load_camera(out)
    assert cam.fx == cam.fy and cam.distortion.shape == (8,)
    fs = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
    try:
        assert int(fs.getNode("flags").real()) == CameraModelOptions(fix_aspect=True, rational=True).flags
        assert "rational" in fs.getNode("model").string()
    finally:
        fs.release()


def test_weak_result_is_written_with_its_warnings(photos, tmp_path, capsys):
    few = tmp_path / "few"
    few.mkdir()
    for path in sorted(photos.glob("*.png"))[:4]:
        (few / path.name).write_bytes(path.read_bytes())
    board = write_board(tmp_path / "board.yaml")
    out = tmp_path / "camera.yaml"
    code, stdout, err = run_cli(capsys, "calibrate", "run", "--images", few, "--board", board, "--output", out)
    assert code == 0
    assert "WARNING: calibration NOT TRUSTWORTHY" in err and "only 4 views used" in err
    fs = cv2.FileStorage(str(out), cv2.FILE_STORAGE_READ)
    try:
        assert fs.getNode("verdict").string() == "not trustworthy"
        warnings = fs.getNode("warnings")
        assert any(warnings.at(i).string().startswith("only 4 views used") for i in range(warnings.size()))
    finally:
        fs.release()


def test_badly_fitting_views_are_not_written(camera, photos, tmp_path):
    board = cs.charuco((9, 7), 15.0, 11.0)
    detector = BoardDetector(board)
    views = [detector.detect(cv2.imread(str(p), cv2.IMREAD_GRAYSCALE), p.name) for p in sorted(photos.glob("*.png"))]
    rng = np.random.default_rng(0)
    noisy = [type(v)(v.source, v.image_size, v.corner_ids,
                     v.image_points_px + rng.normal(0, 8.0, v.image_points_px.shape).astype(np.float32),
                     v.object_points_mm, v.markers_found) for v in views]
    out = tmp_path / "camera.yaml"
    with pytest.raises(InputError, match=r"fit no camera model \(RMS \d+\.\d px, more than 5 px\).*calibration not "
                                         r"written; see .*report.html"):
        finish(noisy, (W, H), board, CameraModelOptions(), out, tmp_path / "report")
    assert not out.exists()
    assert json.loads((tmp_path / "report" / "report.json").read_text())["verdict"] == "not written"


# ------------------------------------------------------------------------------ video


def _interpolate(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    r = a[:3, :3] @ rotation_from_rotvec(t * rotvec_from_rotation(a[:3, :3].T @ b[:3, :3]))
    return make_transform(r, (1 - t) * a[:3, 3] + t * b[:3, 3])


@pytest.fixture(scope="module")
def video(camera, tmp_path_factory):
    """43 frames at 12 fps: the board moving between 8 planned positions (frames 0-34), then
    held still (35-38), and 4 frames with strong blur (39-42: sigma 1.3 px against 0.5)."""
    board = cs.charuco((9, 7), 15.0, 11.0)
    anchors = cs.covering_poses(board, camera, cs.CORNERS + cs.EDGES, seed=4, distance_mm=(200.0, 260.0))
    poses = [_interpolate(a, b, t) for a, b in zip(anchors, anchors[1:]) for t in np.linspace(0, 1, 6)[:5]]
    poses = poses + [anchors[-1]] * 4
    blurred = [_interpolate(anchors[2], anchors[3], t) for t in (0.1, 0.3, 0.5, 0.7)]
    frames = cs.render_all(board, camera, poses, seed=7)
    frames += cs.render_all(board, camera, blurred, seed=8, blur_sigma_px=1.3)
    path = tmp_path_factory.mktemp("video") / "board.mp4"
    with VideoWriter(path, 12.0, (W, H), crf=12) as writer:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    return path, len(frames)


def test_video_to_calibration(video, camera, tmp_path, capsys):
    path, n_frames = video
    board = write_board(tmp_path / "board.yaml")
    out = tmp_path / "camera.yaml"
    code, stdout, err = run_cli(capsys, "calibrate", "run", "--video", path, "--board", board, "--output", out,
                                "--every", 1, "--max-views", 30, "--report", tmp_path / "report")
    assert code == 0, err
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    not_used = {f["source"]: f["reason"] for f in data["not_used"]}
    kept = [v["source"] for v in data["per_view"]]
    assert len(kept) + len(not_used) == n_frames
    # The four blurred frames (39-42) are left out as blurred (or not detected at all).
    assert sum(not_used.get(f"frame {i}", "").startswith("motion blur") for i in range(39, 43)) >= 3, not_used
    assert not any(f"frame {i}" in kept for i in range(39, 43))
    assert "left out" in err and "blurred frame" in err
    # Frames 35-38 hold the board still: near duplicates, at most one of them is kept.
    assert sum(f"frame {i}" in kept for i in range(35, 39)) <= 1
    assert any(r.startswith("not needed: a near duplicate") for r in not_used.values())
    assert len(kept) <= 30
    cam = load_camera(out)
    # 640x360 H.264 frames of a moving board: fx within 1% (measured 0.1-0.3%).
    assert abs(cam.fx / camera.fx - 1) < 0.01 and abs(cam.fy / camera.fy - 1) < 0.01


def test_video_every_is_chosen_from_the_length(video, tmp_path, capsys):
    path, n_frames = video
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--video", path, "--board", board, "--output",
                           tmp_path / "camera.yaml", "--every", 4, "--report", tmp_path / "r")
    assert code == 0, err
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    seen = [v["source"] for v in data["per_view"]] + [f["source"] for f in data["not_used"]]
    assert sorted(int(s.split()[1]) for s in seen) == list(range(0, n_frames, 4))
    # Without --every, 43 frames and about 80 candidates wanted: every frame is looked at.
    code, _, err = run_cli(capsys, "calibrate", "run", "--video", path, "--board", board, "--output",
                           tmp_path / "camera.yaml", "--report", tmp_path / "r2")
    data = json.loads((tmp_path / "r2" / "report.json").read_text())
    assert len(data["per_view"]) + len(data["not_used"]) == n_frames


# ------------------------------------------------------------------------------ bad input


def test_no_board_in_any_image(tmp_path, capsys):
    folder = tmp_path / "blank"
    cs.write_images(folder, [np.full((H, W), v, np.uint8) for v in (40, 128, 200)])
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, "no ChArUco 9x7 squares, 15/11 mm, DICT_5X5_100 found in any of 3 images",
                          "no markers of DICT_5X5_100", "check that the board file matches the printed board")
    assert not (tmp_path / "cam.yaml").exists()


def test_swapped_squares(photos, tmp_path, capsys):
    board = write_board(tmp_path / "board.yaml", squares=[7, 9])
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, f"{board}: no ChArUco 7x9 squares", "did you swap squares: [7, 9] for [9, 7]?")


def test_wrong_dictionary(photos, tmp_path, capsys):
    board = write_board(tmp_path / "board.yaml", dictionary="DICT_6X6_250")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    # 9x7 squares: 31 markers, ids 0-30: the smallest 5x5 dictionary holding them is DICT_5X5_50.
    assert_one_line_error(err, "no markers of DICT_6X6_250", "set dictionary: DICT_5X5_50")


def test_legacy_layout(camera, tmp_path, capsys):
    printed = cs.charuco((5, 6), 30.0, 22.0, legacy=True)
    poses = cs.covering_poses(printed, camera, cs.CENTRE * 3, seed=9, distance_mm=(300.0, 400.0))
    folder = tmp_path / "legacy"
    cs.write_images(folder, cs.render_all(printed, camera, poses, seed=9))
    board = write_board(tmp_path / "board.yaml", squares=[5, 6], square_mm=30, marker_mm=22)
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, "legacy (pre-OpenCV 4.6) ChArUco layout: set legacy_pattern: true")


def test_images_of_different_sizes(photos, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in sorted(photos.glob("*.png"))[:3]:
        (folder / path.name).write_bytes(path.read_bytes())
    cv2.imwrite(str(folder / "zz_big.png"), np.zeros((720, 1280), np.uint8))
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, "zz_big.png: image is 1280x720 but the first one is 640x360")


def test_unreadable_image_is_skipped_with_a_note(photos, tmp_path, capsys):
    folder = tmp_path / "some_broken"
    folder.mkdir()
    for path in sorted(photos.glob("*.png"))[:5]:
        (folder / path.name).write_bytes(path.read_bytes())
    (folder / "broken.png").write_bytes(b"not a png")
    board = write_board(tmp_path / "board.yaml")
    code, stdout, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                                tmp_path / "cam.yaml")
    assert code == 0
    assert "note: skipped 1 unreadable image: broken.png" in err
    assert "found in 5 of 6 images" in stdout


def test_no_readable_image(tmp_path, capsys):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    (folder / "b.jpg").write_bytes(b"")
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, "none of the images can be read")


def test_too_few_views(photos, tmp_path, capsys):
    folder = tmp_path / "two"
    folder.mkdir()
    for path in sorted(photos.glob("*.png"))[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    cv2.imwrite(str(folder / "c_blank.png"), np.full((H, W), 128, np.uint8))
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", folder, "--board", board, "--output",
                           tmp_path / "cam.yaml")
    assert code == 2
    assert_one_line_error(err, "the board was found in only 2 of 3 images (others: c_blank.png: no markers",
                          "at least 3 views are needed, 10 or more recommended")


@pytest.mark.parametrize("name, message", [
    ("afile/cam.yaml", "afile is a file, not a folder"),
    ("cam.txt", "'--output': expected a .yaml (or .yml, .xml) file name"),
    ("folder", "'--output': expected a .yaml"),
])
def test_unwritable_output(photos, tmp_path, capsys, name, message):
    (tmp_path / "afile").write_text("x")
    (tmp_path / "folder").mkdir()
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output",
                           tmp_path / name)
    assert code == 2
    assert_one_line_error(err, message)


def test_output_folder_is_a_folder(photos, tmp_path, capsys):
    (tmp_path / "x.yaml").mkdir()
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output",
                           tmp_path / "x.yaml")
    assert code == 2
    assert_one_line_error(err, "is a folder; expected a file name such as camera.yaml")


def test_missing_board_file_and_bad_max_views(photos, tmp_path, capsys):
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", tmp_path / "none.yaml",
                           "--output", tmp_path / "cam.yaml")
    assert code == 2 and "none.yaml" in err and "Traceback" not in err
    board = write_board(tmp_path / "board.yaml")
    code, _, err = run_cli(capsys, "calibrate", "run", "--images", photos, "--board", board, "--output",
                           tmp_path / "cam.yaml", "--max-views", 2)
    assert code == 2
    assert_one_line_error(err, "'--max-views': expected at least 3, got 2")
