"""``ar-guide calibrate run --camera N_OR_URL``: the live calibration session.

The camera's newest frame goes to a detection worker (:class:`ar_guide.io.live.LatestWorker`);
the preview shows every frame with the last detection drawn on it (marked stale when old), so
the window never waits for detection.  Each new detection goes through the capture policy
(:class:`ar_guide.calibration.capture.CaptureSession`): a steady board that adds coverage is
taken automatically; the user can also take, undo, finish or quit with keys.  The session ends
on a key, when coverage is sufficient, when the stream ends, or (without a window) after
``--max-seconds``; the views are then solved and written exactly as ``calibrate run`` writes them.

Without a window (``--no-window``, or no display) the same session runs headless with progress
lines on stderr.
"""

from __future__ import annotations

import collections
import dataclasses
import sys
import time

import cv2
import numpy as np

from ar_guide.calibration.boards import load_board
from ar_guide.calibration.capture import CaptureSession, Observation, TILT_DIRECTIONS, tilt_magnitude_deg
from ar_guide.calibration.detect import BoardDetector
from ar_guide.constants import CalibrationSettings, CaptureSettings, RenderSettings
from ar_guide.errors import InputError
from ar_guide.io.display import Window, has_display
from ar_guide.io.live import LatestWorker
from ar_guide.io.sources import CameraSource
from ar_guide.render import annotations
from ar_guide.render.annotations import FONT

TITLE = "ar_guide calibration"
KEYS_LINE = "space/c: take view   u: undo   s/Enter: finish and solve   q/Esc: quit without saving"
#: Keys (cv2.waitKeyEx codes, low byte).
CAPTURE_KEYS = {ord(" "), ord("c")}
UNDO_KEYS = {ord("u")}
FINISH_KEYS = {ord("s"), 13, 10}
QUIT_KEYS = {ord("q"), 27}
#: Seconds a capture flashes on screen, and between headless progress lines when nothing happens.
FLASH_S = 0.15
PROGRESS_EVERY_S = 5.0
#: Frames of the views taken are kept for the report at most this wide (px), to bound memory.
_REPORT_WIDTH_PX = 1280


@dataclasses.dataclass(frozen=True, eq=False)
class Detection:
    """What the worker made of one frame: the view (or None) and why not, and the frame."""

    view: object
    failure: str
    image_bgr: np.ndarray | None = None


@dataclasses.dataclass
class SessionOutcome:
    """How the live session ended and what it collected."""

    views: list
    ended_by: str                  # "sufficient", "finish key", "quit", "stream ended", "time limit", "window closed"
    frames: int = 0
    detections: int = 0
    frames_with_board: int = 0
    failures: collections.Counter = dataclasses.field(default_factory=collections.Counter)
    last_gray: np.ndarray | None = None
    detection_ms: list = dataclasses.field(default_factory=list)
    preview_fps: float = float("nan")
    wall_s: float = 0.0
    coverage: dict = dataclasses.field(default_factory=dict)
    images: dict = dataclasses.field(default_factory=dict)   # view source -> BGR image (for the report)
    min_corners: int = 0           # corners a view needed
    steady_s: float = 0.0          # how long the board had to be still


def run(args) -> int:
    from ar_guide.apps import calibrate_run

    board = load_board(args.board)
    settings = CaptureSettings(max_views=int(args.max_views))
    max_seconds = getattr(args, "max_seconds", None)
    if max_seconds is not None:
        if not max_seconds > 0:
            raise InputError(f"expected a positive number of seconds, got {max_seconds:g}", key="--max-seconds")
        settings = dataclasses.replace(settings, max_seconds=float(max_seconds))
    if args.max_views < CalibrationSettings().min_views:
        raise InputError(f"expected at least {CalibrationSettings().min_views}, got {args.max_views}",
                         key="--max-views")
    # Before the session, not after minutes of capturing: can the results be written?
    calibrate_run.check_writable(args.output)
    if args.report is not None:
        calibrate_run.check_report_dir(args.report)
    window = not args.no_window and has_display()
    if not args.no_window and not window:
        print("ar-guide: no display found; running the session without a window", file=sys.stderr)
    source = CameraSource(args.camera)
    with source:
        outcome = run_session(source, board, settings, window=window)
    print_session_summary(outcome, sys.stderr)
    if outcome.ended_by == "quit":
        print(f"quit: nothing written ({len(outcome.views)} view(s) discarded)", file=sys.stderr)
        return 1
    if not outcome.views:
        raise InputError(no_views_message(outcome, board, (source.width, source.height)), path=str(args.camera))
    solve_and_write(args, board, outcome, (source.width, source.height))
    return 0


