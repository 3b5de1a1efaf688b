"""``ar-guide calibrate run --images DIR_OR_GLOB | --video FILE``: views -> camera model -> files.

Thin: the detection (ar_guide.calibration.detect), the view selection (coverage), the solver
(solve), the warnings (quality) and the report (report) do the work.  :func:`finish` solves,
checks and writes the calibration and the report; the live session (``calibrate_live``) calls
it too, so both write the same file.

What is written when the result is weak: the calibration file is written whenever a model
could be solved and fits the corners (RMS under ``CalibrationSettings.refuse_rms_px``), with
every warning printed on stderr, stored in the file (``warnings``, ``verdict``) and shown on
top of the report, so a weak calibration is never silent.  Above that RMS no camera model
explains the corners (wrong board file, bent board, wrong detections): nothing is written but
the report, and the command fails.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ar_guide import __version__
from ar_guide.calibration.boards import CalibrationBoard, load_board
from ar_guide.calibration.coverage import select_views, view_features
from ar_guide.calibration.detect import BoardDetector, edge_blur_px, id_ranges
from ar_guide.calibration.quality import Finding, findings, verdict
from ar_guide.calibration.report import write_report
from ar_guide.calibration.solve import CalibrationResult, CameraModelOptions, calibrate
from ar_guide.camera import save_camera
from ar_guide.constants import CalibrationSettings
from ar_guide.errors import InputError

#: Views are kept for the report at most this wide (px), to bound memory on long videos.
_KEEP_WIDTH_PX = 1280
#: Failed images diagnosed (slow: other board parameters are tried) when too few views are found.
_DIAGNOSE_IMAGES = 3


@dataclasses.dataclass
class Collected:
    """The views found in a source, and what happened to the rest.

    views : BoardView list (after selection)
    image_size : (w, h)
    considered : images or frames looked at
    failures : (source, reason) of those not used: no usable view, blurred, or not needed
    images : view source -> BGR image (downscaled) for the report
    notes : lines for the user (unreadable images, blurred frames, selection)
    candidates : views found before selection (count)
    source : "images: SPEC" or "video: FILE"
    failed_images : a few failed images (name -> grey), those where markers were seen first,
        for the diagnosis
    """

    views: list
    image_size: tuple[int, int]
    considered: int
    failures: list
    images: dict
    notes: list
    candidates: int
    source: str
    failed_images: dict = dataclasses.field(default_factory=dict)


class _FailedSamples:
    """Keeps up to _DIAGNOSE_IMAGES failed images, preferring those where markers were seen
    (a board-parameter mistake shows there), then the earliest."""

    def __init__(self):
        self._items = []  # (score, order, name, gray)

    def add(self, name: str, gray: np.ndarray, reason: str) -> None:
        score = 0 if reason.startswith("no ") else 1
        self._items.append((score, -len(self._items), name, gray))
        self._items.sort(key=lambda item: (item[0], item[1]), reverse=True)
        del self._items[_DIAGNOSE_IMAGES:]

    def as_dict(self) -> dict:
        return {name: gray for _, _, name, gray in self._items}


def run(args) -> int:
    board = load_board(args.board)
    settings = CalibrationSettings()
    options = CameraModelOptions(bool(args.fix_aspect), bool(args.zero_tangent), bool(args.rational),
                                 bool(args.fix_k3))
    if args.max_views < settings.min_views:
        raise InputError(f"expected at least {settings.min_views}, got {args.max_views}", key="--max-views")
    if args.every < 0:
        raise InputError(f"expected a positive frame step (or 0 for automatic), got {args.every}", key="--every")
    check_writable(args.output)
    if args.report is not None:
        check_report_dir(args.report)
    detector = BoardDetector(board, settings)
    t0 = time.perf_counter()
    if args.video is not None:
        collected = collect_video(args.video, detector, args.every, args.max_views, settings)
    else:
        collected = collect_images(args.images, detector, args.max_views, settings)
    t_detect = time.perf_counter() - t0
    require_views(collected, detector, board, settings)
    extra = foreign_id_findings(detector, board, collected)
    for note in collected.notes:
        print(note, file=sys.stderr)
    finish(collected.views, collected.image_size, board, options, args.output, args.report,
           views_offered=collected.views, failures=collected.failures, images=collected.images,
           extra_findings=extra, source=collected.source, settings=settings,
           timings_s={"detection": t_detect}, considered=collected.considered)
    return 0


# ------------------------------------------------------------------------------ checks


def check_writable(path: str | os.PathLike) -> None:
    """InputError now, before any work, if the calibration cannot be written at ``path``."""
    path = Path(path)
    if path.suffix.lower() not in (".yaml", ".yml", ".xml"):
        raise InputError("expected a .yaml (or .yml, .xml) file name for the calibration", path=path,
                         key="--output")
    if path.is_dir():
        raise InputError("is a folder; expected a file name such as camera.yaml", path=path, key="--output")
    _probe_folder(path.parent, path, "--output")


def check_report_dir(directory: str | os.PathLike) -> None:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise InputError("is a file; expected a folder for the report", path=directory, key="--report")
    _probe_folder(directory, directory, "--report")


def _probe_folder(folder: Path, named: Path, key: str) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{parent} is a file, not a folder", path=named, key=key)
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".ar_guide_write_test_{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InputError(f"cannot write here: {exc.strerror or exc}", path=named, key=key) from None


def require_views(collected: Collected, detector: BoardDetector, board: CalibrationBoard,
                  settings: CalibrationSettings) -> None:
    """InputError saying what was found and what to change when there are too few views."""
    n = len(collected.views)
    if n >= settings.min_views:
        return
    what = "images" if not collected.source.startswith("video") else "frames looked at"
    reasons = _reason_summary(collected.failures)
    hint = _diagnosis(collected, detector)
    needed = (f"at least {settings.min_views} views are needed, {settings.recommended_views} or more "
              f"recommended")
    if n == 0:
        message = f"no {board.describe()} found in any of {collected.considered} {what} ({reasons})"
    elif not collected.failures:
        message = f"only {n} view{'s' if n > 1 else ''} of the board ({collected.considered} {what}); {needed}"
    else:
        message = (f"the board was found in only {n} of {collected.considered} {what} (others: {reasons}); "
                   f"{needed}")
    if hint:
        message += f": {hint}"
        raise InputError(message, path=board.source)
    if n == 0:
        message += ("; check that the board file matches the printed board (type, squares, dictionary) and that "
                    "the board is in view, sharp and lit")
    else:
        message += "; add views of the whole board, sharp and from different angles"
    raise InputError(message, path=collected.source.split(": ", 1)[-1])


def _reason_summary(failures) -> str:
    """"4 like img_00.jpg: 0 ChArUco corners (< 6) from 17 markers; 1 like ..." (most common first)."""
    groups = collections.OrderedDict()
    for source, reason in failures:
        groups.setdefault(re.sub(r"\b\d+(\.\d+)?\b", "N", reason), []).append((source, reason))
    if not groups:
        return "nothing usable"
    ranked = sorted(groups.values(), key=len, reverse=True)[:3]
    return "; ".join(f"{len(g)} like {g[0][0]}: {g[0][1]}" if len(g) > 1 else f"{g[0][0]}: {g[0][1]}"
                     for g in ranked)


def _diagnosis(collected: Collected, detector: BoardDetector) -> str | None:
    for gray in collected.failed_images.values():
        hint = detector.diagnose(gray)
        if hint:
            return hint
    return None


def foreign_id_findings(detector: BoardDetector, board: CalibrationBoard, collected: Collected) -> list[Finding]:
    """A warning when markers of the board's dictionary with ids the board lacks were seen."""
    if not detector.foreign_ids or board.kind == "chessboard":
        return []
    ids = sorted(detector.foreign_ids)
    return [Finding("foreign_ids", False,
                    f"markers with ids {id_ranges(ids)} of {board.body.dictionary} were seen but are not on the "
                    f"board ({board.describe()}, ids {id_ranges(board.body.marker_ids)}): if they belong to the "
                    f"printed board, it is larger than the board file says; count its squares")]


