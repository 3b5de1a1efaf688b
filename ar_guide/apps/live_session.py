"""The live overlay loop: newest camera frame -> pipeline -> window, with keys, recording and HUD.

One iteration per camera event (:class:`ar_guide.io.sources.LiveEvent`): the capture thread keeps
only the newest frame, so however slow the pipeline, it never works through a backlog; frames it
never saw are counted (``skipped``).  Latency is measured per frame from the grab
(``capture_time_s``, monotonic) to just after the window was updated, and shown, with the frame
rate, as medians over the last second.

Safety (DESIGN.md): while the camera is lost, the window shows a dark screen with a red banner,
never the last image with an overlay on it; frames of another size than the calibration get no
overlay; a recorder's write error is shown and tracking goes on.  Pausing freezes the display only:
tracking and recording go on, and the frozen frame is marked PAUSED.

The display is injected (a :class:`ar_guide.io.display.Window`, or :class:`HeadlessDisplay`), and
so are the camera, the pipeline, the recorder and the clock: tests drive the whole loop without a
display, with scripted keys.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import re
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ar_guide import __version__
from ar_guide.apps import live_files
from ar_guide.apps.live_keys import BINDINGS, action_for
from ar_guide.apps.playback import machine_description, renderer_description
from ar_guide.constants import LiveSettings
from ar_guide.errors import InputError
from ar_guide.evaluation import RunStatistics
from ar_guide.io.report import summarize_ms, write_json
from ar_guide.render import overlays_ui


class HeadlessDisplay:
    """The display of ``--no-window``: shows nothing, never has a key."""

    fullscreen = False

    def show(self, image_bgr, wait_ms: int = 1) -> int:
        return -1

    def is_open(self) -> bool:
        return True

    def toggle_fullscreen(self) -> bool:
        return False

    def close(self) -> None:
        pass


class RateMeter:
    """Frame rate and median latency over the frames shown in the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 1.0):
        self.window_s = float(window_s)
        self._shown: collections.deque = collections.deque()   # (display time s, latency s)

    def add(self, shown_s: float, latency_s: float) -> None:
        self._shown.append((float(shown_s), float(latency_s)))
        while self._shown and self._shown[0][0] < shown_s - self.window_s:
            self._shown.popleft()

    def fps(self) -> float | None:
        """Frames shown per second over the window (None with fewer than two)."""
        if len(self._shown) < 2:
            return None
        span = self._shown[-1][0] - self._shown[0][0]
        return (len(self._shown) - 1) / span if span > 0 else None

    def latency_ms(self) -> float | None:
        """Median capture-to-display latency over the window (ms), None before the first frame."""
        if not self._shown:
            return None
        return float(np.median([lat for _, lat in self._shown])) * 1e3


@dataclasses.dataclass(frozen=True)
class DisplayRecord:
    """What one iteration put on the screen (for tests and tools; ``LiveOptions.on_display``).

    kind : "frame" (a new frame with its overlay), "paused" (the frozen frame), "lost" (camera
        lost screen), "wrong_size" (a frame the calibration does not fit, no overlay)
    overlay : the pipeline's overlay state of the frame shown ("current", "stale", "none"), None
        when no frame was processed
    latency_ms : capture to display of this frame (only for "frame")
    message : the banner or band text, if any
    image_bgr : the image shown (the loop's own buffer: copy it to keep it)
    """

    kind: str
    frame_index: int | None
    overlay: str | None
    latency_ms: float | None
    message: str
    image_bgr: np.ndarray
    recording: bool


@dataclasses.dataclass
class LiveOptions:
    """How a live session runs.

    max_seconds : stop after this long (None: until quit, window closed or the source ends)
    record_at_start : start recording at once, into ``record_base``
    record_base : where recordings go (key r): see live_files.next_recording_folder
    screenshot_dir : where key s writes
    header : the session's inputs for reports and sidecars ({"input": {...}})
    on_display : called after every window update with a DisplayRecord
    """

    max_seconds: float | None = None
    record_at_start: bool = False
    record_base: Path | None = None
    screenshot_dir: Path = live_files.DEFAULT_SCREENSHOTS
    report_out: Path | None = None
    header: dict = dataclasses.field(default_factory=dict)
    settings: LiveSettings = LiveSettings()
    on_display: Callable[[DisplayRecord], None] | None = None


