"""A small recording program for tests that kill it or starve it of disk (tests/test_recorder.py).

    python recorder_child.py FOLDER [--seconds S] [--size WxH] [--noise N] [--fsize-limit BYTES]

Records synthetic frames paced at 30 fps with ar_guide.io.recorder.Recorder and prints
"frame INDEX TIMESTAMP_S" (flushed) after each write() returned, then "closed ERROR" at the end.
--fsize-limit sets RLIMIT_FSIZE (and ignores SIGXFSZ), so that writes beyond it fail with EFBIG,
as on a full disk.  Also imported by the tests for frame_image / read_index.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

#: Frame numbers are written into the image as BITS black/white blocks along the top.
BITS = 12
BLOCK = 16


def frame_image(index: int, width: int, height: int, rng: np.random.Generator | None = None,
                noise: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 BGR: mid grey (plus uniform noise of +-noise), the index in binary blocks
    (a white block for a 1 bit) along the top, and a gradient that moves with the index."""
    image = np.full((height, width, 3), 100, np.uint8)
    ramp = ((np.arange(width) * 2 + index * 5) % 120).astype(np.uint8)
    image[BLOCK * 2:, :, 1] = ramp[None, :]
    if noise and rng is not None:
        image = np.clip(image.astype(np.int16) + rng.integers(-noise, noise + 1, image.shape), 0, 255).astype(np.uint8)
    for bit in range(BITS):
        value = 255 if (index >> bit) & 1 else 0
        image[:BLOCK, bit * BLOCK:(bit + 1) * BLOCK] = value
    return image


def read_index(image: np.ndarray) -> int:
    """The index :func:`frame_image` wrote (block means after lossy compression)."""
    index = 0
    for bit in range(BITS):
        block = image[2:BLOCK - 2, bit * BLOCK + 2:(bit + 1) * BLOCK - 2]
        if block.mean() > 128:
            index |= 1 << bit
    return index


def states_for(index: int, timestamp_s: float):
    """A reference body OK with a pose that moves with the frame, a pointer LOST every 3rd frame."""
    from ar_guide.tracking.status import BodyState, TrackingStatus

    pose = np.eye(4)
    pose[:3, 3] = (index * 0.5, -index * 0.25, 400.0 + index)
    reference = BodyState("reference", TrackingStatus.OK, pose, timestamp_s, timestamp_s, 0.21, 12, "ok")
    if index % 3 == 2:
        pointer = BodyState("pointer", TrackingStatus.LOST, None, timestamp_s, None, None, 0, "not seen")
    else:
        pointer = BodyState("pointer", TrackingStatus.OK, np.eye(4), timestamp_s, timestamp_s, 0.4, 5, "ok")
    return {"reference": reference, "pointer": pointer}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--noise", type=int, default=0)
    parser.add_argument("--fsize-limit", type=int)
    args = parser.parse_args(argv)
    if args.fsize_limit:
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # EFBIG instead of death
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.fsize_limit, args.fsize_limit))

    from ar_guide.io.recorder import Recorder
    from ar_guide.io.sources import Frame

    width, height = (int(v) for v in args.size.split("x"))
    fps = 30.0
    rng = np.random.default_rng(1)
    images = [frame_image(i, width, height, rng, args.noise) for i in range(30)]
    recorder = Recorder(args.folder, fps, (width, height), ["reference", "pointer"],
                        metadata={"camera": "recorder_child"})
    t0 = time.monotonic()
    index = 0
    while True:
        due = t0 + index / fps
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        timestamp = index / fps
        if timestamp > args.seconds:
            break
        image = images[index % len(images)].copy()
        image[:BLOCK, :BITS * BLOCK] = frame_image(index, width, height)[:BLOCK, :BITS * BLOCK]
        recorder.write(Frame(index, timestamp, image), time.monotonic(), image, image[:, ::-1],
                       states_for(index, timestamp))
        print(f"frame {index} {timestamp:.6f}", flush=True)
        index += 1
    recorder.close()
    print("closed " + json.dumps({"error": recorder.error, "frames_written": recorder.frames_written,
                                  "frames_dropped": recorder.frames_dropped}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
