"""The generated sequence: files, ground truth, cache behaviour and what the video shows.

Uses TEST_SPEC (640x360, 2 s, the demo's script played 5x faster), generated once per test
session into the session's cache (tests/conftest.py sets AR_GUIDE_CACHE).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import cv2
import numpy as np
import pytest

from ar_guide.camera import load_camera
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import check_transform, invert_transform
from ar_guide.synth import sequence as seqmod
from ar_guide.synth.groundtruth import COLUMNS, GroundTruth, write_ground_truth
from ar_guide.synth.optics import synthetic_camera
from ar_guide.synth.phantom import BOARD_DICTIONARY
from ar_guide.synth.sequence import (TEST_SPEC, SequenceSpec, cache_root, ensure_sequence, generate_sequence,
                                     load_ground_truth, sequence_dir)
from ar_guide.synth.take import Take
from ar_guide.tracking.aruco import MarkerDetector


@pytest.fixture(scope="module")
def seq(tmp_path_factory):
    # Module fixtures run before conftest's function-scoped cache isolation: set the same
    # session cache folder here, so nothing is written to the user's cache.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AR_GUIDE_CACHE", str(tmp_path_factory.getbasetemp() / "ar_guide_cache"))
        return ensure_sequence(TEST_SPEC, progress=False)


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.fixture(scope="module")
def frames(seq):
    return read_video(seq.video)


def test_files_are_written_in_the_cache(seq):
    assert seq.root.parent == cache_root() / "synth"
    assert seq.root == sequence_dir(TEST_SPEC)
    for path in (seq.video, seq.scene, seq.calibration, seq.ground_truth, seq.info):
        assert path.is_file() and path.stat().st_size > 0
    info = json.loads(seq.info.read_text())
    assert info["spec"] == dataclasses.asdict(TEST_SPEC)
    assert info["seed"] == TEST_SPEC.seed and info["generator_version"] == seqmod.GENERATOR_VERSION
    assert info["frames"] == 60
    assert not list(seq.root.parent.glob(".tmp-*"))


def test_video_has_every_frame_at_the_spec_size(seq, frames):
    assert len(frames) == TEST_SPEC.frame_count == 60
    assert all(f.shape == (360, 640, 3) for f in frames)
    cap = cv2.VideoCapture(str(seq.video))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)
    cap.release()


def test_calibration_file_is_the_rendering_camera(seq):
    cam = load_camera(seq.calibration)
    expected = synthetic_camera(640, 360)
    assert cam.image_size == (640, 360)
    np.testing.assert_allclose(cam.camera_matrix, expected.camera_matrix, rtol=0, atol=1e-12)
    np.testing.assert_allclose(cam.distortion, expected.distortion, rtol=0, atol=1e-15)


def test_scene_file_holds_the_exact_registration(seq):
    import trimesh
    import yaml

    scene = yaml.safe_load(seq.scene.read_text())
    assert scene["version"] == 1 and scene["units"] == "mm"
    assert scene["reference"] == {"type": "charuco", "squares": [7, 5], "square_mm": 30.0, "marker_mm": 22.0,
                                  "dictionary": BOARD_DICTIONARY}
    reference_from_ct = check_transform(scene["registration"]["reference_from_ct"], atol=1e-12)
    take = Take(640, 360, 2.0, TEST_SPEC.seed)
    np.testing.assert_allclose(reference_from_ct, take.phantom.reference_from_ct, atol=1e-12)
    assert [a["name"] for a in scene["anatomy"]] == ["liver", "tumour", "vessel"]
    assert [a["role"] for a in scene["anatomy"]] == ["organ", "target", "vessel"]
    for item in scene["anatomy"]:
        mesh = trimesh.load(seq.scene.parent / item["mesh"], process=False)
        assert mesh.is_watertight
        assert len(mesh.faces) == len(getattr(take.phantom, item["name"]).faces)
    target = scene["targets"][0]
    assert target["name"] == "tumour" and 7.5 <= target["radius_mm"] <= 12.5
    np.testing.assert_allclose(target["position"], take.phantom.tumour_centre_ct, atol=1e-12)
    path = scene["paths"][0]
    assert path["target"] == "tumour"
    np.testing.assert_allclose(path["entry"], take.phantom.entry_ct, atol=1e-12)
    assert scene["tools"] == [] and scene["markups"] == []


def test_scene_file_loads_with_the_project_loader(seq):
    scene_module = pytest.importorskip("ar_guide.scene")
    scene = scene_module.load_scene(seq.scene)
    assert [t.name for t in scene.targets] == ["tumour"]
    assert len(scene.anatomy) == 3


def test_ground_truth_matches_the_script(seq):
    truth = load_ground_truth(seq.ground_truth)
    assert len(truth) == 60
    np.testing.assert_allclose(truth.timestamps_s, np.arange(60) / 30.0, atol=1e-15)
    take = Take(640, 360, 2.0, TEST_SPEC.seed)
    for i in (0, 17, 41, 59):
        expected = take.truth(truth.timestamps_s[i])
        np.testing.assert_allclose(truth.camera_from_reference[i], expected.camera_from_reference, atol=1e-9)
        assert truth.visible_markers[i] == expected.visibility.visible_markers
        assert truth.visible_corners[i] == expected.visibility.visible_corners
        assert truth.hand_covering[i] == expected.visibility.hand_covering
    for m in truth.camera_from_reference:
        check_transform(m, atol=1e-12)


def test_no_marker_is_detected_while_the_board_is_out_of_view(seq, frames):
    truth = load_ground_truth(seq.ground_truth)
    out = np.flatnonzero(truth.visible_markers == 0)
    assert 3 <= len(out) <= 8  # about 1 s of the 10 s script, at 2 s / 60 frames
    assert np.all(truth.visible_corners[out] == 0)
    detector = MarkerDetector(BOARD_DICTIONARY)
    for i in out:
        gray = cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY)
        assert len(detector.detect(gray)) == 0, f"frame {i}"


def test_the_hand_hides_part_of_the_board(seq, frames):
    truth = load_ground_truth(seq.ground_truth)
    hand = np.flatnonzero(truth.hand_covering)
    assert 7 <= len(hand) <= 11  # about 1.5 s of the script
    assert np.all(np.diff(hand) == 1)  # one stretch
    assert np.all(truth.visible_markers[hand] >= 6)
    # At the stretch's ends the hand may cover only squares between markers.
    assert np.all(truth.visible_markers[hand[1:-1]] < 17)
    # Before and after the stretch the whole board is visible again.
    assert truth.visible_markers[hand[0] - 2] == 17 and truth.visible_markers[hand[-1] + 2] == 17
    # The detector sees about what the ground truth says (never many more: the hand is real).
    detector = MarkerDetector(BOARD_DICTIONARY)
    for i in hand:
        found = len(detector.detect(cv2.cvtColor(frames[i], cv2.COLOR_BGR2GRAY)))
        assert found <= truth.visible_markers[i] + 1, f"frame {i}"


def test_cache_is_reused(seq, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the sequence was generated again")

    monkeypatch.setattr(seqmod, "generate_sequence", fail)
    mtime = seq.video.stat().st_mtime_ns
    again = ensure_sequence(TEST_SPEC, progress=False)
    assert again == seq and seq.video.stat().st_mtime_ns == mtime


def test_generation_is_deterministic(seq, frames, tmp_path):
    copy = generate_sequence(tmp_path, TEST_SPEC, progress=False)
    assert copy.ground_truth.read_bytes() == seq.ground_truth.read_bytes()
    assert copy.scene.read_bytes() == seq.scene.read_bytes()
    for name in ("liver.ply", "tumour.ply", "vessel.ply"):
        assert (tmp_path / "meshes" / name).read_bytes() == (seq.root / "meshes" / name).read_bytes()
    other = read_video(copy.video)
    assert len(other) == len(frames)
    diff = np.array([np.abs(a.astype(int) - b.astype(int)).mean() for a, b in zip(frames, other)])
    assert diff.max() < 0.05  # equal or nearly (the encoder may differ in the last bits)


def test_an_interrupted_generation_leaves_nothing_behind(monkeypatch):
    spec = dataclasses.replace(TEST_SPEC, seed=99, duration_s=0.5)
    parent = cache_root() / "synth"
    parent.mkdir(parents=True, exist_ok=True)
    stale = parent / ".tmp-phantom-from-a-killed-run"
    stale.mkdir(exist_ok=True)
    old = time.time() - 7 * 3600
    os.utime(stale, (old, old))
    calls = {"n": 0}
    original = Take.render_linear

    def crash_on_the_fifth_frame(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Take, "render_linear", crash_on_the_fifth_frame)
    with pytest.raises(KeyboardInterrupt):
        ensure_sequence(spec, progress=False)
    assert calls["n"] == 5
    assert not sequence_dir(spec).exists()
    assert not list(parent.glob(".tmp-*"))  # neither ours nor the stale one


def test_incomplete_cached_sequence_is_regenerated():
    spec = dataclasses.replace(TEST_SPEC, seed=98, duration_s=0.4)
    first = ensure_sequence(spec, progress=False)
    first.video.unlink()
    second = ensure_sequence(spec, progress=False)
    assert second.root == first.root and second.video.is_file()


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("AR_GUIDE_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("AR_GUIDE_CACHE")
    assert cache_root() == tmp_path / "xdg" / "ar_guide"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "ar_guide"


def test_unwritable_cache_is_a_clear_error(monkeypatch, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("")
    monkeypatch.setenv("AR_GUIDE_CACHE", str(blocker))
    with pytest.raises(InputError, match="cannot create the cache folder .*set AR_GUIDE_CACHE"):
        ensure_sequence(dataclasses.replace(TEST_SPEC, seed=97), progress=False)


def test_cache_key_changes_with_the_spec():
    assert sequence_dir(TEST_SPEC) == sequence_dir(dataclasses.replace(TEST_SPEC))
    assert sequence_dir(TEST_SPEC) != sequence_dir(dataclasses.replace(TEST_SPEC, crf=23))
    assert sequence_dir(TEST_SPEC) != sequence_dir(dataclasses.replace(TEST_SPEC, seed=8))


@pytest.mark.parametrize("kwargs, message", [
    (dict(width=641), "width and height must be even and at least 64, got 641x720"),
    (dict(height=32), "width and height must be even and at least 64, got 1280x32"),
    (dict(fps=0.0), "fps and duration_s must be positive"),
    (dict(motion_blur_samples=0), "motion_blur_samples must be at least 1, got 0"),
    (dict(crf=60), "crf must lie in 0..51, got 60"),
])
def test_invalid_specs_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        SequenceSpec(**kwargs)


# -- ground_truth.csv -------------------------------------------------------------------------------

def _truth(n=4, seed=0):
    rng = np.random.default_rng(seed)
    poses = []
    for _ in range(n):
        from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec

        poses.append(make_transform(rotation_from_rotvec(rng.normal(size=3)), rng.normal(size=3) * 300))
    return GroundTruth(np.arange(n) / 30.0, np.array(poses), rng.integers(0, 18, n), rng.integers(0, 25, n),
                       rng.random(n) < 0.5)


def test_ground_truth_round_trip_is_exact(tmp_path):
    truth = _truth()
    write_ground_truth(tmp_path / "gt.csv", truth)
    back = load_ground_truth(tmp_path / "gt.csv")
    np.testing.assert_allclose(back.camera_from_reference, truth.camera_from_reference, atol=1e-12)
    np.testing.assert_array_equal(back.timestamps_s, truth.timestamps_s)
    np.testing.assert_array_equal(back.visible_markers, truth.visible_markers)
    np.testing.assert_array_equal(back.visible_corners, truth.visible_corners)
    np.testing.assert_array_equal(back.hand_covering, truth.hand_covering)
    assert back.camera_from_reference.shape == (4, 4, 4) and back.hand_covering.dtype == bool
    np.testing.assert_allclose(invert_transform(back.camera_from_reference[0]) @ truth.camera_from_reference[0],
                               np.eye(4), atol=1e-12)


def _corrupt(tmp_path, line: int, column: str, value: str):
    write_ground_truth(tmp_path / "gt.csv", _truth())
    lines = (tmp_path / "gt.csv").read_text().splitlines()
    cells = lines[line - 1].split(",")
    cells[COLUMNS.index(column)] = value
    lines[line - 1] = ",".join(cells)
    (tmp_path / "gt.csv").write_text("\n".join(lines) + "\n")
    return tmp_path / "gt.csv"


@pytest.mark.parametrize("line, column, value, message", [
    (3, "tx", "abc", r"gt.csv: 'tx': line 3: expected a number, got 'abc'"),
    (2, "qz", "nan", r"gt.csv: 'qz': line 2: expected a finite number, got 'nan'"),
    (4, "qw", "7", r"gt.csv: line 4: quaternion \(qw, qx, qy, qz\) must have unit length"),
    (2, "hand_covering", "2", r"gt.csv: 'hand_covering': line 2: expected 0 or 1, got '2'"),
    (5, "visible_markers", "-1", r"gt.csv: 'visible_markers': line 5: expected a whole number >= 0, got '-1'"),
    (3, "frame", "7", r"gt.csv: 'frame': line 3: frames must count 0, 1, 2, ... in order"),
])
def test_malformed_ground_truth_is_refused(tmp_path, line, column, value, message):
    path = _corrupt(tmp_path, line, column, value)
    with pytest.raises(InputError, match=message):
        load_ground_truth(path)


def test_ground_truth_file_problems(tmp_path):
    with pytest.raises(InputError, match="missing.csv: ground-truth file not found"):
        load_ground_truth(tmp_path / "missing.csv")
    (tmp_path / "header.csv").write_text("frame,time\n0,0\n")
    with pytest.raises(InputError, match="header.csv: expected the header frame,timestamp_s,tx"):
        load_ground_truth(tmp_path / "header.csv")
    (tmp_path / "empty.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(InputError, match="empty.csv: no frames"):
        load_ground_truth(tmp_path / "empty.csv")
    (tmp_path / "short.csv").write_text(",".join(COLUMNS) + "\n0,0,1,2\n")
    with pytest.raises(InputError, match="short.csv: line 2: expected 12 values, got 4"):
        load_ground_truth(tmp_path / "short.csv")