def default_recorder_factory(folder: Path, fps: float, size: tuple[int, int], bodies: list[str],
                             metadata: dict | None = None):
    from ar_guide.io.recorder import Recorder

    return Recorder(folder, fps, size, bodies, metadata=metadata)


def recording_metadata(inputs: dict) -> dict:
    """What recording.json says about the session ("session": camera, scene, calibration), with
    files as absolute paths, so that ``play`` finds the calibration from any working directory."""
    out = {}
    for key, value in inputs.items():
        path = Path(str(value))
        out[key] = str(path.resolve()) if key != "camera" and path.is_file() else value
    return out


class LiveSession:
    """Runs the live loop over ``camera`` (an iterable of LiveEvent with ``width``, ``height``,
    ``fps``, ``dropped_frames`` and ``close()``) until quit, the time limit or the end of the source.

    pipeline : an OverlayPipeline (its ``toggles`` and ``active_target`` are the keys' state)
    display : a Window or HeadlessDisplay
    recorder_factory : ``(folder, fps, (w, h), body names) -> Recorder``
    clock : monotonic seconds; the same clock as the events' ``capture_time_s``
    log : where one-line notices go (stderr)
    """

    def __init__(self, camera, pipeline, display=None, options: LiveOptions | None = None,
                 recorder_factory=default_recorder_factory, clock=time.monotonic, log=None):
        self.camera = camera
        self.pipeline = pipeline
        self.display = display if display is not None else HeadlessDisplay()
        self.options = options or LiveOptions()
        self.settings = self.options.settings
        self.recorder_factory = recorder_factory
        self.clock = clock
        self.log = log if log is not None else sys.stderr
        self.size = tuple(int(v) for v in pipeline.camera.image_size)
        self.meter = RateMeter(self.settings.hud_window_s)
        self.stats = RunStatistics(pipeline.reference.name)
        self.latencies_ms: list[float] = []
        self.paused = False
        self.help = False
        self.recorder = None
        self.recording_started_s = 0.0
        self.recordings: list[dict] = []
        self.screenshots: list[str] = []
        self.flash: tuple[str, tuple, float] | None = None
        self.frames_displayed = 0
        self.wrong_size_frames = 0
        self.lost_events = 0
        self.lost_s = 0.0
        self.outages = 0
        self.stopped_by = ""
        self._lost_since: float | None = None
        self._frozen = None          # (image, result, frame index, timestamp, capture time) while paused
        self._shown = None           # the same for the last image shown
        self._t0 = None
        self._last_was_lost = False
        self._error_reported = False

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> dict:
        """Runs to the end; returns the report (written to ``options.report_out`` if set)."""
        self._t0 = self.clock()
        start_wall = time.perf_counter()
        try:
            if self.options.record_at_start:
                self._start_recording()
            self.stopped_by = "source ended"
            for event in self.camera:
                if not self._step(event):
                    break
                if self.options.max_seconds is not None and self.clock() - self._t0 >= self.options.max_seconds:
                    self.stopped_by = "time limit"
                    break
        except KeyboardInterrupt:
            self.stopped_by = "interrupted"
        finally:
            if self._lost_since is not None:
                self.lost_s += self.clock() - self._lost_since
            self._stop_recording(quiet=True)
            self.display.close()
        report = self.report(time.perf_counter() - start_wall)
        if self.options.report_out is not None:
            write_json(self.options.report_out, report)
        return report

    def _step(self, event) -> bool:
        """One event: process, show, handle the key.  False when the session must end."""
        now = self.clock()
        self._check_recorder()
        frame = event.frame
        result = None
        message = ""
        if frame is None or event.status != "ok":
            kind = "lost"
            self.lost_events += 1
            if self._lost_since is None:
                self._lost_since = now
                self.outages += 1
                print(f"ar-guide: camera lost: {event.message or 'no frames'}", file=self.log)
            text, detail = self._lost_texts(event, now)
            message = text
            image = overlays_ui.camera_lost_image(self.size[0], self.size[1], text, detail)
            self._last_was_lost = True
            self._shown = (image, None, None, None, None)
            self._frozen = None   # a paused frame from before the outage is not kept (paused: the next one is)
        else:
            if self._lost_since is not None:
                self.lost_s += now - self._lost_since
                self._lost_since = None
            if event.message:   # e.g. "camera back after 4.1 s (reconnect 1)"
                self._say(event.message, overlays_ui.GREEN)
            if self._last_was_lost:
                # A new camera session: no pose carries over the outage.
                self.pipeline.reset()
                self._last_was_lost = False
            image_bgr = frame.image_bgr
            h, w = image_bgr.shape[:2]
            timestamp = event.capture_time_s - self._t0   # session time: continuous over reconnections
            if (w, h) != self.size:
                kind = "wrong_size"
                self.wrong_size_frames += 1
                message = (f"CAMERA NOW {w}x{h}, CALIBRATION IS FOR {self.size[0]}x{self.size[1]} - "
                           "overlay hidden")
                image = image_bgr.copy()
                overlays_ui.annotations.draw_banner(image, message, overlays_ui.RED)
                self._shown = (image, None, frame.index, timestamp, event.capture_time_s)
            else:
                raw = image_bgr.copy() if self._recording_ok() else None
                result = self.pipeline.process(frame.index, timestamp, image_bgr, hud_extra=self._hud_extra())
                self.stats.add(result)
                if raw is not None:
                    self.recorder.write(frame, event.capture_time_s, raw, result.image_bgr, result.states)
                self._shown = (result.image_bgr, result, frame.index, timestamp, event.capture_time_s)
                image = result.image_bgr
                kind = "frame"
            if self.paused:
                if self._frozen is None:   # paused while no frame was shown: freeze the first one
                    image_now, *rest = self._shown
                    self._frozen = (image_now.copy(), *rest)
                kind = "paused"
                image = self._frozen[0]
                self._shown = self._frozen
        shown_image = self._decorate(image, copy=kind in ("frame", "paused"))
        key = self.display.show(shown_image)
        latency_ms = None
        if kind == "frame":
            done = self.clock()
            latency_ms = (done - event.capture_time_s) * 1e3
            self.meter.add(done, latency_ms / 1e3)
            self.latencies_ms.append(latency_ms)
            self.frames_displayed += 1
        if self.options.on_display is not None:
            self.options.on_display(DisplayRecord(kind, None if frame is None else frame.index,
                                                  None if result is None else result.overlay,
                                                  latency_ms, message, shown_image, self.recorder is not None))
        if not self.display.is_open():
            self.stopped_by = "window closed"
            return False
        return self._on_key(key)

    # -- what is shown ----------------------------------------------------------------------------

    def _lost_texts(self, event, now: float) -> tuple[str, str]:
        """Banner ("CAMERA LOST - reconnecting (attempt 3, 4 s)") and the camera's own message."""
        # This outage's attempt, as the camera's message counts it ("... reconnecting (attempt 3)").
        found = re.search(r"attempt (\d+)", event.message or "")
        attempts = int(found.group(1)) if found else None
        lost_for = now - self._lost_since
        inside = f"attempt {attempts}, {lost_for:.0f} s" if attempts else f"{lost_for:.0f} s"
        return f"CAMERA LOST - reconnecting ({inside})", event.message or ""

    def _hud_extra(self) -> tuple:
        toggles = self.pipeline.toggles
        hidden = [name for name, present, on in (
            ("anatomy", self.pipeline.renderer is not None, toggles.anatomy),
            ("targets", bool(self.pipeline.targets), toggles.targets),
            ("paths", bool(self.pipeline.paths), toggles.paths)) if present and not on]
        skipped = int(getattr(self.camera, "dropped_frames", 0))
        return tuple(overlays_ui.live_hud_lines(self.meter.fps(), self.meter.latency_ms(), skipped, hidden,
                                                toggles.opacity_scale, self.settings))

    def _decorate(self, image: np.ndarray, copy: bool) -> np.ndarray:
        """The image with the window-only drawings (REC, PAUSED, help, messages).  Drawn on a copy
        when ``copy``: the clean frame may still go to a screenshot or the recorder's queue."""
        now = self.clock()
        flash = self.flash if self.flash is not None and now < self.flash[2] else None
        error = self.recorder.error if self.recorder is not None else None
        if not (self.recorder is not None or self.paused or self.help or flash or error):
            return image
        out = image.copy() if copy else image
        if self.recorder is not None:
            overlays_ui.draw_recording_indicator(out, now - self.recording_started_s, failed=error is not None)
        if self.paused:
            overlays_ui.draw_tag(out, "PAUSED - space resumes (tracking goes on)")
        if self.help:
            overlays_ui.draw_help(out, self._help_rows())
        row = 0
        if error:
            overlays_ui.draw_message_band(out, f"{error} - tracking goes on; r to dismiss", overlays_ui.RED, row)
            row += 1
        if flash:
            overlays_ui.draw_message_band(out, flash[0], flash[1], row)
        return out

    def _help_rows(self) -> list[tuple[str, str, str]]:
        t = self.pipeline.toggles
        on = {True: "on", False: "off"}
        state = {"anatomy": on[t.anatomy], "targets": on[t.targets], "paths": on[t.paths], "hud": on[t.hud],
                 "opacity_up": f"{t.opacity_scale * 100:.0f} %", "opacity_down": f"{t.opacity_scale * 100:.0f} %",
                 "next_target": self.pipeline.active_target_name or "no targets",
                 "pause": "paused" if self.paused else "", "record": "recording" if self.recorder else "",
                 "fullscreen": on[bool(getattr(self.display, "fullscreen", False))], "help": "", "quit": ""}
        return [(b.label, b.description, state.get(b.action, "")) for b in BINDINGS]

    def _say(self, text: str, colour=overlays_ui.WHITE) -> None:
        print(f"ar-guide: {text}", file=self.log)
        self.flash = (text, colour, self.clock() + self.settings.flash_s)

    # -- keys ---------------------------------------------------------------------------------------

    def _on_key(self, key: int) -> bool:
        action = action_for(key)
        if action is None:
            return True
        toggles = self.pipeline.toggles
        if action == "quit":
            self.stopped_by = "quit key"
            return False
        if action in ("anatomy", "targets", "paths", "hud"):
            setattr(toggles, action, not getattr(toggles, action))
        elif action in ("opacity_up", "opacity_down"):
            step = self.settings.opacity_step * (1 if action == "opacity_up" else -1)
            value = min(1.0, max(self.settings.min_opacity_scale, toggles.opacity_scale + step))
            toggles.opacity_scale = round(value, 6)
            self._say(f"anatomy opacity {toggles.opacity_scale * 100:.0f} %")
        elif action == "next_target":
            if self.pipeline.targets:
                self.pipeline.active_target = ((self.pipeline.active_target or 0) + 1) % len(self.pipeline.targets)
                self._say(f"active target: {self.pipeline.active_target_name}")
            else:
                self._say("the scene has no targets", overlays_ui.AMBER)
        elif action == "pause":
            self.paused = not self.paused
            self._frozen = None
            if self.paused and self._shown is not None and self._shown[2] is not None:
                image, *rest = self._shown   # a camera frame, not the camera-lost screen
                self._frozen = (image.copy(), *rest)
        elif action == "screenshot":
            self._screenshot()
        elif action == "record":
            if self.recorder is None:
                self._start_recording()
            else:
                self._stop_recording()
        elif action == "fullscreen":
            self.display.toggle_fullscreen()
        elif action == "help":
            self.help = not self.help
        return True

    def _screenshot(self) -> None:
        if self._shown is None:
            self._say("no frame to save yet", overlays_ui.AMBER)
            return
        image, result, index, timestamp, capture = self._shown
        extra = {"paused": self.paused, "latency_ms_median_last_s": self.meter.latency_ms(),
                 "fps_last_s": self.meter.fps(), "recording": None if self.recorder is None
                 else str(self.recorder.folder)}
        sidecar = live_files.screenshot_sidecar(self.pipeline, result, index, timestamp, capture,
                                                self.options.header, extra)
        try:
            png = live_files.save_screenshot(self.options.screenshot_dir, image, sidecar, index)
        except OSError as exc:
            self._say(f"screenshot not saved: {getattr(exc, 'strerror', None) or exc}", overlays_ui.RED)
            return
        self.screenshots.append(str(png))
        self._say(f"screenshot saved: {png}")

    # -- recording ----------------------------------------------------------------------------------

    def _recording_ok(self) -> bool:
        return self.recorder is not None and self.recorder.error is None

    def _start_recording(self) -> None:
        folder = live_files.next_recording_folder(self.options.record_base)
        bodies = [self.pipeline.reference.name] + list(self.pipeline.tools)
        metadata = {"command": "live", **recording_metadata(self.options.header.get("input", {}))}
        try:
            self.recorder = self.recorder_factory(folder, float(getattr(self.camera, "fps", 30.0) or 30.0),
                                                  self.size, bodies, metadata=metadata)
        except (InputError, OSError) as exc:
            self.recorder = None
            if self.options.record_at_start and not self.recordings:
                raise    # --record DIR given and unusable: the user's mistake, before anything ran
            self._say(f"recording not started: {getattr(exc, 'strerror', None) or exc}", overlays_ui.RED)
            return
        self.recording_started_s = self.clock()
        self._error_reported = False
        self._say(f"recording to {folder}", overlays_ui.GREEN)

    def _check_recorder(self) -> None:
        if self.recorder is not None and self.recorder.error and not self._error_reported:
            self._error_reported = True
            print(f"ar-guide: {self.recorder.error}", file=self.log)

    def _stop_recording(self, quiet: bool = False) -> None:
        recorder, self.recorder = self.recorder, None
        if recorder is None:
            return
        try:
            recorder.close()
        except OSError as exc:  # the recorder should not raise; if it does, the session goes on
            print(f"ar-guide: closing the recording: {exc}", file=self.log)
        entry = {"folder": str(recorder.folder), "frames_written": int(recorder.frames_written),
                 "error": recorder.error}
        self.recordings.append(entry)
        text = f"recording stopped: {entry['frames_written']} frames in {recorder.folder}"
        if quiet:
            print(f"ar-guide: {text}", file=self.log)
        else:
            self._say(text)

    # -- report -------------------------------------------------------------------------------------

    def report(self, wall_s: float) -> dict:
        """The run's figures: play's report (tracking, timings per stage) plus latency, frame rate,
        skipped frames, camera losses, recordings and screenshots."""
        latency = summarize_ms(self.latencies_ms)
        return {
            "ar_guide_version": __version__,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "live",
            **self.options.header,
            **self.stats.summary(),
            "frames_displayed": self.frames_displayed,
            "fps": self.frames_displayed / wall_s if wall_s > 0 else 0.0,
            "latency_ms": latency,
            "camera": {"width": self.size[0], "height": self.size[1],
                       "fps": float(getattr(self.camera, "fps", 0.0) or 0.0),
                       "skipped_frames": int(getattr(self.camera, "dropped_frames", 0)),
                       "reconnects": int(getattr(self.camera, "reconnects", 0)),
                       "outages": self.outages, "lost_s": self.lost_s, "wrong_size_frames": self.wrong_size_frames},
            "stopped_by": self.stopped_by,
            "wall_time_s": wall_s,
            "machine": machine_description(),
            "renderer": renderer_description(self.pipeline.renderer),
            "recordings": self.recordings,
            "screenshots": self.screenshots,
        }


