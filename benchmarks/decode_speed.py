"""Decoding speed of VideoFileSource (PyAV) on a 1080p H.264 file, by threading mode.

    .venv/bin/python benchmarks/decode_speed.py [VIDEO]

Without VIDEO, writes a 4 s 1920x1080 H.264 test video (crf 20, camera-like noise on moving
real photos from ../shared/data when present, else smoothed noise) to a temporary folder.
Reports ms per frame including the conversion to BGR (what the pipeline receives), median of
3 passes, and the same for cv2.VideoCapture for comparison.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ar_guide.io.sources import VideoFileSource
from ar_guide.io.writers import VideoWriter

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_video(path: Path, frames: int = 120, size=(1920, 1080)) -> None:
    rng = np.random.default_rng(0)
    photos = sorted((SHARED / "calibration" / "sksurgery_viking_laparoscope").glob("calib.images.*.png"))
    sources = [cv2.imread(str(p)) for p in photos] or [
        cv2.GaussianBlur(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8), (0, 0), 3)]
    with VideoWriter(path, 30, size, crf=20) as writer:
        for i in range(frames):
            src = cv2.resize(sources[(i // 24) % len(sources)], size)
            t = i % 24
            m = np.float32([[1.02, 0.01, -10 + 1.5 * t], [-0.01, 1.02, -5 + 0.7 * t]])
            img = cv2.warpAffine(src, m, size, borderMode=cv2.BORDER_REFLECT)
            noise = rng.normal(0, 3, img.shape)
            writer.write(np.clip(img + noise, 0, 255).astype(np.uint8))


def time_source(make, passes: int = 3) -> tuple[float, int]:
    results = []
    n = 0
    for _ in range(passes):
        start = time.perf_counter()
        n = 0
        with make() as source:
            for _frame in source:
                n += 1
        results.append((time.perf_counter() - start) * 1000 / n)
    return statistics.median(results), n


class _Capture:
    def __init__(self, path):
        self.cap = cv2.VideoCapture(str(path))

    def __iter__(self):
        while True:
            ok, img = self.cap.read()
            if not ok:
                return
            yield img

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cap.release()


def main() -> None:
    if len(sys.argv) > 1:
        video = Path(sys.argv[1])
    else:
        video = Path(tempfile.mkdtemp()) / "bench1080.mp4"
        make_video(video)
    print(f"{video} ({video.stat().st_size / 1e6:.1f} MB), load average {os.getloadavg()[0]:.2f}")
    for strict in (True, False):
        for thread_type in ("SLICE", "FRAME", "AUTO"):
            if strict and thread_type != "SLICE":
                continue  # strict decoding uses slice threading (see VideoFileSource)
            ms, n = time_source(lambda: VideoFileSource(video, thread_type=thread_type, strict=strict))
            print(f"VideoFileSource strict={strict!s:5} thread_type={thread_type:5}: {ms:6.2f} ms/frame ({n} frames)")
    ms, n = time_source(lambda: _Capture(video))
    print(f"cv2.VideoCapture                                 : {ms:6.2f} ms/frame ({n} frames)")


if __name__ == "__main__":
    main()
