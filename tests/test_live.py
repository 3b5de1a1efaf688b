"""``ar-guide live``: the loop, the keys, the HUD figures, camera loss, recording, and the window.

Most tests drive :class:`LiveSession` in-process with a scripted display (keys by frame) and a still
or recorded synthetic phantom as the camera; the window tests run the command on a virtual
display (Xvfb), send keys with xdotool and look at the window with ImageMagick's ``import``.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from live_media import STILL_FRAME, FlakyOpener, FramesCamera, frame_of, still_video

from ar_guide.apps import live_files
from ar_guide.apps.live_keys import BINDINGS, action_for
from ar_guide.apps.live_session import LiveOptions, LiveSession, RateMeter
from ar_guide.camera import load_camera, save_camera
from ar_guide.cli import main
from ar_guide.constants import LiveSettings
from ar_guide.errors import InputError
from ar_guide.render.overlays_ui import live_hud_lines
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sequence():
    return ensure_sequence(TEST_SPEC, progress=False)


@pytest.fixture(scope="module")
def still_image(sequence):
    return frame_of(sequence.video, STILL_FRAME)


@pytest.fixture(scope="module")
def still_mkv(still_image, tmp_path_factory):
    """10 s of the still frame: the camera of the command-line tests."""
    return still_video(still_image, tmp_path_factory.mktemp("still") / "still.mkv", seconds=10.0)


def make_pipeline(sequence):
    return build_pipeline(load_scene(sequence.scene), load_camera(sequence.calibration))


class ScriptedDisplay:
    """A display that presses ``keys[n]`` after the n-th image shown (0-based) and keeps copies
    of the images shown."""

    def __init__(self, keys: dict[int, str | int]):
        self.keys = {n: (ord(k) if isinstance(k, str) else k) for n, k in keys.items()}
        self.images: list[np.ndarray] = []
        self.fullscreen = False
        self.closed = False

    def show(self, image_bgr, wait_ms: int = 1) -> int:
        self.images.append(image_bgr.copy())
        return self.keys.get(len(self.images) - 1, -1)

    def is_open(self) -> bool:
        return not self.closed

    def toggle_fullscreen(self) -> bool:
        self.fullscreen = not self.fullscreen
        return self.fullscreen

    def close(self) -> None:
        self.closed = True


def run_session(camera, pipeline, keys=None, tmp_path=None, **options):
    records = []
    display = ScriptedDisplay(keys or {})
    if tmp_path is not None:
        options.setdefault("screenshot_dir", tmp_path / "shots")
        options.setdefault("record_base", tmp_path / "rec")
    factory = options.pop("recorder_factory", None)
    opts = LiveOptions(on_display=lambda r: records.append(r), **options)
    session = LiveSession(camera, pipeline, display, opts, **({"recorder_factory": factory} if factory else {}))
    report = session.run()
    return session, display, records, report


# ------------------------------------------------------------------------------- keys and figures


def test_every_key_has_one_action_in_either_case():
    for binding in BINDINGS:
        for code in binding.codes:
            assert action_for(code) == binding.action
    assert action_for(ord("A")) == action_for(ord("a")) == "anatomy"
    assert action_for(ord("=")) == "opacity_up" and action_for(ord("_")) == "opacity_down"
    assert action_for(27) == "quit"
    # Qt reports modifiers above the low 16 bits: shift+"=" is still "+".
    assert action_for(0x2000000 | ord("+")) == "opacity_up"
    assert action_for(-1) is None and action_for(ord("z")) is None


def test_readme_lists_every_key():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Live overlay"):]
    section = section[:section.find("\n## ", 3)]
    # Rows like "| `q` / `Esc` | quit ... |": the keys in back-quotes, then the action.
    rows = {}
    for line in section.splitlines():
        cells = line.split("|")
        if len(cells) >= 4 and "`" in cells[1]:
            rows[" / ".join(re.findall(r"`([^`]+)`", cells[1]))] = cells[2].strip()
    assert set(rows) == {b.label for b in BINDINGS}, "README's live keys table and live_keys.BINDINGS differ"
    for binding in BINDINGS:
        # The README's wording may be longer, but it starts like the on-screen help's.
        first_words = " ".join(binding.description.split()[:2])
        assert rows[binding.label].startswith(first_words), (binding.label, rows[binding.label])


def test_rate_meter_known_answer():
    meter = RateMeter(window_s=1.0)
    assert meter.fps() is None and meter.latency_ms() is None
    # 3 s of frames at 25 Hz: latency 40 ms, then 60 ms in the last second.
    for k in range(75):
        meter.add(k / 25.0, 0.040 if k < 50 else 0.060)
    # The window holds the frames shown in the last second: 26 (t = 2.00 ... 2.96 s is 25, plus
    # t = 1.96 s exactly at the edge), so 25 intervals over 1.0 s.
    assert meter.fps() == pytest.approx(25.0, rel=1e-9)
    assert meter.latency_ms() == pytest.approx(60.0)


def test_hud_latency_turns_amber_above_105_ms():
    settings = LiveSettings()
    (text, colour), = live_hud_lines(30.0, 48.0, 7, settings=settings)
    assert text == "30.0 fps  latency 48 ms (capture to display)  skipped 7"
    assert colour == (240, 240, 240)
    (_, colour), = live_hud_lines(30.0, 120.0, 0, settings=settings)
    assert colour == (0, 191, 255)
    lines = live_hud_lines(None, None, 0, hidden=["anatomy", "paths"], settings=settings)
    assert lines[0][0].startswith("-- fps  latency --")
    assert lines[1][0] == "hidden: anatomy, paths"
    assert live_hud_lines(30, 40, 0, opacity_scale=0.6)[1][0] == "anatomy opacity 60 %"


def test_elapsed_time_on_the_rec_indicator():
    from ar_guide.render.overlays_ui import format_elapsed

    assert [format_elapsed(s) for s in (0, 59.9, 65, 3599, 3605)] == ["00:00", "00:59", "01:05", "59:59", "1:00:05"]


def test_recording_folders(tmp_path):
    base = tmp_path / "rec"
    assert live_files.next_recording_folder(base) == base
    base.mkdir()
    assert live_files.next_recording_folder(base) == base   # empty: still unused
    (base / "frames.csv").write_text("x")
    assert live_files.next_recording_folder(base) == tmp_path / "rec-2"
    (tmp_path / "rec-2").mkdir()
    (tmp_path / "rec-2" / "x").write_text("x")
    assert live_files.next_recording_folder(base) == tmp_path / "rec-3"
    with pytest.raises(InputError, match="already holds files; name a new folder"):
        live_files.check_record_folder(base)
    with pytest.raises(InputError, match="exists and is not a folder"):
        live_files.check_record_folder(base / "frames.csv")
    assert live_files.check_record_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"


# ------------------------------------------------------------------------------- the loop, in-process


def anatomy_mask(pipeline_factory, image):
    """Pixels the anatomy layer changes on ``image`` (the pipeline run with and without it)."""
    with_anatomy = make_composite(pipeline_factory(), image, anatomy=True)
    without = make_composite(pipeline_factory(), image, anatomy=False)
    diff = np.abs(with_anatomy.astype(int) - without.astype(int)).max(axis=2)
    return diff > 20, with_anatomy, without


def make_composite(pipeline, image, anatomy=True, hud=False):
    pipeline.toggles.anatomy = anatomy
    pipeline.toggles.hud = hud
    result = pipeline.process(0, 0.0, image.copy())
    assert result.overlay == "current"
    return result.image_bgr


def test_keys_toggle_layers_save_screenshot_and_quit(sequence, still_image, tmp_path):
    mask, with_anatomy, without = anatomy_mask(lambda: make_pipeline(sequence), still_image)
    assert mask.sum() > 2000   # the liver covers a good part of the frame
    pipeline = make_pipeline(sequence)
    pipeline.toggles.hud = False   # the HUD's figures change from frame to frame; keys u test it below
    keys = {3: "a", 6: "a", 9: "-", 10: "-", 11: "-", 12: "+", 14: "h", 16: "h", 18: "s", 20: "u", 22: "t",
            23: "p", 25: "n", 27: "q"}
    session, display, records, report = run_session(FramesCamera([still_image] * 40), pipeline, keys, tmp_path)
    shown = display.images
    assert report["stopped_by"] == "quit key" and len(shown) == 28
    # a at image 3: image 4 has no anatomy, image 7 (after the second a) has it again.
    for k in (0, 1, 2, 3, 7, 8):
        assert np.abs(shown[k].astype(int) - with_anatomy)[mask].mean() < 1.0, k
    for k in (4, 5, 6):
        assert np.abs(shown[k].astype(int) - without)[mask].mean() < 1.0, k
    assert np.abs(with_anatomy.astype(int) - without)[mask].mean() > 20
    # Opacity: three steps down and one up: 0.8 of the scene's opacity; the anatomy is fainter
    # than at full opacity (nearer the image without anatomy), but still there.
    assert pipeline.toggles.opacity_scale == pytest.approx(0.8)
    d_full = np.abs(shown[13].astype(int) - with_anatomy)[mask].mean()
    d_none = np.abs(shown[13].astype(int) - without)[mask].mean()
    assert d_full > 1.0 and d_none > 1.0
    # Help on from image 15 to 16: a panel in the middle.
    centre = (slice(150, 210), slice(200, 440))
    assert np.abs(shown[15].astype(int) - shown[13])[centre].mean() > 20
    assert np.abs(shown[17].astype(int) - shown[13])[centre].mean() < 1.0
    # Screenshot at 18: a PNG of the clean composited frame and its sidecar.
    assert len(report["screenshots"]) == 1
    png = Path(report["screenshots"][0])
    import cv2
    saved = cv2.imread(str(png))
    assert saved.shape == still_image.shape
    side = json.loads(png.with_suffix(".json").read_text())
    assert side["image"] == png.name and side["frame_index"] == 18
    assert side["bodies"]["reference"]["status"] == "OK" and side["overlay"] == "current"
    assert len(side["bodies"]["reference"]["camera_from_body"]) == 4
    assert side["active_target"]["name"] == "tumour"
    assert side["layers"]["anatomy_opacity_scale"] == pytest.approx(0.8)
    assert side["registration"]["method"]
    # The image saved is the frame shown without the window-only drawings (here the band at the
    # bottom that confirms the opacity step).
    assert np.array_equal(saved[:-40], shown[18][:-40])
    assert np.abs(saved[-40:].astype(int) - shown[18][-40:]).mean() > 5
    # u turned the HUD on (it was off), t and p turned targets and paths off, n cycled the one target.
    assert pipeline.toggles.hud and not pipeline.toggles.targets and not pipeline.toggles.paths
    assert pipeline.active_target == 0
    hud = (slice(0, 60), slice(0, 300))
    assert np.abs(shown[21].astype(int) - shown[19])[hud].mean() > 10


def test_pause_freezes_the_display_while_tracking_goes_on(sequence, tmp_path):
    from ar_guide.io.sources import VideoFileSource

    with VideoFileSource(sequence.video) as source:
        images = [f.image_bgr.copy() for f in source][:30]
    pipeline = make_pipeline(sequence)
    session, display, records, report = run_session(FramesCamera(images), pipeline, {5: " ", 15: " "}, tmp_path)
    kinds = [r.kind for r in records]
    assert kinds[:6] == ["frame"] * 6 and kinds[6:16] == ["paused"] * 10 and kinds[16:] == ["frame"] * 14
    frozen = display.images[5]
    tag = (slice(0, 60), slice(0, 640))
    for k in range(6, 16):
        body = display.images[k].copy()
        body[tag] = frozen[tag]   # the PAUSED tag is drawn over the top band
        assert np.array_equal(body, frozen), k
        assert np.abs(display.images[k].astype(int) - frozen)[tag].mean() > 5   # the tag is there
    assert report["frames"] == 30          # every frame was tracked, paused or not
    assert report["frames_displayed"] == 20
    assert not np.array_equal(display.images[16], frozen)


class SlowPipeline:
    """The real pipeline with an artificial delay in every frame."""

    def __init__(self, pipeline, delay_s: float):
        self._pipeline = pipeline
        self.delay_s = delay_s
        self.durations_s: list[float] = []
        self.indices: list[int] = []

    def process(self, frame_index, timestamp_s, image_bgr, hud_extra=()):
        t0 = time.monotonic()
        time.sleep(self.delay_s)
        result = self._pipeline.process(frame_index, timestamp_s, image_bgr, hud_extra=hud_extra)
        self.durations_s.append(time.monotonic() - t0)
        self.indices.append(frame_index)
        return result

    def __getattr__(self, name):
        return getattr(self._pipeline, name)


def waits_ms(records, pipeline) -> np.ndarray:
    """Per frame shown: latency minus the frame's processing time (ms) = how old the frame was when
    processing began, plus the loop's own overhead."""
    latencies = np.array([r.latency_ms for r in records if r.kind == "frame"])
    return latencies - np.array(pipeline.durations_s) * 1e3