# ------------------------------------------------------------------------------ sources


def _keep(image_bgr: np.ndarray) -> np.ndarray:
    h, w = image_bgr.shape[:2]
    if w <= _KEEP_WIDTH_PX:
        return image_bgr.copy()
    return cv2.resize(image_bgr, (_KEEP_WIDTH_PX, int(round(h * _KEEP_WIDTH_PX / w))), interpolation=cv2.INTER_AREA)


def _progress(iterable, total, unit):
    from tqdm import tqdm

    # disable=None: no bar when stderr is not a terminal (logs, tests).
    return tqdm(iterable, total=total, unit=unit, desc="detecting", file=sys.stderr, disable=None, leave=False)


def collect_images(spec: str, detector: BoardDetector, max_views: int,
                   settings: CalibrationSettings = CalibrationSettings()) -> Collected:
    """Detect the board in every image of a folder or glob; keep at most ``max_views`` views
    spread over poses."""
    from ar_guide.io.sources import ImageFolderSource

    source = ImageFolderSource(spec)
    views, failures, images, failed_images = [], [], {}, _FailedSamples()
    seen = set()
    for frame in _progress(source, len(source.files), "image"):
        seen.add(frame.index)
        name = source.files[frame.index].name
        gray = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2GRAY)
        view = detector.detect(gray, name)
        if view is None:
            failures.append((name, detector.last_failure))
            failed_images.add(name, gray, detector.last_failure)
            continue
        views.append(view)
        images[name] = _keep(frame.image_bgr)
    notes = []
    unreadable = [f.name for i, f in enumerate(source.files) if i not in seen]
    if unreadable:
        shown = ", ".join(unreadable[:5]) + (f" and {len(unreadable) - 5} more" if len(unreadable) > 5 else "")
        notes.append(f"note: skipped {len(unreadable)} unreadable image{'s' if len(unreadable) > 1 else ''}: {shown}")
        failures.extend((name, "unreadable image") for name in unreadable)
    candidates = len(views)
    if len(views) > max_views:
        features = np.array([view_features(v) for v in views])
        keep = select_views(features, max_views, drop_duplicates=False, settings=settings)
        failures.extend((v.source, "not needed: more views than --max-views (the chosen ones spread over poses)")
                        for i, v in enumerate(views) if i not in keep)
        views = [views[i] for i in keep]
        notes.append(f"note: kept {len(views)} of {candidates} views, spread over positions and tilts (--max-views)")
    return Collected(views, (source.width, source.height), len(source.files), failures, images, notes,
                     candidates, f"images: {spec}", failed_images.as_dict())


