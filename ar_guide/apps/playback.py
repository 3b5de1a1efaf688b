"""The loop shared by ``play`` and ``demo``: frames in, overlay out, poses and a report written."""

from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
import time
from pathlib import Path

from ar_guide import __version__
from ar_guide.evaluation import GroundTruthComparison, RunStatistics
from ar_guide.io.display import Window, has_display
from ar_guide.io.poselog import PoseLogWriter
from ar_guide.io.report import write_json
from ar_guide.io.writers import VideoWriter
from ar_guide.pipeline import OverlayPipeline

QUIT_KEYS = {ord("q"), 27}
PAUSE_KEY = ord(" ")


@dataclasses.dataclass
class PlaybackOptions:
    video_out: Path | None = None
    poses_out: Path | None = None
    report_out: Path | None = None
    window: bool = True
    realtime: bool = False
    progress: bool = True
    title: str = "ar_guide"


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
                key = window.show(result.image_bgr)
                if key & 0xFF in QUIT_KEYS or not window.is_open():
                    stopped_by_user = True
                    break
                if key & 0xFF == PAUSE_KEY:
                    while True:
                        key = window.show(result.image_bgr, wait_ms=50)
                        if key & 0xFF in QUIT_KEYS | {PAUSE_KEY} or not window.is_open():
                            break
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
    outs = report.get("outputs", {})
    for key in ("video", "poses", "report"):
        if key in outs:
            print(f"{key}: {outs[key]}", file=stream)