# -- the session ---------------------------------------------------------------------------------


def run_session(source, board, settings: CaptureSettings = CaptureSettings(), window: bool = False,
                stream=None) -> SessionOutcome:
    """Runs the live session on ``source`` (frames, newest first) until it ends; returns what it took."""
    stream = stream if stream is not None else sys.stderr
    image_size = (source.width, source.height)
    detector = BoardDetector(board)

    def detect(frame) -> Detection:
        gray = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2GRAY)
        view = detector.detect(gray, source=f"frame {frame.index}")
        # The source hands out a new array per frame, so keeping a reference is safe.
        return Detection(view, detector.last_failure if view is None else "", frame.image_bgr)

    session = CaptureSession(image_size, len(board.corners_mm), settings)
    outcome = SessionOutcome([], "stream ended")
    win = Window(TITLE, size=image_size) if window else None
    preview = _PreviewState()
    images = {}          # frames of the views taken, for the report
    last_sequence = 0
    observation = Observation("no board", False, None, "show the board to the camera")
    start = time.monotonic()
    last_progress = start
    last_frame = None
    try:
        with LatestWorker(detect, name="ar_guide-calibration-detect") as worker:
            for frame in source:
                outcome.frames += 1
                last_frame = frame
                worker.submit(frame, frame.index, frame.timestamp_s)
                result = worker.latest()
                if result is not None and result.sequence != last_sequence:
                    last_sequence = result.sequence
                    observation = _observe(session, result, outcome)
                    if observation.captured:
                        _keep_image(images, result.value)
                        preview.flash_until = time.monotonic() + FLASH_S
                        _progress(stream, start, f"view {len(session.views)} taken "
                                  f"({observation.decision.reason})", session)
                        last_progress = time.monotonic()
                if win is not None:
                    preview.tick()
                    image = draw_preview(frame, result, observation, session, preview, settings)
                    key = win.show(image) & 0xFF
                    if not win.is_open():
                        outcome.ended_by = "window closed"
                        break
                    ended, captured = _handle_key(key, session, outcome, preview, stream, start)
                    if captured and result is not None:
                        _keep_image(images, result.value)
                    if ended:
                        break
                elif time.monotonic() - last_progress >= PROGRESS_EVERY_S:
                    _progress(stream, start, observation.hint, session)
                    last_progress = time.monotonic()
                if session.is_sufficient():
                    outcome.ended_by = "sufficient"
                    break
                if win is None and time.monotonic() - start >= settings.max_seconds:
                    outcome.ended_by = "time limit"
                    break
            else:
                # The stream ended: the frame being detected still counts.
                result = worker.wait(timeout_s=5.0)
                if result is not None and result.sequence != last_sequence:
                    observation = _observe(session, result, outcome)
                    if observation.captured:
                        _keep_image(images, result.value)
                        _progress(stream, start, f"view {len(session.views)} taken "
                                  f"({observation.decision.reason})", session)
    finally:
        if win is not None:
            win.close()
    outcome.views = list(session.views)
    kept = {v.source for v in outcome.views}
    outcome.images = {k: v for k, v in images.items() if k in kept}
    outcome.wall_s = time.monotonic() - start
    outcome.preview_fps = preview.fps() if win is not None else float("nan")
    outcome.coverage = session.policy.summary()
    outcome.min_corners, outcome.steady_s = session.policy.min_corners, settings.steady_s
    if last_frame is not None and outcome.frames_with_board == 0:
        outcome.last_gray = cv2.cvtColor(last_frame.image_bgr, cv2.COLOR_BGR2GRAY)
    return outcome