def collect_video(path, detector: BoardDetector, every: int, max_views: int,
                  settings: CalibrationSettings = CalibrationSettings()) -> Collected:
    """Detect the board in every ``every``-th frame (0: chosen so that about
    ``settings.video_candidates`` frames are looked at), drop motion-blurred frames and near
    duplicates, keep at most ``max_views`` spread over poses, sharpest first."""
    from ar_guide.io.sources import VideoFileSource

    source = VideoFileSource(path)
    with source:
        total = source.frame_count
        if every <= 0:
            if total:
                every = max(1, int(round(total / settings.video_candidates)))
            else:  # length unknown: about 3 frames a second
                every = max(1, int(round(source.fps / 3)))
        found, failures, images, failed_images = [], [], {}, _FailedSamples()
        considered = 0
        frames = (f for f in source if f.index % every == 0)
        for frame in _progress(frames, (total + every - 1) // every if total else None, "frame"):
            considered += 1
            name = f"frame {frame.index}"
            gray = cv2.cvtColor(frame.image_bgr, cv2.COLOR_BGR2GRAY)
            view = detector.detect(gray, name)
            if view is None:
                failures.append((name, detector.last_failure))
                failed_images.add(name, gray, detector.last_failure)
                continue
            found.append((view, edge_blur_px(gray, view), _keep(frame.image_bgr)))
        size = (source.width, source.height)
    notes = []
    if source.skipped_frames:
        notes.append(f"note: {source.skipped_frames} damaged frames of the video were skipped")
    candidates = len(found)
    blur = np.array([b for _, b, _ in found], dtype=np.float64)
    sharp = np.ones(len(found), dtype=bool)
    if len(found) >= 3 and np.isfinite(blur).any():
        limit = max(settings.blur_ratio * float(np.nanmedian(blur)), settings.blur_min_px)
        sharp = ~(blur > limit)
        for (view, b, _), ok in zip(found, sharp):
            if not ok:
                failures.append((view.source, f"motion blur (edges {b:.1f} px wide, limit {limit:.1f} px)"))
        if (~sharp).any():
            notes.append(f"note: left out {int((~sharp).sum())} blurred frame{'s' if (~sharp).sum() > 1 else ''}")
    kept = [found[i] for i in np.flatnonzero(sharp)]
    views = [v for v, _, _ in kept]
    if views:
        features = np.array([view_features(v) for v in views])
        order = np.argsort([b if np.isfinite(b) else np.inf for _, b, _ in kept], kind="stable")
        keep = select_views(features, max_views, order=order, drop_duplicates=True, settings=settings)
        dropped = len(views) - len(keep)
        failures.extend((v.source, "not needed: a near duplicate of a kept view, or more views than --max-views")
                        for i, v in enumerate(views) if i not in keep)
        views = [views[i] for i in keep]
        if dropped:
            notes.append(f"note: kept {len(views)} of {len(kept)} sharp views with the board "
                         f"({dropped} near duplicates or beyond --max-views)")
    chosen = {id(v) for v in views}
    images = {v.source: img for v, _, img in kept if id(v) in chosen}
    return Collected(views, size, considered, failures, images, notes, candidates, f"video: {path}",
                     failed_images.as_dict())


# ------------------------------------------------------------------------------ results


def calibration_extras(result: CalibrationResult, board: CalibrationBoard, found: list[Finding],
                       views_offered: int) -> dict:
    """ar_guide's keys of the calibration file (besides OpenCV's camera_matrix, ...)."""
    params = {k: v for k, v in board.parameters.items()}
    return {
        "calibration_time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "rms_px": result.rms_px,
        "avg_reprojection_error": result.rms_px,
        "views": len(result.views),
        "views_offered": int(views_offered),
        "views_dropped": len(result.dropped),
        "dropped_views": [f"{v.source}: {why}" for v, _, why in result.dropped],
        "board": board.describe(),
        "board_parameters": params,
        "model": result.options.describe(),
        "flags": int(result.options.flags),
        "std_deviations": {k: float(v) for k, v in result.std.items()},
        "per_view_rms_px": [float(e) for e in result.per_view_rms_px],
        "verdict": verdict(found),
        "warnings": [f.message for f in found],
        "ar_guide_version": __version__,
    }


def write_calibration(path: str | os.PathLike, result: CalibrationResult, extras: dict) -> None:
    """Write the calibration file atomically (temporary file, then rename); InputError on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        save_camera(tmp, result.camera, extras)
        os.replace(tmp, path)
    except (OSError, cv2.error) as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        reason = getattr(exc, "strerror", None) or str(exc).strip().splitlines()[-1]
        raise InputError(f"cannot write the calibration: {reason}", path=path) from None


def finish(views, image_size, board: CalibrationBoard, options: CameraModelOptions, output, report_dir=None, *,
           views_offered=None, failures=(), images=None, extra_findings=(), source: str = "",
           settings: CalibrationSettings = CalibrationSettings(), timings_s: dict | None = None,
           considered: int | None = None, out=None, err=None) -> CalibrationResult:
    """Solve, check, and write the calibration (and the report when ``report_dir`` is given);
    print the summary on ``out`` (stdout) and the warnings on ``err`` (stderr).  Returns the
    result; InputError when it cannot be solved or fits so badly that it is not written."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    offered = list(views if views_offered is None else views_offered)
    timings = dict(timings_s or {})
    t0 = time.perf_counter()
    try:
        result = calibrate(views, image_size, options, settings)
    except InputError as exc:
        if report_dir is not None:
            write_report(report_dir, None, board, image_size, [Finding("solve", True, exc.detail)], offered,
                         failures, source=source, settings=settings, timings_s=timings)
        raise
    timings["solve"] = time.perf_counter() - t0
    found = findings(result, offered, image_size, settings) + list(extra_findings)
    if result.rms_px > settings.refuse_rms_px:
        found.insert(0, Finding("rms", True, f"RMS {result.rms_px:.1f} px: no camera model fits the corners"))
        where = ""
        if report_dir is not None:
            page = write_report(report_dir, result, board, image_size, found, offered, failures, images, None,
                                source, settings, timings)
            where = f"; see {page}"
        raise InputError(f"the corners of the board fit no camera model (RMS {result.rms_px:.1f} px, more than "
                         f"{settings.refuse_rms_px:g} px): the board file may not match the printed board "
                         f"(squares, square size), the board may be bent, or corners were detected wrongly; "
                         f"calibration not written{where}", path=output)
    write_calibration(output, result, calibration_extras(result, board, found, len(offered)))
    page = None
    if report_dir is not None:
        page = write_report(report_dir, result, board, image_size, found, offered, failures, images,
                            str(output), source, settings, timings)
    _print_summary(result, board, found, output, page, considered, len(offered), out, err)
    return result


def _print_summary(result, board, found, output, page, considered, offered, out, err) -> None:
    cam = result.camera
    std = result.std
    seen = f" in {offered} of {considered} images/frames" if considered else ""
    print(f"board: {board.describe()}; found{seen}", file=out)
    print(f"solved with {len(result.views)} views ({len(result.dropped)} dropped), {result.options.describe()}",
          file=out)
    for v, e, why in result.dropped:
        print(f"  dropped {v.source}: {why}", file=out)
    print(f"RMS reprojection error {result.rms_px:.3f} px", file=out)

    def pm(name, value):
        sd = std.get(name)
        return f"{name} {value:.2f}" + (f" +- {sd:.2f}" if sd is not None else " (fixed)")

    print("  " + ", ".join(pm(n, v) for n, v in (("fx", cam.fx), ("fy", cam.fy), ("cx", cam.cx), ("cy", cam.cy))),
          file=out)
    print("  distortion " + ", ".join(f"{n} {v:.5g}" for n, v in zip(result.options.distortion_names, cam.distortion)),
          file=out)
    print(f"wrote {output}", file=out)
    if page is not None:
        print(f"report: {page}", file=out)
    state = verdict(found)
    if found:
        print(f"WARNING: calibration {state.upper()} ({len(found)} warning{'s' if len(found) > 1 else ''}, "
              f"also stored in {output}):", file=err)
        for f in found:
            print(f"  - {'[serious] ' if f.serious else ''}{f.message}", file=err)
    else:
        print("calibration looks good: no warnings", file=out)
