"""``ar-guide live --camera INDEX_OR_URL --scene SCENE.yaml``: the overlay on a live camera.

The camera (an index, a device path, an RTSP/HTTP URL, or a video file paced in real time for
rehearsals) is read on its own thread, newest frame wins; the overlay goes to a window a clinician
drives from the keyboard (keys: ar_guide/apps/live_keys.py, the README and key h), or, headless
(``--no-window``), nowhere but the report, the recording and the summary.  The loop itself is
ar_guide/apps/live_session.py.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
from pathlib import Path

from ar_guide.apps import live_files
from ar_guide.apps.live_session import LiveOptions, LiveSession, print_live_summary
from ar_guide.apps.play import resolve_calibration
from ar_guide.errors import InputError
from ar_guide.io.display import Window, has_display
from ar_guide.io.sources import camera_index
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline

TITLE = "ar_guide live"


def add_parser(sub) -> None:
    p = sub.add_parser(
        "live", help="overlay the registered scene on a live camera",
        description="Track the scene's reference body in a live camera and draw the registered anatomy, targets "
                    "and planned paths over it, in a window driven from the keyboard (h lists the keys). Research "
                    "use only: never the sole source of guidance.",
    )
    p.add_argument("--camera", required=True, metavar="INDEX_OR_URL",
                   help="camera index (0, 1 ...), device path (/dev/video0), stream URL (rtsp://..., http://...), or a "
                        "video file (played in real time, for rehearsals and tests)")
    p.add_argument("--scene", type=Path, required=True, help="scene file (docs/scene-format.md)")
    p.add_argument("--calibration", type=Path, help="camera calibration (OpenCV YAML, ROS camera_info or "
                   "SciKit-Surgery text); default: the scene's 'calibration' entry. The camera is asked for the "
                   "calibration's image size; a camera that delivers another size is refused")
    p.add_argument("--record", type=Path, metavar="DIR",
                   help="record from the start into DIR (a new or empty folder): raw video, frame timestamps, pose "
                        "log, overlay video. Key r stops; r again records into DIR-2 ...")
    p.add_argument("--screenshots", type=Path, default=live_files.DEFAULT_SCREENSHOTS, metavar="DIR",
                   help="where key s saves screenshots (PNG + JSON of the poses); default ./ar_guide_screenshots")
    p.add_argument("--fullscreen", action="store_true", help="start full screen (key f switches)")
    p.add_argument("--no-window", action="store_true",
                   help="never open a window (rehearsal, tests): run until --max-seconds or the end of the source")
    p.add_argument("--max-seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--report", type=Path, metavar="REPORT.json",
                   help="write the run report (JSON): tracking, timings, latency, frame rate, skipped frames")
    p.set_defaults(run=run)


def parse_camera(text: str) -> int | str:
    """A camera index as int, anything else (device path, URL, file) as it is."""
    text = str(text).strip()
    if not text:
        raise InputError("expected a camera index, device path, URL or video file, got nothing", key="--camera")
    index = camera_index(text)
    return text if index is None else index


def run(args) -> int:
    if args.max_seconds is not None and not args.max_seconds > 0:
        raise InputError(f"expected a positive number of seconds, got {args.max_seconds:g}", key="--max-seconds")
    window = not args.no_window and has_display()
    if not args.no_window and not window:
        print("ar-guide: no display found; running without a window (stop with Ctrl+C or --max-seconds)",
              file=sys.stderr)
    if args.fullscreen and not window:
        print("ar-guide: note: --fullscreen ignored without a window", file=sys.stderr)
    if args.record is not None:
        live_files.check_record_folder(args.record)
    spec = parse_camera(args.camera)
    scene = load_scene(args.scene)
    camera_model = resolve_calibration(args, scene)   # play's rule: --calibration, else the scene's
    # The pipeline (meshes, GL context: about a second) is ready before the camera opens, so that
    # the first frames are not skipped while it loads.
    pipeline = build_pipeline(scene, camera_model) if camera_model.image_size is not None else None
    live_camera = open_camera(spec, camera_model.image_size)
    try:
        if camera_model.image_size is None:
            print(f"ar-guide: note: {camera_model.source} does not say its image size; assuming it was made at the "
                  f"camera's {live_camera.width}x{live_camera.height}", file=sys.stderr)
            camera_model = dataclasses.replace(camera_model, image_size=(live_camera.width, live_camera.height))
        camera_model.check_image_size(live_camera.width, live_camera.height, what=f"camera {args.camera}")
        if pipeline is None:
            pipeline = build_pipeline(scene, camera_model)
        header = {"input": {"camera": str(args.camera), "scene": str(args.scene), "calibration": camera_model.source}}
        options = LiveOptions(max_seconds=args.max_seconds, record_at_start=args.record is not None,
                              record_base=args.record, screenshot_dir=args.screenshots, report_out=args.report,
                              header=header)
        display = None
        if window:
            display = Window(f"{TITLE} - {args.camera}", size=(live_camera.width, live_camera.height),
                             fullscreen=args.fullscreen)
        session = LiveSession(live_camera, pipeline, display, options)
        with _sigterm_as_interrupt():
            report = session.run()
    finally:
        live_camera.close()
    print_live_summary(report)
    return 0


def open_camera(spec, size):
    """The LiveCamera of ``spec``, asking for the calibration's image ``size`` (None: the camera's own).

    A video file is delivered at its own size whatever is asked; a camera that cannot deliver
    the size delivers another one, and the calibration check then refuses it."""
    from ar_guide.io.sources import LiveCamera

    return LiveCamera(spec, size=None if size is None else tuple(size))


class _sigterm_as_interrupt:
    """SIGTERM ends the session like Ctrl+C: the recording is closed properly and the report written."""

    def __enter__(self):
        self._previous = None
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handler)
        except ValueError:  # not the main thread
            pass
        return self

    @staticmethod
    def _handler(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False