def test_newest_frame_rule_under_a_slow_pipeline(sequence):
    from ar_guide.io.livecamera import LiveCamera

    pipeline = SlowPipeline(make_pipeline(sequence), delay_s=0.100)
    camera = LiveCamera(str(sequence.video))      # a file as the camera: paced at 30 fps
    try:
        # 1.6 s of the 2 s video: the file's end (no newer frame to take) stays out of the figures.
        session, display, records, report = run_session(camera, pipeline, max_seconds=1.6)
    finally:
        camera.close()
    frame_interval_ms = 1e3 / 30.0
    wait = waits_ms(records, pipeline)
    latencies = np.array([r.latency_ms for r in records if r.kind == "frame"])
    n = len(latencies)
    # ~110 ms a frame: about 14 frames processed, two of every three skipped, and each counted:
    # every frame up to the last one processed was either processed or skipped.
    assert 10 <= n <= 16
    assert report["camera"]["skipped_frames"] == pipeline.indices[-1] + 1 - n
    assert report["camera"]["skipped_frames"] >= 1.8 * n
    assert min(np.diff(pipeline.indices)) >= 2
    # Each frame was at most one frame interval old when processing began (plus a few ms of
    # thread hand-over on a busy 2-core machine); a backlog would add ~75 ms per frame.
    assert wait.max() < frame_interval_ms + 15.0, wait
    # ... and the latency does not grow over the run.
    third = n // 3
    assert np.median(latencies[-third:]) < np.median(latencies[:third]) + 15.0, latencies


