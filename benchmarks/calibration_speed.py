"""Speed of calibration: board detection per frame and solving (docs/benchmarks.md, "Calibration").

    .venv/bin/python benchmarks/calibration_speed.py [--repeat 30]

* ChArUco detection of a 1920x1080 frame (BoardDetector.detect: markers, ChArUco corners, the
  view checks), as in the live session: synthetic photos of a 7x5, 30/22 mm, DICT_5X5_100 board
  (ar_guide.synth.calibration_views), median over ``--repeat`` calls cycling through the views;
  also a frame without the board.
* Chessboard detection (findChessboardCornersSB) on the real 1080p laparoscope photos and the
  640x480 webcam photos, when ../shared/data is present.
* Solving: calibrate() on 30 views (the 7x5 board's 24 corners per view, exact projections plus
  0.07 px noise, as the synthetic photos give), and on 30 partial views of a 12x9 board.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from ar_guide.calibration.boards import board_from_mapping
from ar_guide.calibration.detect import BoardDetector, BoardView
from ar_guide.calibration.solve import calibrate
from ar_guide.synth.calibration_views import random_board_poses, render_board_view
from ar_guide.synth.optics import synthetic_camera

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "calibration"


def _median_ms(fn, items, repeat: int) -> tuple[float, float]:
    times = []
    for i in range(repeat):
        item = items[i % len(items)]
        t0 = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - t0) * 1000.0)
    return float(np.median(times)), float(np.percentile(times, 95))


def _projected_views(board, cam, poses, rng, noise_px=0.07):
    views = []
    for i, pose in enumerate(poses):
        pts = board.corners_mm @ pose[:3, :3].T + pose[:3, 3]
        uv = cam.project(pts) + rng.normal(0.0, noise_px, (len(pts), 2))
        w, h = cam.image_size
        inside = np.all(np.isfinite(uv), axis=1) & (uv[:, 0] > 20) & (uv[:, 0] < w - 20) \
            & (uv[:, 1] > 20) & (uv[:, 1] < h - 20)
        ids = np.flatnonzero(inside)
        views.append(BoardView(f"v{i}", cam.image_size, ids, uv[ids], board.corners_mm[ids]))
    return views


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, {cv2.getNumberOfCPUs()} CPUs, "
          f"OpenCV {cv2.__version__}, threads {cv2.getNumThreads()}")

    cam = synthetic_camera(1920, 1080)
    board = board_from_mapping({"type": "charuco", "squares": [7, 5], "square_mm": 30, "marker_mm": 22,
                                "dictionary": "DICT_5X5_100"})
    t0 = time.perf_counter()
    poses = random_board_poses(board, cam, 4, seed=0)
    frames = [render_board_view(board, cam, p, np.random.default_rng(i)) for i, p in enumerate(poses)]
    print(f"rendered {len(frames)} 1920x1080 views in {time.perf_counter() - t0:.1f} s")
    detector = BoardDetector(board)
    for f in frames:  # warm up (detector objects per image size)
        detector.detect(f)
    corners = [len(detector.detect(f)) for f in frames]
    med, p95 = _median_ms(detector.detect, frames, args.repeat)
    print(f"ChArUco 7x5 detection, 1920x1080, {corners} corners: median {med:.1f} ms, p95 {p95:.1f} ms "
          f"({args.repeat} calls)")
    blank = np.full((1080, 1920), 120, np.uint8)
    med, p95 = _median_ms(detector.detect, [blank], args.repeat)
    print(f"  frame without the board: median {med:.1f} ms, p95 {p95:.1f} ms")

    if SHARED.is_dir():
        for folder, size, inner in (("sksurgery_viking_laparoscope", "1920x1080", (14, 10)),
                                    ("sksurgery_webcam_chessboard", "640x480", (14, 10))):
            chess = BoardDetector(board_from_mapping({"type": "chessboard", "inner_corners": list(inner),
                                                      "square_mm": 3}))
            paths = sorted((SHARED / folder).glob("calib.images.*.png"))
            images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths]
            med, p95 = _median_ms(chess.detect, images, max(len(images), 10))
            print(f"chessboard 14x10 (findChessboardCornersSB), {size}, {folder}: median {med:.0f} ms, "
                  f"p95 {p95:.0f} ms")

    rng = np.random.default_rng(1)
    views = _projected_views(board, cam, random_board_poses(board, cam, 30, seed=2), rng)
    t0 = time.perf_counter()
    result = calibrate(views, cam.image_size)
    print(f"solve 30 views x {len(views[0])} corners (7x5 board): {time.perf_counter() - t0:.2f} s, "
          f"RMS {result.rms_px:.3f} px, {len(result.history)} solve(s)")
    big = board_from_mapping({"type": "charuco", "squares": [12, 9], "square_mm": 18, "marker_mm": 13,
                              "dictionary": "DICT_5X5_100"})
    views = _projected_views(big, cam, random_board_poses(big, cam, 30, seed=3, distance_mm=(250, 500)), rng)
    n = sum(len(v) for v in views)
    t0 = time.perf_counter()
    result = calibrate(views, cam.image_size)
    print(f"solve 30 views, {n} corners (12x9 board): {time.perf_counter() - t0:.2f} s, RMS {result.rms_px:.3f} px")


if __name__ == "__main__":
    main()