def _observe(session: CaptureSession, result, outcome: SessionOutcome) -> Observation:
    detection: Detection = result.value
    outcome.detections += 1
    outcome.detection_ms.append(result.duration_s * 1000.0)
    if detection.view is None:
        outcome.failures[detection.failure or "no board"] += 1
    else:
        outcome.frames_with_board += 1
    return session.observe(detection.view, result.timestamp_s)


def _keep_image(images: dict, detection: Detection) -> None:
    """The frame of a view taken, for the report (at most _REPORT_WIDTH_PX wide)."""
    image = detection.image_bgr
    if detection.view is None or image is None:
        return
    h, w = image.shape[:2]
    if w > _REPORT_WIDTH_PX:
        image = cv2.resize(image, (_REPORT_WIDTH_PX, int(round(h * _REPORT_WIDTH_PX / w))),
                           interpolation=cv2.INTER_AREA)
    images[detection.view.source] = image


def _handle_key(key: int, session: CaptureSession, outcome: SessionOutcome, preview, stream,
                start) -> tuple[bool, bool]:
    """Acts on a key; returns (the session ends, a view was taken)."""
    if key in QUIT_KEYS:
        outcome.ended_by = "quit"
        return True, False
    if key in FINISH_KEYS:
        outcome.ended_by = "finish key"
        return True, False
    if key in CAPTURE_KEYS:
        decision = session.capture_now()
        if decision.take:
            preview.flash_until = time.monotonic() + FLASH_S
            _progress(stream, start, f"view {len(session.views)} taken (key; {decision.reason})", session)
            return False, True
        else:
            preview.message = (f"not taken: {decision.reason}", time.monotonic() + 2.0)
            _progress(stream, start, f"key: not taken ({decision.reason})", session)
    elif key in UNDO_KEYS:
        if session.undo():
            _progress(stream, start, f"last view removed ({len(session.views)} left)", session)
            preview.message = ("last view removed", time.monotonic() + 2.0)
        else:
            preview.message = ("nothing to undo", time.monotonic() + 2.0)
    return False, False


def _progress(stream, start: float, text: str, session: CaptureSession) -> None:
    s = session.policy.summary()
    tilts = ",".join(s["tilt_directions"]) or "none"
    print(f"[{time.monotonic() - start:6.1f} s] {text} | views {s['views']}/{session.settings.min_views}, "
          f"cells {s['cell_fraction']:.0%}, tilts {tilts}", file=stream, flush=True)


def print_session_summary(outcome: SessionOutcome, stream) -> None:
    reasons = {"sufficient": "coverage is sufficient", "finish key": "finished on a key", "quit": "quit on a key",
               "stream ended": "the camera stream ended", "time limit": "time limit reached (--max-seconds)",
               "window closed": "the window was closed"}
    det = np.asarray(outcome.detection_ms, dtype=np.float64)
    timing = f", detection median {np.median(det):.1f} ms" if det.size else ""
    fps = f", preview {outcome.preview_fps:.1f} fps" if np.isfinite(outcome.preview_fps) else ""
    print(f"session: {reasons.get(outcome.ended_by, outcome.ended_by)} after {outcome.wall_s:.1f} s: "
          f"{len(outcome.views)} views taken, board seen in {outcome.frames_with_board} of {outcome.detections} "
          f"frames detected ({outcome.frames} shown){timing}{fps}", file=stream)
    cov = outcome.coverage
    if cov and outcome.ended_by != "quit" and not cov.get("sufficient") and outcome.views:
        print(f"warning: coverage is not sufficient ({cov['cell_fraction']:.0%} of the image cells, tilts: "
              f"{', '.join(cov['tilt_directions']) or 'none'}); missing: {'; '.join(cov['missing'])}", file=stream)


def no_views_message(outcome: SessionOutcome, board, image_size) -> str:
    """Why nothing was taken, what was seen, and what to change."""
    w, h = image_size
    if outcome.frames_with_board == 0:
        seen = "; ".join(f"{reason} ({n} frames)" for reason, n in outcome.failures.most_common(2)) or "nothing"
        text = (f"no {board.describe()} was seen in {outcome.detections} frames ({w}x{h}) in {outcome.wall_s:.0f} s: "
                f"{seen}")
        if outcome.last_gray is not None:
            hint = BoardDetector(board).diagnose(outcome.last_gray)
            if hint:
                return f"{text}; {hint}"
        return f"{text}; check --board (type, squares, dictionary), the lighting and the focus"
    return (f"the board was seen in {outcome.frames_with_board} frames but no view was taken: hold the board still "
            f"for {outcome.steady_s:g} s with at least {outcome.min_corners} corners in view, or press space to take "
            f"a view")