def test_a_backlog_fails_the_same_checks(sequence):
    """Control: a camera that queues every frame (what webcam trackers do, FIELD-NOTES.md) through
    the same loop and checks: the frame age grows by ~75 ms a frame, far beyond the bounds above."""
    import queue
    import threading

    from ar_guide.io.livecamera import LiveEvent
    from ar_guide.io.sources import Frame, VideoFileSource

    with VideoFileSource(sequence.video) as source:
        images = [f.image_bgr.copy() for f in source][:30]

    class QueueCamera(FramesCamera):
        def __iter__(self):
            q = queue.Queue()

            def grab():
                t0 = time.monotonic()
                for i, image in enumerate(self.images):
                    time.sleep(max(0.0, t0 + i / 30.0 - time.monotonic()))
                    q.put((i, time.monotonic(), image))
                q.put(None)
            threading.Thread(target=grab, daemon=True).start()
            while (item := q.get()) is not None:
                i, captured, image = item
                yield LiveEvent(Frame(i, captured, image), captured, "ok", "")

    pipeline = SlowPipeline(make_pipeline(sequence), delay_s=0.100)
    session, display, records, report = run_session(QueueCamera(images), pipeline, max_seconds=1.6)
    wait = waits_ms(records, pipeline)
    assert wait.max() > 1e3 / 30.0 + 15.0 + 300.0
    latencies = np.array([r.latency_ms for r in records if r.kind == "frame"])
    third = len(latencies) // 3
    assert np.median(latencies[-third:]) > np.median(latencies[:third]) + 200.0


