"""``ar-guide calibrate check``: is this calibration right for this camera?  Validate with a board.

For every frame (video, camera or images) that shows the board: under the given calibration, the
board's reprojection error and its metric error (corner spacing against the true spacing), see
:mod:`ar_guide.calibration.check`.  Live (camera, or a window on a file): the reprojected corners
and magnified residual vectors are drawn with the figures in a HUD.  At the end: a summary
(per frame, median, p95, pooled), a verdict line with what is wrong and what to do, and with
``--report`` the same as JSON.  Exit status 0 when the calibration looks good, 1 when not.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import sys
import time

import cv2
import numpy as np

from ar_guide import __version__
from ar_guide.apps.calibrate_live import put_text, text_scale
from ar_guide.calibration.boards import load_board
from ar_guide.calibration.check import ViewCheck, check_view, summarize
from ar_guide.calibration.detect import BoardDetector
from ar_guide.camera import load_camera
from ar_guide.constants import CalibrationCheckSettings, CaptureSettings
from ar_guide.errors import InputError
from ar_guide.io.display import Window, has_display
from ar_guide.io.live import LatestWorker
from ar_guide.io.report import summarize_ms, write_json
from ar_guide.io.sources import CameraSource, ImageFolderSource, VideoFileSource
from ar_guide.render import annotations

TITLE = "ar_guide calibration check"
QUIT_KEYS = {ord("q"), 27, ord("s"), 13, 10}
#: Residual vectors are drawn this many times longer than they are.
RESIDUAL_GAIN = 20.0
#: The live view marks a check older than this as stale (s), as the live calibration does.
STALE_AFTER_S = CaptureSettings().stale_after_s
#: A live check without a window ends after this long unless --max-seconds says otherwise (s).
DEFAULT_LIVE_SECONDS = 30.0


@dataclasses.dataclass(frozen=True, eq=False)
class FrameCheck:
    """One frame's outcome: the view's check (None without a board or pose) and why not."""

    index: int
    timestamp_s: float
    source: str
    check: ViewCheck | None
    failure: str
    detect_ms: float


@dataclasses.dataclass
class CheckRun:
    frames: list = dataclasses.field(default_factory=list)      # FrameCheck, in order
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    stopped_by_user: bool = False
    ended_by: str = "end of input"
    last_gray: np.ndarray | None = None
    wall_s: float = 0.0

    @property
    def checks(self) -> list[ViewCheck]:
        return [f.check for f in self.frames if f.check is not None]


def run(args) -> int:
    board = load_board(args.board)
    camera = load_camera(args.calibration)
    window = not args.no_window and has_display()
    if not args.no_window and not window:
        print("ar-guide: no display found; checking without a window", file=sys.stderr)
    live = args.camera is not None
    max_seconds = getattr(args, "max_seconds", None)
    if max_seconds is not None and not max_seconds > 0:
        raise InputError(f"--max-seconds must be positive, got {max_seconds:g}")
    if live:
        source, label = CameraSource(args.camera), str(args.camera)
    elif args.video is not None:
        source, label = VideoFileSource(args.video), str(args.video)
    else:
        source, label = ImageFolderSource(args.images), str(args.images)
    with source:
        camera = matching_camera(camera, source, label)
        names = [p.name for p in source.files] if isinstance(source, ImageFolderSource) else None
        checker = FrameChecker(board, camera, names)
        if live:
            result = run_live(source, checker, window, max_seconds or DEFAULT_LIVE_SECONDS)
        else:
            result = run_files(source, checker, window, max_seconds)
    if not result.checks:
        raise InputError(no_board_message(result, board, checker, (source.width, source.height)), path=label)
    summary = summarize(result.checks)
    report = build_report(args, board, camera, result, summary, label)
    print_summary(report, sys.stdout)
    if args.report is not None:
        write_json(args.report, report)
        print(f"report: {args.report}")
    return 0 if summary["verdict"]["good"] else 1


def matching_camera(camera, source, label: str):
    """The calibration, refused if it was made at another image size (assumed if unknown)."""
    if camera.image_size is None:
        print(f"ar-guide: note: {camera.source} does not say its image size; assuming it was made at "
              f"{source.width}x{source.height}", file=sys.stderr)
        return dataclasses.replace(camera, image_size=(source.width, source.height))
    camera.check_image_size(source.width, source.height, what=label)
    return camera


class FrameChecker:
    """Board detection and the check of one frame (runs on the worker in live mode)."""

    def __init__(self, board, camera, names: list[str] | None = None):
        self.board = board
        self.camera = camera
        self.detector = BoardDetector(board)
        self.names = names

    def __call__(self, frame) -> FrameCheck:
        t0 = time.perf_counter()
        gray = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2GRAY)
        name = self.names[frame.index] if self.names is not None else f"frame {frame.index}"
        view = self.detector.detect(gray, source=name)
        detect_ms = (time.perf_counter() - t0) * 1000.0
        if view is None:
            return FrameCheck(frame.index, frame.timestamp_s, name, None, self.detector.last_failure or "no board",
                              detect_ms)
        check = check_view(view, self.camera, source=name)
        if check is None:
            return FrameCheck(frame.index, frame.timestamp_s, name, None, "no board pose under this calibration",
                              detect_ms)
        return FrameCheck(frame.index, frame.timestamp_s, name, check, "", detect_ms)


def _record(result: CheckRun, frame_check: FrameCheck) -> None:
    result.frames.append(frame_check)
    if frame_check.check is None:
        result.failures[frame_check.failure] += 1


def run_files(source, checker: FrameChecker, window: bool, max_seconds: float | None = None) -> CheckRun:
    """Every frame of a video or image folder, in order."""
    result = CheckRun()
    win = Window(TITLE, size=(source.width, source.height)) if window else None
    start = time.monotonic()
    last = None
    try:
        for frame in source:
            last = frame
            frame_check = checker(frame)
            _record(result, frame_check)
            if win is not None:
                key = win.show(draw_check(frame.image_bgr, frame_check, result, checker.camera)) & 0xFF
                if key in QUIT_KEYS or not win.is_open():
                    result.stopped_by_user, result.ended_by = True, "stopped by the user"
                    break
            if max_seconds is not None and time.monotonic() - start >= max_seconds:
                result.ended_by = "time limit"
                break
    finally:
        if win is not None:
            win.close()
    result.wall_s = time.monotonic() - start
    if last is not None and not result.checks:
        result.last_gray = cv2.cvtColor(last.image_bgr, cv2.COLOR_BGR2GRAY)
    return result


def run_live(source, checker: FrameChecker, window: bool, max_seconds: float) -> CheckRun:
    """A camera: checks on a worker, newest frame first; the preview never waits for it."""
    result = CheckRun()
    win = Window(TITLE, size=(source.width, source.height)) if window else None
    start = time.monotonic()
    last_sequence = 0
    last = None
    latest = None
    try:
        with LatestWorker(checker, name="ar_guide-check") as worker:
            for frame in source:
                last = frame
                worker.submit(frame, frame.index, frame.timestamp_s)
                latest = worker.latest()
                if latest is not None and latest.sequence != last_sequence:
                    last_sequence = latest.sequence
                    _record(result, latest.value)
                if win is not None:
                    stale = latest is None or frame.timestamp_s - latest.timestamp_s > STALE_AFTER_S
                    shown = latest.value if latest is not None else None
                    key = win.show(draw_check(frame.image_bgr, shown, result, checker.camera, stale)) & 0xFF
                    if key in QUIT_KEYS or not win.is_open():
                        result.stopped_by_user, result.ended_by = True, "stopped by the user"
                        break
                elif time.monotonic() - start >= max_seconds:
                    result.ended_by = "time limit"
                    break
            else:
                latest = worker.wait(timeout_s=5.0)
                if latest is not None and latest.sequence != last_sequence:
                    _record(result, latest.value)
    finally:
        if win is not None:
            win.close()
    result.wall_s = time.monotonic() - start
    if last is not None and not result.checks:
        result.last_gray = cv2.cvtColor(last.image_bgr, cv2.COLOR_BGR2GRAY)
    return result


def no_board_message(result: CheckRun, board, checker: FrameChecker, image_size) -> str:
    w, h = image_size
    seen = "; ".join(f"{reason} ({n} frames)" for reason, n in result.failures.most_common(2)) or "no frames"
    text = f"no {board.describe()} was found in {len(result.frames)} frames ({w}x{h}): {seen}"
    if result.last_gray is not None:
        hint = checker.detector.diagnose(result.last_gray)
        if hint:
            return f"{text}; {hint}"
    return f"{text}; check --board (type, squares, dictionary), the lighting and the focus"


# -- the summary ---------------------------------------------------------------------------------


def build_report(args, board, camera, result: CheckRun, summary: dict, label: str) -> dict:
    return {
        "ar_guide_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "calibrate check",
        "input": {"source": label, "board": str(args.board), "calibration": str(args.calibration)},
        "board": board.describe(),
        "calibration": {"image_size": list(camera.image_size), "fx": camera.fx, "fy": camera.fy, "cx": camera.cx,
                        "cy": camera.cy, "distortion": camera.distortion.tolist()},
        "thresholds": dataclasses.asdict(CalibrationCheckSettings()),
        "frames": len(result.frames),
        "frames_with_board": len(result.checks),
        "frames_without_board": dict(result.failures),
        "ended_by": result.ended_by,
        "wall_time_s": result.wall_s,
        "detect_ms": summarize_ms([f.detect_ms for f in result.frames]),
        "summary": summary,
        "verdict": summary["verdict"],
        "per_frame": [f.check.figures() | {"index": f.index, "timestamp_s": f.timestamp_s}
                      for f in result.frames if f.check is not None],
    }


def print_summary(report: dict, stream) -> None:
    s = report["summary"]
    rep, spacing, span = s["reprojection"], s["spacing"], s["span"]
    per_view = rep["per_view_rms_px"]
    per_spacing = spacing["per_view_rms_percent"]
    print(f"board found in {report['frames_with_board']} of {report['frames']} frames", file=stream)
    print(f"reprojection: RMS {rep['rms_px']:.3f} px over {s['corners']} corners (per frame median "
          f"{per_view['median']:.3f}, p95 {per_view['p95']:.3f}, max {per_view['max']:.3f} px)", file=stream)
    print(f"spacing of neighbouring corners: RMS {spacing['rms_mm']:.3f} mm ({spacing['rms_percent']:.2f}%), max "
          f"{spacing['max_mm']:.3f} mm ({spacing['max_percent']:.2f}%); per frame median {per_spacing['median']:.2f}%, "
          f"p95 {per_spacing['p95']:.2f}%", file=stream)
    metric = s["metric"]
    per_metric = metric["per_view_rms_percent"]
    squares = "/".join(str(k) for k in metric["squares"])
    print(f"spacing of corners {squares} squares apart (median {metric['median_length_px']:.0f} px in the image): RMS "
          f"{metric['rms_mm']:.3f} mm ({metric['rms_percent']:.2f}%), max {metric['max_mm']:.3f} mm "
          f"({metric['max_percent']:.2f}%); per frame median {per_metric['median']:.2f}%, p95 {per_metric['p95']:.2f}%",
          file=stream)
    if span["pairs"]:
        print(f"longest distances across the board: RMS error {span['rms_mm']:.3f} mm, max {span['max_mm']:.3f} mm "
              f"({span['max_percent']:.2f}%)", file=stream)
    for line in report["verdict"]["lines"]:
        print(line, file=stream)


# -- the live view -------------------------------------------------------------------------------


def draw_check(image_bgr: np.ndarray, frame_check: FrameCheck | None, result: CheckRun, camera,
               stale: bool = False) -> np.ndarray:
    """The frame with the reprojected corners, residual vectors (x RESIDUAL_GAIN) and a HUD."""
    out = image_bgr.copy()
    h, w = out.shape[:2]
    settings = CalibrationCheckSettings()
    check = frame_check.check if frame_check is not None else None
    lines = []
    if check is not None:
        f = check.figures()
        ok = (f["reprojection_rms_px"] <= settings.good_reprojection_rms_px
              and f["metric_rms_percent"] <= settings.good_spacing_rms_percent)
        colour = (150, 150, 150) if stale else ((60, 200, 60) if ok else (40, 40, 230))
        radius = max(3, int(round(h / 120)))
        for (u, v), (pu, pv) in zip(check.image_points_px, check.projected_px):
            tip = (pu + RESIDUAL_GAIN * (u - pu), pv + RESIDUAL_GAIN * (v - pv))
            cv2.line(out, _fixed(pu, pv), _fixed(*tip), (0, 210, 255), 2, cv2.LINE_AA, shift=4)
            cv2.circle(out, _fixed(pu, pv), radius * 16, colour, 2, cv2.LINE_AA, shift=4)
        text = (255, 255, 255) if ok else (80, 80, 255)
        lines.append((f"reprojection RMS {f['reprojection_rms_px']:.2f} px (max {f['reprojection_max_px']:.2f})",
                      text))
        lines.append((f"spacing RMS {f['metric_rms_mm']:.2f} mm ({f['metric_rms_percent']:.2f}%) over "
                      f"{f['baseline_squares']} squares; neighbours {f['spacing_rms_percent']:.2f}%   at "
                      f"{f['distance_mm']:.0f} mm", text))
    else:
        reason = frame_check.failure if frame_check is not None else "waiting for the first detection"
        lines.append((f"no board: {reason}", (0, 210, 255)))
    checks = result.checks
    if checks:
        reps = [c.reprojection_rms_px for c in checks]
        spac = [c.metric_rms_percent for c in checks]
        lines.append((f"{len(checks)} frames so far: reprojection median {np.median(reps):.2f} px, spacing median "
                      f"{np.median(spac):.2f}%", (255, 255, 255)))
    if stale:
        lines.append(("STALE: no check for this frame yet", (0, 210, 255)))
    annotations.draw_hud(out, lines)
    put_text(out, f"circles: corners projected under the calibration; lines: residuals x{RESIDUAL_GAIN:g}   "
                  f"q/Esc/s: finish and summarise", (10, h - 10), text_scale(h) * 0.8)
    return out


def _fixed(u: float, v: float) -> tuple[int, int]:
    return (int(round(u * 16)), int(round(v * 16)))