# -- solving -------------------------------------------------------------------------------------


def solve_and_write(args, board, outcome: SessionOutcome, image_size) -> None:
    """Solves the views taken and writes the calibration (and report) with ``calibrate run``'s
    :func:`~ar_guide.apps.calibrate_run.finish`: the same file, checks and report."""
    from ar_guide.apps import calibrate_run
    from ar_guide.calibration.solve import CameraModelOptions

    options = CameraModelOptions(bool(args.fix_aspect), bool(args.zero_tangent), bool(args.rational),
                                 bool(args.fix_k3))
    failures = [(f"{n} frame{'s' if n > 1 else ''}", reason) for reason, n in outcome.failures.most_common()]
    calibrate_run.finish(outcome.views, image_size, board, options, args.output, args.report,
                         views_offered=outcome.views, failures=failures, images=outcome.images,
                         source=f"camera: {args.camera}", timings_s={"session": outcome.wall_s},
                         considered=outcome.detections)


# -- the preview ---------------------------------------------------------------------------------


class _PreviewState:
    """Frame rate, detection times, flash and transient messages of the preview."""

    def __init__(self):
        self.flash_until = 0.0
        self.message: tuple[str, float] | None = None
        self._times = collections.deque(maxlen=31)

    def tick(self) -> None:
        self._times.append(time.monotonic())

    def fps(self) -> float:
        if len(self._times) < 2:
            return float("nan")
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


#: BGR colours of the corner markers by the view's state.
STATE_COLOURS = {"captured": (255, 255, 255), "steady": (60, 200, 60), "moving": (0, 210, 255),
                 "too few corners": (40, 40, 230), "stale": (150, 150, 150)}


def text_scale(height: int) -> float:
    """Font scale of the preview's text for an image ``height`` px tall (the overlay HUD's size:
    RenderSettings.text_height_fraction, at least text_min_height_px)."""
    settings = RenderSettings()
    height_px = max(settings.text_min_height_px, settings.text_height_fraction * height)
    return height_px / cv2.getTextSize("X", FONT, 1.0, 1)[0][1] * 0.75


def put_text(image, text: str, org, scale: float, colour=(255, 255, 255)) -> None:
    """Outlined text (legible on any background), baseline-left at ``org``."""
    annotations.put_text(image, text, org, colour, scale, max(1, int(round(scale * 1.6))))