def test_camera_loss_and_return(sequence, still_image, tmp_path):
    from ar_guide.io.livecamera import LiveCamera

    opener = FlakyOpener(still_image, before=20, failures=2, after=20)
    camera = LiveCamera("flaky-camera", opener=opener, stall_timeout_s=0.3, retry_every_s=0.2)
    pipeline = make_pipeline(sequence)
    records = []

    class QuitOnSecondLoss(ScriptedDisplay):
        """Quits when the camera is lost again after it came back (the opener fails for good then)."""

        def show(self, image_bgr, wait_ms=1):
            super().show(image_bgr, wait_ms)
            kinds = "".join(r.kind[0] for r in records)
            return ord("q") if re.search(r"lf+l$", kinds) else -1

    display = QuitOnSecondLoss({})
    session = LiveSession(camera, pipeline, display, LiveOptions(on_display=records.append, max_seconds=8.0,
                                                                 record_base=tmp_path / "rec"))
    try:
        report = session.run()
    finally:
        camera.close()
    kinds = "".join({"frame": "F", "lost": "L"}[r.kind] for r in records)
    assert re.fullmatch(r"F{15,20}L+F{15,20}L+", kinds), kinds   # the second loss ended the test
    lost = [r for r in records if r.kind == "lost"]
    frames = [r for r in records if r.kind == "frame"]
    # While lost: no frame processed, no overlay, the banner with the attempt count, a dark screen.
    assert report["frames"] == len(frames) and report["stopped_by"] == "quit key"
    assert all(r.overlay is None for r in lost)
    assert lost[0].message.startswith("CAMERA LOST - reconnecting")
    assert any(re.match(r"CAMERA LOST - reconnecting \(attempt [23], \d s\)", r.message) for r in lost)
    for r in lost:
        top = r.image_bgr[20:100, 40:600]
        assert np.all(top == 40), "the lost screen shows no video and no overlay"
        band = r.image_bgr[160:200, 20:620]
        assert (band[..., 2] > 200).mean() > 0.5, "a red banner across the middle"
    # Back: the overlay is current again (a fresh acquisition: the pipeline was reset).
    after = frames[len(kinds) - len(kinds.lstrip("F")):]   # the frames after the first outage
    assert 15 <= len(after) <= 20
    assert after[0].overlay == "current" and sum(r.overlay == "current" for r in after) >= len(after) - 1
    assert report["camera"]["outages"] == 2 and report["camera"]["reconnects"] == 1
    assert 0.3 < report["camera"]["lost_s"] < 3.0
    assert opener.calls >= 4


