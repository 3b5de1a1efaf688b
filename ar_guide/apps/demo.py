"""``ar-guide demo``: the overlay on a synthetic phantom sequence with known ground truth.

Needs no camera and no files: the sequence is generated (seeded) on first use and cached.
"""

from __future__ import annotations

import sys
from pathlib import Path

from ar_guide.apps.playback import PlaybackOptions, print_summary, run_playback
from ar_guide.camera import load_camera
from ar_guide.evaluation import GroundTruthComparison
from ar_guide.io.display import has_display
from ar_guide.io.sources import VideoFileSource
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence, load_ground_truth


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the overlay on a synthetic phantom sequence (no camera needed)",
        description="Play a synthetic phantom sequence (ChArUco patient reference, organ, tumour, vessel, planned "
                    "needle path, hand-held camera) with the overlay, and measure its accuracy against ground truth.",
    )
    p.add_argument("--output", type=Path, default=Path("ar_guide_demo"),
                   help="folder for overlay.mp4, poses.csv and report.json (default: ./ar_guide_demo)")
    p.add_argument("--no-window", action="store_true", help="never open a window; write the files only")
    p.add_argument("--live", action="store_true",
                   help="rehearse the live overlay instead: run 'ar-guide live' with the demo video as the camera "
                        "(paced in real time; keys as in live, h lists them), its report in the output folder")
    p.set_defaults(run=run)


def run(args) -> int:
    sequence = ensure_sequence(DEMO_SPEC, progress=True)
    if args.live:
        return run_live_rehearsal(args, sequence)
    scene = load_scene(sequence.scene)
    camera = load_camera(sequence.calibration)
    ground_truth = load_ground_truth(sequence.ground_truth)
    pipeline = build_pipeline(scene, camera)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    window = (not args.no_window) and has_display()
    if not args.no_window and not window:
        print("ar-guide: no display found: writing the overlay to files instead of a window", file=sys.stderr)
    options = PlaybackOptions(video_out=out / "overlay.mp4", poses_out=out / "poses.csv",
                              report_out=out / "report.json", window=window, realtime=window,
                              title="ar_guide demo - synthetic phantom")
    comparison = GroundTruthComparison(camera, scene.registration.reference_from_ct,
                                       [t.position_ct for t in scene.targets])
    header = {"command": "demo", "input": {"video": str(sequence.video), "scene": str(sequence.scene),
                                            "calibration": str(sequence.calibration),
                                            "ground_truth": str(sequence.ground_truth)}}
    with VideoFileSource(sequence.video) as source:
        report = run_playback(source, pipeline, options, ground_truth=ground_truth, gt_comparison=comparison,
                              report_header=header)
    print_summary(report)
    return 0


def run_live_rehearsal(args, sequence) -> int:
    """``ar-guide live`` on the demo sequence: the same window, keys, HUD and recording as with a
    camera, the video delivered in real time; recordings and screenshots go to the output folder."""
    import argparse

    from ar_guide.apps import live

    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    print(f"ar-guide: rehearsal: ar-guide live --camera {sequence.video} --scene {sequence.scene} "
          f"--calibration {sequence.calibration}", file=sys.stderr)
    live_args = argparse.Namespace(camera=str(sequence.video), scene=sequence.scene, calibration=sequence.calibration,
                                   record=None, screenshots=out / "screenshots", fullscreen=False,
                                   no_window=args.no_window, max_seconds=getattr(args, "max_seconds", None),
                                   report=out / "live-report.json")
    return live.run(live_args)