def print_live_summary(report: dict, stream=None) -> None:
    """A few lines after a live session: frames, frame rate, latency, skipped frames, tracking."""
    stream = stream or sys.stdout
    lat = report.get("latency_ms")
    cam = report["camera"]
    print(f"frames: {report['frames']}  shown: {report['frames_displayed']}  {report['fps']:.1f} fps  "
          f"skipped (newest frame wins): {cam['skipped_frames']}  stopped by: {report['stopped_by']}", file=stream)
    if lat:
        print(f"latency capture to display: median {lat['median']:.1f} ms, p95 {lat['p95']:.1f} ms, "
              f"max {lat['max']:.1f} ms", file=stream)
    print(f"tracked (OK): {report['tracked_fraction'] * 100:.1f}%  stale: {report['status_frames']['STALE']}  "
          f"lost: {report['status_frames']['LOST']}", file=stream)
    total = report["timings_ms"].get("total")
    if total:
        print(f"processing per frame: median {total['median']:.1f} ms, p95 {total['p95']:.1f} ms", file=stream)
    if cam["outages"] or cam["wrong_size_frames"]:
        print(f"camera lost {cam['outages']} time(s), {cam['lost_s']:.1f} s in all; reconnects: {cam['reconnects']}; "
              f"frames of the wrong size: {cam['wrong_size_frames']}", file=stream)
    for rec in report["recordings"]:
        tail = f"  ERROR: {rec['error']}" if rec["error"] else ""
        print(f"recording: {rec['folder']} ({rec['frames_written']} frames){tail}", file=stream)
    for shot in report["screenshots"]:
        print(f"screenshot: {shot}", file=stream)
