"""The crash-safe recording of a live session (ar_guide.io.recorder) and its replay (recording, play).

Synthetic frames carry their frame number in black/white blocks (recorder_child.frame_image), so
every replayed picture can be checked against the row that claims it.  Real failures, not mocks:
a segment file that is a link to /dev/full (ENOSPC from the kernel), RLIMIT_FSIZE in a subprocess
(EFBIG), a folder removed under the writer, and kill -9 of a recording process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ar_guide.camera import load_camera
from ar_guide.cli import main
from ar_guide.constants import RecorderSettings
from ar_guide.errors import InputError
from ar_guide.io.poselog import read_pose_log
from ar_guide.io.recorder import Recorder, open_recording
from ar_guide.io.recording import RECORDED, RecordingSource, read_frames_csv, segment_name
from ar_guide.io.sources import Frame, VideoFileSource
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence
from recorder_child import frame_image, read_index, states_for

CHILD = Path(__file__).with_name("recorder_child.py")
ROOT = Path(__file__).resolve().parents[1]
W, H = 320, 240
#: Nothing dropped however slow the machine: these tests are about content, not back-pressure.
NO_DROPS = RecorderSettings(max_queue_frames=10_000)


def synthetic_take(seconds: float, fps: float = 30.0, seed: int = 3):
    """Frame numbers with gaps (frames the live loop skipped) and timestamps with jitter."""
    rng = np.random.default_rng(seed)
    numbers = np.arange(int(seconds * fps))
    numbers = numbers[rng.random(numbers.size) > 0.1]           # ~10 % never processed
    timestamps = 12.5 + numbers / fps + rng.uniform(-0.004, 0.004, numbers.size)
    return [int(n) for n in numbers], [float(t) for t in timestamps]


def record(folder: Path, numbers, timestamps, settings=NO_DROPS, size=(W, H), noise=0) -> Recorder:
    rng = np.random.default_rng(0)
    recorder = Recorder(folder, 30.0, size, ["reference", "pointer"], settings=settings,
                        metadata={"camera": "synthetic", "calibration": "cam.yaml"})
    for n, t in zip(numbers, timestamps):
        image = frame_image(n, size[0], size[1], rng, noise)
        recorder.write(Frame(n, t, image), 1000.0 + t, image, 255 - image, states_for(n, t))
    recorder.close()
    return recorder


# --------------------------------------------------------------------------- record and replay

def test_record_then_replay_same_frames_and_timestamps(tmp_path):
    numbers, timestamps = synthetic_take(3.0)
    recorder = record(tmp_path / "rec", numbers, timestamps)
    assert recorder.error is None
    assert recorder.frames_written == len(numbers) and recorder.frames_dropped == 0

    info = open_recording(tmp_path / "rec")
    assert info.closed and info.error is None
    # 3 s of timestamps cut every 1 s of recording time: 3 segments, all finished.
    assert len(info.raw_segments) == len(info.overlay_segments) == 3 == info.complete_segments
    assert [p.name for p in info.raw_segments] == [segment_name(k) for k in range(3)]
    assert info.metadata["session"] == {"camera": "synthetic", "calibration": "cam.yaml"}
    assert info.metadata["frames_recorded"] == len(numbers)

    with RecordingSource(info) as source:
        frames = list(source)
    assert [f.index for f in frames] == numbers
    # frames.csv keeps 6 decimals (1 us).
    np.testing.assert_allclose([f.timestamp_s for f in frames], timestamps, atol=1e-6, rtol=0)
    assert [read_index(f.image_bgr) for f in frames] == numbers
    assert source.missing_frames == 0 and source.skipped_frames == 0 and not source.unreadable_segments

    # The overlay video holds the same frames (here: the inverted image).
    with RecordingSource(info, stream="overlay") as overlay:
        inverted = list(overlay)
    assert [f.index for f in inverted] == numbers
    assert [read_index(255 - f.image_bgr) for f in inverted] == numbers

    # Each segment is a complete video on its own, starting 1 s of recording time after the last.
    rows = (tmp_path / "rec" / "segments.csv").read_text().splitlines()[1:]
    per_segment = [int(r.split(",")[3]) for r in rows]
    assert sum(per_segment) == len(numbers)
    for path, count in zip(info.raw_segments, per_segment):
        with VideoFileSource(path) as video:
            assert len(list(video)) == count and not video.ended_early
    starts = [float(r.split(",")[4]) for r in rows]
    assert all(1.0 <= b - a < 1.0 + 0.05 for a, b in zip(starts, starts[1:]))

    # The pose log: every frame, both bodies, poses as given.
    log = read_pose_log(tmp_path / "rec" / "poses.csv")
    assert len(log) == 2 * len(numbers)
    reference = [r for r in log if r.body == "reference"]
    assert [r.frame for r in reference] == numbers
    np.testing.assert_allclose([r.translation_mm for r in reference],
                               [(n * 0.5, -n * 0.25, 400.0 + n) for n in numbers], atol=1e-6)
    pointer = [r for r in log if r.body == "pointer"]
    assert [r.status for r in pointer] == ["LOST" if n % 3 == 2 else "OK" for n in numbers]
    assert all(r.camera_from_body is None for r in pointer if r.status == "LOST")

    # frames.csv: capture times as given, wall-clock times consistent with them.
    rows = read_frames_csv(tmp_path / "rec" / "frames.csv")
    np.testing.assert_allclose([r.capture_monotonic_s for r in rows], [1000.0 + t for t in timestamps], atol=1e-6)
    gaps = np.diff([r.capture_unix_s for r in rows]) - np.diff([r.capture_monotonic_s for r in rows])
    assert np.all(np.abs(gaps) < 2e-6)


def test_writer_behind_drops_frames_from_the_recording_not_the_poses(tmp_path):
    numbers = list(range(60))
    timestamps = [n / 30.0 for n in numbers]
    # One frame in flight at most: the frames written while the writer encodes are dropped.
    recorder = record(tmp_path / "rec", numbers, timestamps, settings=RecorderSettings(max_queue_frames=1),
                      size=(640, 480), noise=30)
    assert recorder.error is None
    assert recorder.frames_dropped > 0
    assert recorder.frames_written + recorder.frames_dropped == len(numbers)
    rows = read_frames_csv(tmp_path / "rec" / "frames.csv")
    assert [r.frame for r in rows] == numbers
    kept = [r.frame for r in rows if r.status == RECORDED]
    assert len(kept) == recorder.frames_written
    assert all(r.segment is None and r.pts_ms is None for r in rows if r.status != RECORDED)
    assert len(read_pose_log(tmp_path / "rec" / "poses.csv")) == 2 * len(numbers)
    with RecordingSource(tmp_path / "rec") as source:
        replayed = list(source)
    assert [f.index for f in replayed] == kept
    assert [read_index(f.image_bgr) for f in replayed] == kept
    assert open_recording(tmp_path / "rec").frames_dropped == recorder.frames_dropped


def test_play_replays_a_recording_with_its_original_timestamps(tmp_path, capsys):
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    with VideoFileSource(sequence.video) as video:
        images = [f.image_bgr for f in video]
    # Every other frame, as a live loop at half the camera's rate would have processed them, on
    # the live session's clock (it started 100 s before the recording).
    numbers = list(range(0, len(images), 2))
    timestamps = [100.0 + n / TEST_SPEC.fps for n in numbers]
    recorder = Recorder(tmp_path / "rec", TEST_SPEC.fps, (TEST_SPEC.width, TEST_SPEC.height), ["phantom"],
                        settings=NO_DROPS, metadata={"calibration": str(sequence.calibration)})
    for n, t in zip(numbers, timestamps):
        recorder.write(Frame(n, t, images[n]), t, images[n], images[n], {})
    recorder.close()
    assert recorder.error is None

    poses, report = tmp_path / "poses.csv", tmp_path / "report.json"
    # No --calibration and none in the scene's folder needed: the recording names the one it used.
    code = main(["play", str(tmp_path / "rec"), "--scene", str(sequence.scene), "--no-window", "--realtime",
                 "--poses", str(poses), "--report", str(report)])
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(report.read_text())
    assert data["input"]["recording"] == str(tmp_path / "rec")
    assert data["recording"]["closed"] is True and data["recording"]["frames_recorded"] == len(numbers)
    assert data["recording"]["frames_missing"] == 0
    assert data["frames"] == len(numbers)
    log = read_pose_log(poses)
    assert [r.frame for r in log] == numbers
    np.testing.assert_allclose([r.timestamp_s for r in log], timestamps, atol=1e-6)

    # The raw video is good enough to track on: the same frames straight from the camera images give
    # the same status in every frame and nearly the same poses.  Re-encoding (crf 18) moves corners
    # by hundredths of a pixel; at 450-630 mm that is tenths of a mm, mostly in depth (measured:
    # median 0.18 mm, largest 0.94 mm), against the 2 mm navigation systems are held to.
    pipeline = build_pipeline(load_scene(sequence.scene), load_camera(sequence.calibration), render=False)
    direct = [pipeline.process(n, t, images[n].copy()).reference_state for n, t in zip(numbers, timestamps)]
    assert [r.status for r in log] == [s.status.value for s in direct]
    assert sum(s.status.value == "OK" for s in direct) >= 15
    moved = [np.linalg.norm(r.translation_mm - s.camera_from_body[:3, 3])
             for r, s in zip(log, direct) if r.status == "OK"]
    assert np.median(moved) < 0.4 and max(moved) < 1.5
    # --realtime paced by those timestamps: the replay cannot be shorter than the take.
    assert data["wall_time_s"] >= timestamps[-1] - timestamps[0] - 0.05


# --------------------------------------------------------------------------- write errors

def test_disk_full_stops_the_recording_with_one_line_and_keeps_what_was_written(tmp_path):
    folder = tmp_path / "rec"
    recorder = Recorder(folder, 30.0, (W, H), ["reference", "pointer"], settings=NO_DROPS)
    # The second raw segment is a link to /dev/full: every write to it fails with ENOSPC.
    os.symlink("/dev/full", folder / "raw" / segment_name(1))
    rng = np.random.default_rng(0)
    for n in range(75):   # 2.5 s
        image = frame_image(n, W, H, rng)
        recorder.write(Frame(n, n / 30.0, image), n / 30.0, image, image, states_for(n, n / 30.0))
    recorder.close()       # never raises
    assert recorder.error is not None
    assert recorder.error.startswith("recording stopped: No space left on device (")
    assert recorder.error.endswith(f"{os.sep}raw{os.sep}{segment_name(1)})")
    assert "\n" not in recorder.error
    recorder.write(Frame(99, 3.3, image), 3.3, image, image, {})   # after the error: ignored, no exception

    info = open_recording(folder)
    assert info.closed and info.error == recorder.error
    assert info.complete_segments == 1
    with VideoFileSource(info.raw_segments[0]) as first:
        assert [read_index(f.image_bgr) for f in first] == list(range(30))
    with RecordingSource(info) as source:
        replayed = list(source)
    assert [f.index for f in replayed] == list(range(30))


def test_write_error_in_the_middle_folder_removed(tmp_path):
    folder = tmp_path / "rec"
    recorder = Recorder(folder, 30.0, (W, H), ["reference"], settings=NO_DROPS)
    rng = np.random.default_rng(0)

    def write(n):
        image = frame_image(n, W, H, rng)
        recorder.write(Frame(n, n / 30.0, image), n / 30.0, image, image, {})

    for n in range(45):
        write(n)
    deadline = time.monotonic() + 30
    while recorder.queued and time.monotonic() < deadline:
        time.sleep(0.01)
    shutil.rmtree(folder / "overlay")       # a drive pulled out from under one stream
    for n in range(45, 90):
        write(n)
    recorder.close()
    # Segment 1 was open when its folder went: its frames reached the (unlinked) file, and closing it
    # at the segment's end is where the loss shows.
    assert recorder.error == (f"recording stopped: No such file or directory "
                              f"({folder / 'overlay' / segment_name(1)})")
    assert recorder.frames_written == 60
    info = open_recording(folder)
    assert info.closed and info.complete_segments == 1
    with RecordingSource(info) as source:
        assert [f.index for f in source] == list(range(60))      # the raw stream is intact
    assert info.overlay_segments == ()                                  # gone with its folder


def test_file_size_limit_in_a_subprocess(tmp_path):
    # RLIMIT_FSIZE: a write beyond 300 kB fails with EFBIG, as writes to a full disk fail.
    folder = tmp_path / "rec"
    done = subprocess.run([sys.executable, str(CHILD), str(folder), "--seconds", "4", "--noise", "60",
                           "--fsize-limit", "300000"], capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    closed = json.loads(done.stdout.strip().splitlines()[-1].removeprefix("closed "))
    assert closed["error"].startswith("recording stopped: File too large (")
    submitted = [line for line in done.stdout.splitlines() if line.startswith("frame ")]
    assert len(submitted) == 121                     # the live loop went on to the end
    info = open_recording(folder)
    assert info.error == closed["error"]
    with RecordingSource(info) as source:
        replayed = [(f.index, read_index(f.image_bgr)) for f in source]
    assert replayed and all(a == b for a, b in replayed)
    recorded = [r.frame for r in info.frames if r.status == RECORDED]
    assert [a for a, _ in replayed] == recorded[:len(replayed)]
    assert info.frames[-1].frame < 120           # frames.csv stopped with the error too


# --------------------------------------------------------------------------- kill -9

def test_kill_9_leaves_everything_up_to_the_last_second_readable(tmp_path):
    folder = tmp_path / "rec"
    child = subprocess.Popen([sys.executable, str(CHILD), str(folder), "--seconds", "30", "--noise", "20"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(ROOT))
    submitted: list[tuple[int, float]] = []
    reached = threading.Event()

    def read_stdout():
        for line in child.stdout:
            if line.startswith("frame "):
                _, n, t = line.split()
                submitted.append((int(n), float(t)))
                if float(t) >= 2.5:
                    reached.set()

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        assert reached.wait(60), child.stderr.read() if child.poll() is not None else "child too slow"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    reader.join(5)
    assert child.returncode == -signal.SIGKILL
    last_index, last_time = submitted[-1]

    info = open_recording(folder)
    assert not info.closed and info.metadata["state"] == "recording"
    rows = read_frames_csv(folder / "frames.csv")           # a cut-off last line is ignored
    assert [r.frame for r in rows] == list(range(len(rows)))
    logged = [r.frame for r in read_pose_log(folder / "poses.csv") if r.body == "reference"]
    assert logged == list(range(len(logged)))
    # Every finished segment decodes completely: the frames its rows say it holds (on a busy machine
    # the writer may have dropped some from the recording; their rows say so).
    finished = (folder / "segments.csv").read_text().splitlines()[1:]
    assert len(finished) >= 2
    for line in finished:
        number, first, last, count = (int(v) for v in line.split(",")[:4])
        with VideoFileSource(folder / "raw" / segment_name(number)) as video:
            indices = [read_index(f.image_bgr) for f in video]
        expected = [r.frame for r in rows if r.status == RECORDED and r.segment == number]
        assert indices == expected and len(indices) == count and (expected[0], expected[-1]) == (first, last)
    # The whole recording replays, in order, up to at most 1 s before the kill.
    with RecordingSource(info) as source:
        replayed = list(source)
    recorded = [r.frame for r in rows if r.status == RECORDED]
    assert [f.index for f in replayed] == recorded[:len(replayed)]
    assert [read_index(f.image_bgr) for f in replayed] == [f.index for f in replayed]
    assert last_time - replayed[-1].timestamp_s <= 1.0, (last_time, replayed[-1].timestamp_s)


# --------------------------------------------------------------------------- mistakes

def test_recorder_refuses_bad_folders_and_sizes(tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x.txt").write_text("x")
    with pytest.raises(InputError, match="used: already exists and is not an empty folder"):
        Recorder(tmp_path / "used", 30.0, (W, H), ["reference"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="cannot record here: "):
        Recorder(tmp_path / "file" / "rec", 30.0, (W, H), ["reference"])
    with pytest.raises(InputError, match="cannot record 321x240: H.264 needs an even frame size"):
        Recorder(tmp_path / "odd", 30.0, (321, 240), ["reference"])
    with pytest.raises(InputError, match="cannot record at frame rate 0"):
        Recorder(tmp_path / "zero", 0, (W, H), ["reference"])
    # An empty folder is fine.
    (tmp_path / "empty").mkdir()
    Recorder(tmp_path / "empty", 30.0, (W, H), ["reference"]).close()


def test_frame_of_another_size_stops_the_recording(tmp_path):
    recorder = Recorder(tmp_path / "rec", 30.0, (W, H), ["reference"], settings=NO_DROPS)
    good = frame_image(0, W, H)
    recorder.write(Frame(0, 0.0, good), 0.0, good, good, {})
    small = frame_image(1, 160, 120)
    recorder.write(Frame(1, 0.033, small), 0.033, small, small, {})
    recorder.write(Frame(2, 0.067, good), 0.067, good, good, {})
    recorder.close()
    assert recorder.error == ("recording stopped: a frame of 160x120 in a 320x240 recording "
                              "(the camera changed its size)")
    assert recorder.frames_written == 1
    info = open_recording(tmp_path / "rec")       # the segment before was closed properly
    assert info.complete_segments == 1 and info.error == recorder.error
    with RecordingSource(info) as source:
        assert [f.index for f in source] == [0]


def test_open_recording_errors(tmp_path):
    with pytest.raises(InputError, match="no such recording folder"):
        open_recording(tmp_path / "none")
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match=r"plain: not a recording: no recording.json"):
        open_recording(tmp_path / "plain")
    record(tmp_path / "rec", [0, 1, 2], [0.0, 0.033, 0.067])
    meta = tmp_path / "rec" / "recording.json"
    good = meta.read_text()
    meta.write_text(good.replace('"format_version": 1', '"format_version": 7'))
    with pytest.raises(InputError, match="'format_version': recording format version 7 is not supported"):
        open_recording(tmp_path / "rec")
    meta.write_text("{")
    with pytest.raises(InputError, match="cannot read the recording's description"):
        open_recording(tmp_path / "rec")
    meta.write_text(good)
    frames = tmp_path / "rec" / "frames.csv"
    lines = frames.read_text().splitlines(keepends=True)
    frames.write_text("".join(lines[:2]) + "1,x,1,1,recorded,0,33\n" + "".join(lines[3:]))
    with pytest.raises(InputError, match="frames.csv: line 3: expected numbers"):
        open_recording(tmp_path / "rec")
    frames.write_text("".join(lines[:2]) + "1,0.033,1,1,recorded,,\n")
    with pytest.raises(InputError, match="frames.csv: line 3: inconsistent row"):
        open_recording(tmp_path / "rec")
    # A cut-off last line (a crash while writing it) is not an error.
    frames.write_text("".join(lines) + "3,0.1,1,1,reco")
    assert len(open_recording(tmp_path / "rec").frames) == 3


def test_play_names_a_folder_that_is_not_a_recording(tmp_path, capsys):
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    (tmp_path / "plain").mkdir()
    code = main(["play", str(tmp_path / "plain"), "--scene", str(sequence.scene), "--no-window",
                 "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (f"ar-guide: error: {tmp_path / 'plain'}: not a recording: no recording.json (play takes a "
                        "video file or a folder written by ar-guide live --record)")