class FailingRecorder:
    """A recorder whose disk fills up after ``good`` frames (what Recorder reports then)."""

    def __init__(self, folder, fps, size, bodies, metadata=None, good=5):
        self.folder = Path(folder)
        self.good = good
        self.frames_written = 0
        self.error = None
        self.closed = False

    def write(self, frame, capture_time_s, raw_bgr, overlay_bgr, states):
        assert raw_bgr.shape == overlay_bgr.shape and not np.shares_memory(raw_bgr, overlay_bgr)
        if self.error is None:
            if self.frames_written >= self.good:
                self.error = f"recording stopped: No space left on device ({self.folder / 'raw/seg_00000.mkv'})"
            else:
                self.frames_written += 1

    def close(self):
        self.closed = True


def test_a_recorder_error_shows_a_banner_and_tracking_goes_on(sequence, still_image, tmp_path):
    recorders = []

    def factory(*args, **kwargs):
        recorders.append(FailingRecorder(*args, **kwargs))
        return recorders[-1]

    pipeline = make_pipeline(sequence)
    pipeline.toggles.hud = False
    session, display, records, report = run_session(FramesCamera([still_image] * 30), pipeline, {2: "r"}, tmp_path,
                                                    recorder_factory=factory)
    assert len(recorders) == 1 and recorders[0].closed and recorders[0].frames_written == 5
    assert report["recordings"][0]["error"].startswith("recording stopped: No space left on device")
    assert report["recordings"][0]["frames_written"] == 5
    # Tracking went on to the end, with the overlay current, and the error band stayed up in red.
    assert report["frames"] == 30 and all(r.overlay == "current" for r in records)
    bottom = display.images[-1][-30:, :, :]
    assert (np.abs(bottom.astype(int) - (60, 60, 255)).sum(axis=2) < 60).sum() > 500
    assert np.abs(display.images[1].astype(int) - display.images[-1])[-30:].mean() > 5