def draw_preview(frame, result, observation: Observation, session: CaptureSession,
                 preview: _PreviewState, settings: CaptureSettings) -> np.ndarray:
    """The preview of ``frame``: the last detection's corners (grey when it is from a frame more
    than ``stale_after_s`` older), coverage and tilt insets, counts, hint, keys, timings."""
    out = frame.image_bgr.copy()
    h, w = out.shape[:2]
    now = time.monotonic()
    stale = result is None or frame.timestamp_s - result.timestamp_s > settings.stale_after_s
    view = result.value.view if result is not None else None
    if view is not None:
        colour = STATE_COLOURS["stale"] if stale else STATE_COLOURS.get(observation.state, (60, 200, 60))
        radius = max(3, int(round(h / 100)))
        for u, v in np.asarray(view.image_points_px, dtype=np.float64):
            cv2.circle(out, (int(round(u * 16)), int(round(v * 16))), radius * 16, colour, max(2, radius // 3),
                       cv2.LINE_AA, shift=4)
    if now < preview.flash_until:
        cv2.rectangle(out, (0, 0), (w - 1, h - 1), (255, 255, 255), max(4, h // 60))
    # Insets at the bottom right, above the two text lines: the HUD takes the top.
    scale = text_scale(h) * 0.8
    line = int(round(cv2.getTextSize("X", FONT, scale, 1)[0][1] * 1.8))
    inset = max(80, w // 5)
    inset_h = int(round(inset * h / w))
    disc = int(inset * 0.75)
    bottom = h - 10 - 2 * line - 4
    draw_coverage_inset(out, session, (w - inset - 10, bottom - inset_h), inset)
    draw_tilt_inset(out, session, observation, (w - inset - disc - 20, bottom - disc), disc)
    cov = session.policy
    hint = observation.hint
    if preview.message is not None and now < preview.message[1]:
        hint = preview.message[0]
    lines = [(f"views {len(cov.views)}/{settings.min_views}   image cells {cov.cell_fraction:.0%} (need "
              f"{settings.min_cell_fraction:.0%})   tilt directions {len(cov.tilt_directions())}/"
              f"{settings.min_tilt_directions}", (255, 255, 255)),
             (hint, (255, 255, 255))]
    if stale and result is not None:
        lines.append(("STALE: no detection for this frame yet", (0, 210, 255)))
    annotations.draw_hud(out, lines)
    fps = preview.fps()
    det = f"{result.duration_s * 1000:.0f} ms" if result is not None else "-"
    put_text(out, f"preview {fps:.0f} fps   detection {det}" if np.isfinite(fps) else f"detection {det}",
             (10, h - 10 - line), scale)
    put_text(out, KEYS_LINE, (10, h - 10), scale)
    return out


def draw_coverage_inset(image: np.ndarray, session: CaptureSession, origin, width: int) -> None:
    """The image grid, each cell shaded by how many views touched it."""
    h, w = image.shape[:2]
    counts = session.policy.cell_counts
    rows, cols = counts.shape
    height = int(round(width * h / w))
    x0, y0 = origin
    roi = image[y0:y0 + height, x0:x0 + width]
    roi[:] = (roi * 0.35).astype(np.uint8)
    for r in range(rows):
        for c in range(cols):
            a = (x0 + c * width // cols, y0 + r * height // rows)
            b = (x0 + (c + 1) * width // cols - 1, y0 + (r + 1) * height // rows - 1)
            n = counts[r, c]
            if n:
                level = min(1.0, 0.4 + 0.2 * n)
                cv2.rectangle(image, a, b, (int(60 * level), int(200 * level), int(60 * level)), -1)
            cv2.rectangle(image, a, b, (110, 110, 110), 1)


def draw_tilt_inset(image: np.ndarray, session: CaptureSession, observation: Observation, origin,
                    size: int) -> None:
    """A disc of tilts: rings at the strong tilt and 40 deg, a dot per view towards the edge that
    is farther away; the current view as a ring."""
    settings = session.settings
    x0, y0 = origin
    centre = (x0 + size // 2, y0 + size // 2)
    radius = size // 2
    full_deg = 50.0
    cv2.circle(image, centre, radius, (40, 40, 40), -1, cv2.LINE_AA)
    for ring in (settings.strong_tilt_deg, 40.0):
        cv2.circle(image, centre, int(radius * ring / full_deg), (110, 110, 110), 1, cv2.LINE_AA)
    found = session.policy.tilt_directions()
    for direction, (dx, dy) in zip(TILT_DIRECTIONS, ((0, -1), (1, 0), (0, 1), (-1, 0))):
        colour = (60, 200, 60) if direction in found else (80, 80, 200)
        end = (centre[0] + int(dx * radius), centre[1] + int(dy * radius))
        cv2.circle(image, end, max(2, size // 30), colour, -1, cv2.LINE_AA)

    def point(tilt):
        tx, ty = tilt
        r = min(tilt_magnitude_deg(tilt), full_deg) / full_deg * radius
        angle = np.arctan2(-tx, -ty)  # dot towards the farther edge: right = +x, top = -y on screen
        return (int(round(centre[0] + r * np.cos(angle))), int(round(centre[1] - r * np.sin(angle))))

    for features in session.policy.views:
        if features.tilt_deg is not None:
            cv2.circle(image, point(features.tilt_deg), max(2, size // 40), (60, 200, 60), -1, cv2.LINE_AA)
    current = session.last_features
    if current is not None and current.tilt_deg is not None and observation.state != "no board":
        cv2.circle(image, point(current.tilt_deg), max(3, size // 20), (0, 210, 255), 1, cv2.LINE_AA)
