"""The loop shared by ``play`` and ``demo``: frames in, overlay out, poses and a report written.

Keys in the window: q or Esc quits, space pauses, and with ``PlaybackOptions.digitiser`` d
records the pointer's tip (reference frame) into a point file (:class:`Digitiser`), also while
paused, so that a user can stop on a good frame and take it.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ar_guide import __version__
from ar_guide.errors import InputError
from ar_guide.evaluation import GroundTruthComparison, RunStatistics
from ar_guide.io.display import Window, has_display
from ar_guide.io.poselog import PoseLogWriter
from ar_guide.io.report import write_json
from ar_guide.io.writers import VideoWriter
from ar_guide.pipeline import OverlayPipeline

QUIT_KEYS = {ord("q"), 27}
PAUSE_KEY = ord(" ")
DIGITISE_KEY = ord("d")
#: How long the confirmation of a digitised point stays on screen (s).
FLASH_S = 2.0
_FLASH_OK_BGR = (80, 220, 80)
_FLASH_REFUSED_BGR = (0, 191, 255)


@dataclasses.dataclass
class PlaybackOptions:
    video_out: Path | None = None
    poses_out: Path | None = None
    report_out: Path | None = None
    window: bool = True
    realtime: bool = False
    progress: bool = True
    title: str = "ar_guide"
    digitiser: "Digitiser | None" = None


class Digitiser:
    """Records the pointer's tip, in the reference frame, into a point file, one key press a point.

    path : the CSV point file (``name,x,y,z``, mm, reference frame; docs/registration.md).  An
        existing file is appended to (its header must be that of a point file); a new one is
        created with the header.
    tool : the pointer's name in the scene
    names : the names to give the points, in order; None: F1, F2 ... (skipping names already in
        the file).  A point is refused once all names are used.

    A point is recorded only when the reference and the pointer are both OK in the frame shown
    (current poses; never a stale one), and each row is flushed at once.
    """

    def __init__(self, path: str | os.PathLike, tool: str, names: list[str] | None = None):
        from ar_guide.registration.points import read_points

        self.path = Path(path)
        self.tool = tool
        self.names = None if names is None else [str(n) for n in names]
        existing: tuple[str, ...] = ()
        text = ""
        if self.path.exists():
            from ar_guide.io.textfiles import read_text

            text = read_text(self.path, "point file")
            rows = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
            if len(rows) > 1:
                existing = read_points(self.path).names
            elif rows and rows[0].lstrip("\ufeff").replace(" ", "").lower() != "name,x,y,z":
                raise InputError(f"not a point file to append to: expected the header name,x,y,z, got "
                                 f"{rows[0][:40]!r}", path=self.path)
        self.taken: list[str] = list(existing)
        self.recorded: list[tuple[str, np.ndarray]] = []
        self._file = None
        try:
            self._file = open(self.path, "a", encoding="utf-8", newline="")
            if not text.strip():
                self._file.write("name,x,y,z\n")
            elif not text.endswith("\n"):
                self._file.write("\n")   # the last row had no line end: do not run on into it
            self._file.flush()
        except OSError as exc:
            raise InputError(f"cannot write the digitised points: {exc.strerror or exc}", path=self.path) from None

    def next_name(self) -> str | None:
        """The name the next point gets, or None when the names given are all used."""
        if self.names is not None:
            return next((n for n in self.names if n not in self.taken), None)
        k = 1
        while f"F{k}" in self.taken:
            k += 1
        return f"F{k}"

    def record(self, pipeline, result) -> tuple[bool, str]:
        """Take the tip of ``result``'s frame: (recorded?, one line saying what happened)."""
        name = self.next_name()
        if name is None:
            return False, f"not digitised: all {len(self.names)} names are used ({', '.join(self.names)})"
        reference = result.states[pipeline.reference.name]
        pointer = result.states[self.tool]
        tip = pipeline.tip_reference(result.states, self.tool)
        if tip is None:
            why = [f"{state.body} {state.status.value}" for state in (reference, pointer)
                   if state.status.value != "OK"]
            return False, f"not digitised ({name}): {' and '.join(why)} in this frame: both must be tracked (OK)"
        if not np.all(np.isfinite(tip)):
            return False, f"not digitised ({name}): the tip is not finite"
        self._file.write(f"{name},{tip[0]:.4f},{tip[1]:.4f},{tip[2]:.4f}\n")
        self._file.flush()
        self.taken.append(name)
        self.recorded.append((name, tip))
        return True, (f"digitised {name}: [{tip[0]:.2f}, {tip[1]:.2f}, {tip[2]:.2f}] mm (reference) "
                      f"-> {self.path.name}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def draw_flash(image_bgr: np.ndarray, text: str, colour_bgr) -> np.ndarray:
    """A copy of the frame with ``text`` on a band at the bottom (the digitiser's confirmation)."""
    from ar_guide.render import annotations

    out = image_bgr.copy()
    h, w = out.shape[:2]
    scale = max(0.45, h / 1000.0)
    thickness = max(1, int(round(scale * 1.6)))
    (tw, th), base = cv2.getTextSize(text, annotations.FONT, scale, thickness)
    if tw > w - 16:
        scale *= (w - 16) / tw
        (tw, th), base = cv2.getTextSize(text, annotations.FONT, scale, thickness)
    band = th + base + 12
    roi = out[h - band:h]
    cv2.convertScaleAbs(roi, dst=roi, alpha=0.35)
    cv2.rectangle(out, (0, h - band), (w - 1, h - 1), colour_bgr, 2)
    annotations.put_text(out, text, (8, h - base - 6), colour_bgr, scale, thickness)
    return out


def machine_description() -> dict:
    import os

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def renderer_description(renderer) -> dict | None:
    """Which OpenGL the anatomy was drawn with (None: no anatomy in the scene)."""
    if renderer is None:
        return None
    from ar_guide.render.gl import backend_of

    with renderer.ctx:
        info = renderer.ctx.info
    return {"backend": backend_of(renderer.ctx), "gl_renderer": info.get("GL_RENDERER"),
            "gl_version": info.get("GL_VERSION"), "triangles": int(sum(len(l.faces) for l in renderer.layers))}


def run_playback(source, pipeline: OverlayPipeline, options: PlaybackOptions, *, ground_truth=None,
                 gt_comparison: GroundTruthComparison | None = None, report_header: dict | None = None) -> dict:
    """Plays ``source`` through ``pipeline``; returns the report (also written if asked)."""
    from tqdm import tqdm

    window = None
    if options.window:
        if has_display():
            window = Window(options.title, size=(source.width, source.height))
        else:
            print("ar-guide: no display found; running without a window", file=sys.stderr)
    writer = VideoWriter(options.video_out, source.fps, (source.width, source.height)) if options.video_out else None
    pose_log = PoseLogWriter(options.poses_out) if options.poses_out else None
    stats = RunStatistics(pipeline.reference.name)
    bar = None
    if options.progress and window is None:
        bar = tqdm(total=source.frame_count, unit="frame", desc="overlay", file=sys.stderr,
                   dynamic_ncols=True, leave=False)
    start_wall = time.perf_counter()
    first_ts = None
    stopped_by_user = False
    digitiser = options.digitiser
    flash = None   # (text, colour, until monotonic s)

    def on_key(key: int, result) -> None:
        nonlocal flash
        if digitiser is not None and key & 0xFF == DIGITISE_KEY:
            ok, message = digitiser.record(pipeline, result)
            print(f"ar-guide: {message}", file=sys.stderr)
            flash = (message, _FLASH_OK_BGR if ok else _FLASH_REFUSED_BGR, time.monotonic() + FLASH_S)

    def shown(result):
        if flash is not None and time.monotonic() < flash[2]:
            return draw_flash(result.image_bgr, flash[0], flash[1])
        return result.image_bgr

    try:
        for frame in source:
            if options.realtime:
                if first_ts is None:
                    first_ts = frame.timestamp_s
                delay = (frame.timestamp_s - first_ts) - (time.perf_counter() - start_wall)
                if delay > 0:
                    time.sleep(delay)
            result = pipeline.process(frame.index, frame.timestamp_s, frame.image_bgr)
            stats.add(result)
            if gt_comparison is not None and ground_truth is not None and frame.index < len(ground_truth.timestamps_s):
                gt_comparison.add(result, ground_truth.camera_from_reference[frame.index],
                                  int(ground_truth.visible_markers[frame.index]))
            if pose_log is not None:
                for name, state in result.states.items():
                    pose_log.write(frame.index, frame.timestamp_s, name, state.status.value, state.camera_from_body
                                   if state.status.value == "OK" else None, state.reprojection_rms_px,
                                   state.markers_used, state.reason)
            if writer is not None:
                writer.write(result.image_bgr)
            if bar is not None:
                bar.update(1)
            if window is not None:
                key = window.show(shown(result))
                if key & 0xFF in QUIT_KEYS or not window.is_open():
                    stopped_by_user = True
                    break
                on_key(key, result)
                if key & 0xFF == PAUSE_KEY:
                    while True:
                        key = window.show(shown(result), wait_ms=50)
                        if key & 0xFF in QUIT_KEYS | {PAUSE_KEY} or not window.is_open():
                            break
                        on_key(key, result)
                    if key & 0xFF in QUIT_KEYS or not window.is_open():
                        stopped_by_user = True
                        break
    finally:
        if bar is not None:
            bar.close()
        if writer is not None:
            writer.close()
        if pose_log is not None:
            pose_log.close()
        if window is not None:
            window.close()
        if digitiser is not None:
            digitiser.close()
    wall_s = time.perf_counter() - start_wall

    report = {
        "ar_guide_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **(report_header or {}),
        **stats.summary(),
        "frames_skipped_corrupt": int(getattr(source, "skipped_frames", 0)),
        "stopped_by_user": stopped_by_user,
        "wall_time_s": wall_s,
        "machine": machine_description(),
        "renderer": renderer_description(pipeline.renderer),
        "outputs": {k: str(v) for k, v in (("video", options.video_out), ("poses", options.poses_out),
                                           ("report", options.report_out)) if v is not None},
    }
    if gt_comparison is not None:
        report["ground_truth"] = gt_comparison.summary()
    if digitiser is not None:
        report["digitised"] = {"file": str(digitiser.path), "tool": digitiser.tool, "frame": "reference",
                               "points": {name: [round(float(v), 4) for v in tip] for name, tip in digitiser.recorded}}
    if options.report_out:
        write_json(options.report_out, report)
    return report


def print_summary(report: dict, stream=None) -> None:
    """A few lines a person reads after a run."""
    stream = stream or sys.stdout
    t = report["timings_ms"]
    frames = report["frames"]
    print(f"frames: {frames}  tracked (OK): {report['tracked_fraction'] * 100:.1f}%  "
          f"stale: {report['status_frames']['STALE']}  lost: {report['status_frames']['LOST']}  "
          f"corrupt skipped: {report['frames_skipped_corrupt']}", file=stream)
    if t.get("total"):
        parts = "  ".join(f"{s} {t[s]['median']:.1f}" for s in ("detect", "pose", "render", "compose") if t.get(s))
        print(f"time per frame (median ms): total {t['total']['median']:.1f} (p95 {t['total']['p95']:.1f})  {parts}",
              file=stream)
    gt = report.get("ground_truth")
    if gt:
        ov = gt["overlay_error_px"]
        rot = gt["rotation_error_deg"]
        tr = gt["translation_error_mm"]
        te = gt["target_error_mm"]
        if ov:
            print(f"overlay error at targets: median {ov['median']:.2f} px, p95 {ov['p95']:.2f} px  "
                  f"(target error median {te['median']:.2f} mm)", file=stream)
        if rot:
            print(f"pose error: rotation median {rot['median']:.3f} deg, translation median {tr['median']:.2f} mm",
                  file=stream)
        print(f"false overlay frames (drawn as current while the reference was not visible): "
              f"{gt['false_overlay_frames']}", file=stream)
    digitised = report.get("digitised")
    if digitised is not None:
        names = ", ".join(digitised["points"]) or "none"
        print(f"digitised: {len(digitised['points'])} point(s) ({names}) -> {digitised['file']}", file=stream)
    outs = report.get("outputs", {})
    for key in ("video", "poses", "report"):
        if key in outs:
            print(f"{key}: {outs[key]}", file=stream)
