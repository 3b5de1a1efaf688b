"""Live calibration session speed: detection time on the worker and preview frame rate.

Renders a short synthetic 1080p video of the A4 ChArUco board (calibration/charuco_a4.yaml)
held at a few poses, then plays it as a camera (CameraSource) through the live session
(ar_guide.apps.calibrate_live.run_session) twice: paced at 30 fps (as a camera delivers), and
unpaced (frames as fast as they decode: the most the preview can show while detecting).  With a
display ($DISPLAY, e.g. Xvfb) the preview window is drawn and shown; without, the headless loop
is timed.  Prints the worker's detection time (median, p95 over all detections) and the preview
rate.

    .venv/bin/python benchmarks/calibration_live.py [--size 1920x1080] [--window]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    from ar_guide.apps.calibrate_live import run_session
    from ar_guide.calibration.boards import load_board
    from ar_guide.constants import CaptureSettings
    from ar_guide.io.display import has_display
    from ar_guide.io.sources import CameraSource
    from calibration_live_video import write_board_video

    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--window", action="store_true", help="show the preview (needs a display)")
    parser.add_argument("--video", type=Path, help="reuse this video instead of rendering one")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    window = args.window and has_display()
    board_file = ROOT / "calibration" / "charuco_a4.yaml"
    board = load_board(board_file)
    video = args.video
    if video is None or not video.exists():
        video = video or Path(tempfile.mkdtemp()) / f"board_{w}x{h}.mp4"
        keys = [(0.5, 0.5, 450, (1, 0), 10, 90), (0.4, 0.45, 420, (0, 1), 30, 80),
                (0.6, 0.55, 480, (1, 1), -25, 100), (0.5, 0.5, 400, (1, -1), 20, 85)]
        t0 = time.perf_counter()
        write_board_video(video, size=(w, h), fps=30.0, hold_frames=30, move_frames=4, key_poses=keys,
                          board_config=board.parameters)
        print(f"rendered {video} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    # The session must not end early on coverage: never sufficient.
    settings = CaptureSettings(min_views=10_000)
    for paced in (True, False):
        with CameraSource(str(video), realtime=paced) as source:
            start = time.perf_counter()
            outcome = run_session(source, board, settings, window=window, stream=open("/dev/null", "w"))
            wall = time.perf_counter() - start
        det = np.asarray(outcome.detection_ms)
        shown = outcome.frames / wall
        print(f"{w}x{h} {'paced 30 fps' if paced else 'unpaced'} {'window' if window else 'headless'}: "
              f"detections {det.size} (board in {outcome.frames_with_board}), detection median "
              f"{np.median(det):.1f} ms, p95 {np.percentile(det, 95):.1f} ms; frames shown {outcome.frames} in "
              f"{wall:.1f} s = {shown:.1f} fps" + (f" (preview rate at the end {outcome.preview_fps:.1f} fps)"
                                                     if window else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