# ------------------------------------------------------------------------------- the command line


def run_cli(capsys, *args):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_headless_run_reports_latency_and_frame_rate(sequence, still_mkv, tmp_path, capsys):
    report_path = tmp_path / "live.json"
    code, out, err = run_cli(capsys, "live", "--camera", still_mkv, "--scene", sequence.scene, "--calibration",
                             sequence.calibration, "--no-window", "--max-seconds", 1.5, "--report", report_path)
    assert code == 0, err
    report = json.loads(report_path.read_text())
    assert report["command"] == "live" and report["stopped_by"] == "time limit"
    assert report["input"]["camera"] == str(still_mkv)
    assert 25 <= report["frames"] <= 50 and report["tracked_fraction"] > 0.9
    assert 20 < report["fps"] < 35
    assert 0 < report["latency_ms"]["median"] < 100
    assert report["camera"]["width"] == 640 and report["camera"]["skipped_frames"] >= 0
    assert "latency capture to display: median" in out and "fps" in out


@pytest.mark.parametrize("args, fragments", [
    (["--max-seconds", "0"], ["'--max-seconds': expected a positive number of seconds, got 0"]),
    (["--camera", "{missing}"], ["missing.mkv: no such device or file"]),
    (["--camera", "97"], ["camera 97: cannot open this camera or stream"]),
])
def test_bad_arguments_are_one_line(sequence, still_mkv, tmp_path, capsys, args, fragments):
    base = {"--camera": str(still_mkv), "--scene": str(sequence.scene), "--calibration": str(sequence.calibration)}
    extra = [a.format(missing=tmp_path / "missing.mkv") for a in args]
    for key in list(base):
        if key in extra:
            del base[key]
    argv = ["live", *[x for kv in base.items() for x in kv], *extra, "--no-window"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ar-guide: error: "), err
    for fragment in fragments:
        assert fragment in lines[0]


def test_refuses_a_calibration_of_another_size(sequence, still_mkv, tmp_path, capsys):
    camera = load_camera(sequence.calibration).scaled(1280, 720)
    cal = tmp_path / "cam720.yaml"
    save_camera(cal, camera)
    code, out, err = run_cli(capsys, "live", "--camera", still_mkv, "--scene", sequence.scene, "--calibration", cal,
                             "--no-window", "--max-seconds", 1)
    assert code == 2
    assert err.strip() == (f"ar-guide: error: {cal}: calibration is for 1280x720 images but camera {still_mkv} is "
                           "640x360; recalibrate at this resolution")


def test_refuses_to_record_over_a_recording(sequence, still_mkv, tmp_path, capsys):
    folder = tmp_path / "rec"
    folder.mkdir()
    (folder / "recording.json").write_text("{}")
    code, out, err = run_cli(capsys, "live", "--camera", still_mkv, "--scene", sequence.scene, "--calibration",
                             sequence.calibration, "--no-window", "--record", folder)
    assert code == 2
    assert err.strip() == (f"ar-guide: error: {folder}: '--record': already holds files; name a new folder "
                           "(a recording is never overwritten)")


# ------------------------------------------------------------------------------- recording through the app


def test_key_r_records_what_was_tracked(sequence, still_image, tmp_path):
    from ar_guide.io.poselog import read_pose_log
    from ar_guide.io.recording import RecordingSource, open_recording

    pipeline = make_pipeline(sequence)
    header = {"input": {"camera": "test frames", "scene": str(sequence.scene)}}
    session, display, records, report = run_session(FramesCamera([still_image] * 40), pipeline, {4: "r", 30: "r"},
                                                    tmp_path, header=header)
    # r after image 4 and after image 30: frames 5 ... 30 went to the recording.
    (entry,) = report["recordings"]
    assert entry["folder"] == str(tmp_path / "rec") and entry["error"] is None and entry["frames_written"] == 26
    assert [r.recording for r in records] == [False] * 5 + [True] * 26 + [False] * 9
    # The red REC dot at the top right while recording, and only then.
    def red_dots(image):
        corner = image[:40, -160:].astype(int)
        return int(((corner[..., 2] > 200) & (corner[..., 1] < 40) & (corner[..., 0] < 40)).sum())
    assert all(red_dots(display.images[k]) > 30 for k in range(5, 31))
    assert all(red_dots(display.images[k]) == 0 for k in list(range(5)) + list(range(31, 40)))
    info = open_recording(tmp_path / "rec")
    assert info.closed and [f.frame for f in info.frames] == list(range(5, 31))
    assert info.metadata["session"] == {"command": "live", "camera": "test frames",
                                        "scene": str(Path(sequence.scene).resolve())}
    poses = [row for row in read_pose_log(info.poses_path) if row.body == "reference"]
    assert [row.frame for row in poses] == list(range(5, 31)) and all(row.status == "OK" for row in poses)
    with RecordingSource(info) as raw:
        frames = list(raw)
    assert [f.index for f in frames] == list(range(5, 31))
    # The raw video holds the camera's frames (H.264 at crf 18 on a noisy image: ~2 grey levels
    # off), the overlay video the composited ones: compared where the anatomy is drawn.
    mask, with_anatomy, _ = anatomy_mask(lambda: make_pipeline(sequence), still_image)
    raw_image = frames[0].image_bgr.astype(int)
    assert np.abs(raw_image - still_image).mean() < 3.0
    assert np.abs(raw_image - still_image)[mask].mean() < 3.0
    assert np.abs(raw_image - with_anatomy)[mask].mean() > 20.0
    with RecordingSource(info, stream="overlay") as overlay:
        first = next(iter(overlay)).image_bgr.astype(int)
    assert np.abs(first - with_anatomy)[mask].mean() < 4.0
    assert np.abs(first - still_image)[mask].mean() > 20.0


def live_command(sequence, camera, *extra):
    import sys

    return [sys.executable, "-m", "ar_guide", "live", "--camera", str(camera), "--scene", str(sequence.scene),
            "--calibration", str(sequence.calibration), *[str(e) for e in extra]]


def test_kill_9_during_a_recording_leaves_it_readable(sequence, still_mkv, tmp_path):
    """SIGKILL a headless live recording after ~3 s: everything up to about a second before the kill
    is on disk and readable (frames.csv, poses.csv, the video segments)."""
    import os
    import signal
    import subprocess

    from ar_guide.io.poselog import read_pose_log
    from ar_guide.io.recording import RecordingSource, open_recording

    folder = tmp_path / "rec"
    proc = subprocess.Popen(live_command(sequence, still_mkv, "--no-window", "--record", folder, "--max-seconds", 30),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (folder / "frames.csv").is_file() or (folder / "frames.csv").stat().st_size < 200:
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "the recording did not start"
            time.sleep(0.05)
        time.sleep(3.0)
        killed_at = time.monotonic()    # CLOCK_MONOTONIC: the same clock as the recorder's capture times
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    info = open_recording(folder)
    assert not info.closed
    rows = [f for f in info.frames if f.status == "recorded"]
    assert len(rows) >= 60
    # The rows reach to within a second of the kill.
    assert killed_at - rows[-1].capture_monotonic_s < 1.0
    with RecordingSource(info) as raw:
        decoded = [f.index for f in raw]
    by_index = {f.frame: f for f in rows}
    assert decoded == sorted(decoded) and set(decoded) <= set(by_index)
    last_decoded = by_index[decoded[-1]]
    # Every frame recorded until 1 s before the kill decodes; the rest may be lost.
    wanted = [f.frame for f in rows if f.capture_monotonic_s < killed_at - 1.0]
    assert set(wanted) <= set(decoded), sorted(set(wanted) - set(decoded))[:10]
    assert killed_at - last_decoded.capture_monotonic_s < 1.0 + 0.5
    poses = read_pose_log(info.poses_path)
    assert {p.frame for p in poses} >= set(wanted)


# ------------------------------------------------------------------------------- the window (Xvfb)


def window_image(display: str, window: str) -> np.ndarray:
    """The window's content as BGR, grabbed with ImageMagick's ``import``."""
    import subprocess

    import cv2

    data = subprocess.run([IMPORT, "-window", window, "png:-"], capture_output=True, check=True,
                          env=_env(display)).stdout
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _env(display: str) -> dict:
    import os

    return dict(os.environ, DISPLAY=display)


IMPORT = "/usr/bin/import"   # ImageMagick's; /usr/local/bin/convert on some machines is a stand-in


@pytest.fixture
def imagemagick():
    import os

    if not os.access(IMPORT, os.X_OK):
        pytest.skip("ImageMagick's import is needed to grab the window (apt-get install imagemagick)")


def press(display: str, window: str, *keys: str, pause_s: float = 0.4) -> None:
    import subprocess

    for key in keys:
        subprocess.run(["xdotool", "key", "--window", window, key], env=_env(display), check=True)
        time.sleep(pause_s)


def test_live_window_end_to_end(xvfb, imagemagick, sequence, still_image, still_mkv, tmp_path):
    """The command on a virtual display with the still video as the camera: keys toggle the anatomy,
    f goes full screen with the aspect ratio kept, r records, s saves a screenshot, q quits; the
    window shows the overlay; the recording replays with ``ar-guide play``."""
    import subprocess

    from xdisplay import find_window

    from ar_guide.io.recording import open_recording

    decoded_still = frame_of(still_mkv, 0)
    mask, with_anatomy, without = anatomy_mask(lambda: make_pipeline(sequence), decoded_still)
    mask[:140] = False   # the HUD panel (one line more when a layer is hidden)
    assert mask.sum() > 3000
    report = tmp_path / "live.json"
    proc = subprocess.Popen(live_command(sequence, still_mkv, "--report", report, "--screenshots", tmp_path / "shots",
                                         "--max-seconds", 60),
                            cwd=tmp_path, env=_env(xvfb), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        window = find_window(xvfb, "ar_guide live")
        time.sleep(1.0)
        shown = window_image(xvfb, window)
        assert shown.shape == still_image.shape       # the window is the video, 1:1, no toolbar
        # The window shows the overlay: the anatomy as the pipeline draws it.
        assert np.abs(shown.astype(int) - with_anatomy)[mask].mean() < 2.0
        assert np.abs(shown.astype(int) - without)[mask].mean() > 20.0
        press(xvfb, window, "a")
        hidden = window_image(xvfb, window)
        assert np.abs(hidden.astype(int) - without)[mask].mean() < 2.0
        press(xvfb, window, "a", "f")
        screen = window_image(xvfb, "root")
        # Full screen on the 1280x800 display: the 16:9 video fills the width, 720 rows, centred;
        # the bars above and below are not video.
        rows = np.nonzero(np.abs(screen.astype(int) - screen[0, 0]).max(axis=(1, 2)) > 0)[0]
        assert screen.shape[:2] == (800, 1280) and rows.min() == 40 and rows.max() == 759
        scaled = cv2_resize(with_anatomy, (1280, 720))
        full_mask = cv2_resize(mask.astype(np.uint8), (1280, 720)) > 0
        assert np.abs(screen[40:760].astype(int) - scaled)[full_mask].mean() < 6.0
        press(xvfb, window, "f", "r")
        time.sleep(1.5)
        press(xvfb, window, "s", "r", "q")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    data = json.loads(report.read_text())
    assert data["stopped_by"] == "quit key" and len(data["screenshots"]) == 1
    (rec,) = data["recordings"]
    assert rec["error"] is None and rec["frames_written"] >= 30
    folder = tmp_path / rec["folder"]
    assert folder.parent == tmp_path / "ar_guide_recordings"
    info = open_recording(folder)
    assert info.closed and info.frames_recorded == rec["frames_written"]
    # The recording replays with play, with its frames and timestamps.
    play_report = tmp_path / "play.json"
    result = subprocess.run([*live_command(sequence, folder)[:3], "play", str(folder), "--scene", str(sequence.scene),
                             "--calibration", str(sequence.calibration), "--no-window", "--report", str(play_report)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    replay = json.loads(play_report.read_text())
    assert replay["frames"] == info.frames_recorded and replay["tracked_fraction"] == 1.0


def cv2_resize(image, size):
    import cv2

    return cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
