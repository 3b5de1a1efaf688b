"""``ar-guide play VIDEO --scene SCENE.yaml``: the overlay on a recorded video.

VIDEO may also be a recording folder of ``ar-guide live --record`` (ar_guide.io.recording): its raw
camera video, all segments in order, is played with each frame's original number and timestamp, so
that ``--realtime`` paces by the live session's clock and the pose log and report use its times.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

from ar_guide.apps.playback import Digitiser, PlaybackOptions, print_summary, run_playback
from ar_guide.camera import load_camera
from ar_guide.errors import InputError
from ar_guide.io.display import has_display
from ar_guide.io.recording import RecordingSource, is_recording, open_recording
from ar_guide.io.report import write_json
from ar_guide.io.sources import VideoFileSource
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline


def add_parser(sub) -> None:
    p = sub.add_parser(
        "play", help="overlay the registered scene on a recorded video",
        description="Track the scene's reference body in VIDEO and draw the registered anatomy, targets and "
                    "planned paths over it: in a window, and/or into a video with a pose log and a report.",
    )
    p.add_argument("video", type=Path, help="video file (any format FFmpeg reads), or a recording folder "
                   "written by ar-guide live --record")
    p.add_argument("--scene", type=Path, required=True, help="scene file (docs/scene-format.md)")
    p.add_argument("--calibration", type=Path, help="camera calibration (OpenCV YAML, ROS camera_info or "
                   "SciKit-Surgery text); default: the scene's 'calibration' entry")
    p.add_argument("--output", type=Path, help="write the overlay video here (.mp4: H.264)")
    p.add_argument("--poses", type=Path, help="write the pose log (CSV) here")
    p.add_argument("--report", type=Path, help="write the run report (JSON) here")
    p.add_argument("--no-window", action="store_true", help="never open a window")
    p.add_argument("--realtime", action="store_true", help="pace playback to the video's timestamps")
    p.add_argument("--digitise", type=Path, metavar="POINTS.csv",
                   help="in the window, key d appends the pointer's tip (reference frame, mm) to this point "
                        "file (name,x,y,z) when the reference and the pointer are both tracked")
    p.add_argument("--names", help="names of the digitised points, in order: comma-separated (F1,F2,...) or a "
                   "point file whose names to use (e.g. the CT fiducials); default F1, F2 ...")
    p.add_argument("--pointer", metavar="TOOL", help="the scene's tool whose tip is digitised (default: the "
                   "scene's only tool)")
    p.set_defaults(run=run)


def resolve_calibration(args, scene, recording=None):
    path = args.calibration or scene.calibration_path
    if path is None and recording is not None:
        # The calibration the live session used, if it is still where it was.
        recorded = (recording.metadata.get("session") or {}).get("calibration")
        if isinstance(recorded, str) and Path(recorded).is_file():
            path = Path(recorded)
    if path is None:
        raise InputError("no camera calibration: pass --calibration CAM.yaml or add 'calibration:' to the scene",
                         path=args.scene)
    return load_camera(path)


def run(args) -> int:
    window = not args.no_window and has_display()
    if args.digitise is None and (args.names is not None or args.pointer is not None):
        raise InputError("--names and --pointer go with --digitise POINTS.csv")
    if args.digitise is not None and not window:
        why = "--no-window was given" if args.no_window else "there is no display"
        raise InputError(f"--digitise needs the window (key d takes each point) but {why}; without a window, "
                         "record a pose log (--poses) and digitise from it with ar-guide register",
                         key="--digitise")
    if not window and not (args.output or args.poses or args.report):
        why = "--no-window was given" if args.no_window else "there is no display"
        raise InputError(f"nothing to show or write ({why}): add --output, --poses or --report")
    scene = load_scene(args.scene)
    digitiser = make_digitiser(args, scene) if args.digitise is not None else None
    try:
        report = _play(args, scene, window, digitiser)
    finally:
        if digitiser is not None:
            digitiser.close()
    print_summary(report)
    return 0


def _play(args, scene, window: bool, digitiser) -> dict:
    recording = None
    if args.video.is_dir() or is_recording(args.video):
        recording = open_recording(args.video)
        source = RecordingSource(recording)
    else:
        source = VideoFileSource(args.video)
    with source:
        camera = resolve_calibration(args, scene, recording)
        if camera.image_size is None:
            print(f"ar-guide: note: {camera.source} does not say its image size; assuming it was made at the "
                  f"video's {source.width}x{source.height}", file=sys.stderr)
            camera = dataclasses.replace(camera, image_size=(source.width, source.height))
        camera.check_image_size(source.width, source.height, what=f"{args.video}")
        pipeline = build_pipeline(scene, camera)
        options = PlaybackOptions(video_out=args.output, poses_out=args.poses, report_out=args.report,
                                  window=window, realtime=args.realtime, title=f"ar_guide - {args.video.name}",
                                  digitiser=digitiser)
        header = {"command": "play", "input": {"video": str(args.video), "scene": str(args.scene),
                                                "calibration": camera.source}}
        if recording is not None:
            header["input"]["recording"] = header["input"].pop("video")
            header["recording"] = recording.summary()
        report = run_playback(source, pipeline, options, report_header=header)
        if recording is not None:
            report["recording"].update(frames_missing=source.missing_frames,
                                       unreadable_segments=[str(p) for p in source.unreadable_segments])
            if options.report_out:
                write_json(options.report_out, report)
        return report


def make_digitiser(args, scene) -> Digitiser:
    """The Digitiser of --digitise, --names and --pointer (InputError for a scene without that tool)."""
    tools = [t.name for t in scene.tools]
    if not tools:
        raise InputError("--digitise needs a tracked pointer: the scene has no tools (add one under 'tools:', "
                         "e.g. {file: pointer.yaml} written by ar-guide pivot)", path=args.scene, key="tools")
    if args.pointer is None:
        if len(tools) > 1:
            raise InputError(f"the scene has {len(tools)} tools ({', '.join(tools)}): say which one digitises "
                             "with --pointer NAME", key="--pointer")
        pointer = tools[0]
    elif args.pointer not in tools:
        raise InputError(f"no tool named {args.pointer!r} in the scene (tools: {', '.join(tools)})", key="--pointer")
    else:
        pointer = args.pointer
    names = None
    if args.names is not None:
        candidate = Path(args.names)
        if candidate.is_file():
            from ar_guide.registration.points import read_points

            names = list(read_points(candidate).names)
        else:
            names = [n.strip() for n in args.names.split(",")]
            if not all(names):
                raise InputError(f"expected comma-separated names (or an existing point file), got {args.names!r}",
                                 key="--names")
            if len(set(names)) != len(names):
                raise InputError(f"a name appears twice in {args.names!r}", key="--names")
    return Digitiser(args.digitise, pointer, names)
