"""Videos and fake cameras for the live app's tests (tests/test_live.py).

A *still video* repeats one frame of the synthetic phantom sequence: used as the camera, it makes
every frame identical, so that two window screenshots differ only by what the keys changed.  It is
H.264 with ``qp=0`` (lossless) and a short key-frame interval: all decoded frames are the same.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ar_guide.io.livecamera import LiveEvent
from ar_guide.io.sources import Frame, VideoFileSource

#: A frame of TEST_SPEC's video where the reference is OK with 17 markers and the anatomy,
#: target and path are in view (found by playing it).
STILL_FRAME = 7


def frame_of(video: Path, index: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR: frame ``index`` of ``video``."""
    with VideoFileSource(video) as source:
        for frame in source:
            if frame.index == index:
                return frame.image_bgr.copy()
    raise AssertionError(f"{video} has no frame {index}")


def write_video(images, path: Path, fps: float = 30.0) -> Path:
    """Encodes BGR images as lossless H.264 (qp 0) in ``path`` (.mkv or .mp4)."""
    import av

    images = list(images)
    h, w = images[0].shape[:2]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=int(round(fps)))
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv444p"
        stream.options = {"qp": "0", "preset": "ultrafast", "g": str(int(round(fps)))}
        for image in images:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def still_video(image_bgr: np.ndarray, path: Path, seconds: float, fps: float = 30.0) -> Path:
    """A video of ``image_bgr`` repeated for ``seconds``."""
    return write_video([image_bgr] * int(round(seconds * fps)), path, fps)


class FramesCamera:
    """A LiveCamera stand-in that hands out the given frames as fast as they are taken (no
    pacing, no thread): for tests of the loop's logic, not of its timing."""

    def __init__(self, images, fps: float = 30.0):
        self.images = list(images)
        self.height, self.width = self.images[0].shape[:2]
        self.fps = fps
        self.dropped_frames = 0
        self.reconnects = 0
        self.closed = False

    def __iter__(self):
        t0 = time.monotonic()
        for i, image in enumerate(self.images):
            now = time.monotonic()
            yield LiveEvent(Frame(i, now - t0, image.copy()), now, "ok", "")

    def close(self):
        self.closed = True


class FlakySource:
    """What LiveCamera's opener returns, like CameraSource: ``frames`` copies of ``image`` paced at
    ``fps``, then the stream stops (as an unplugged camera does: iteration ends)."""

    def __init__(self, image: np.ndarray, frames: int, fps: float = 30.0):
        self.image = image
        self.frames = int(frames)
        self.height, self.width = image.shape[:2]
        self.fps = float(fps)
        self.dropped_frames = 0
        self.ended = False
        self.released = True
        self.clock_origin_s = time.monotonic()

    def __iter__(self):
        for i in range(self.frames):
            due = self.clock_origin_s + i / self.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            yield Frame(i, time.monotonic() - self.clock_origin_s, self.image.copy())

    def close(self, timeout_s=None):
        pass


class FlakyOpener:
    """LiveCamera's ``opener`` that fails on purpose: the first source delivers ``before`` frames and
    stops; the next ``failures`` opening attempts raise OSError; then a source delivers ``after``
    frames and stops, after which every attempt fails.  ``calls`` counts the attempts."""

    def __init__(self, image: np.ndarray, before: int, failures: int, after: int, fps: float = 30.0):
        self.image, self.before, self.failures, self.after, self.fps = image, before, failures, after, fps
        self.calls = 0

    def __call__(self, spec, size=None, fps=None, stall_timeout_s=None):
        self.calls += 1
        if self.calls == 1:
            return FlakySource(self.image, self.before, self.fps)
        if self.calls <= 1 + self.failures:
            raise OSError("camera unplugged (on purpose)")
        if self.calls == 2 + self.failures:
            return FlakySource(self.image, self.after, self.fps)
        raise OSError("camera gone for good (on purpose)")
