"""Video writing through PyAV: H.264 in MP4/MKV/MOV, MJPEG in AVI.

OpenCV's wheels cannot write H.264 (only mp4v/MJPG), PyAV's can.  Frames are BGR uint8.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError

H264_CONTAINERS = (".mp4", ".mkv", ".mov")


def add_h264_stream(container, fps: float, size: tuple[int, int], options: dict[str, str],
                    time_base: Fraction | None = None, threads: int | None = None):
    """An x264 stream (yuv420p) of ``size`` at ``fps`` in an open PyAV output ``container``.

    options : x264's, e.g. {"crf": "18", "preset": "veryfast", "tune": "zerolatency"}
    time_base : of the frames' ``pts`` when the caller sets them (the recorder: milliseconds)
    threads : encoder threads (None: FFmpeg's choice)
    """
    stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = int(size[0]), int(size[1])
    stream.pix_fmt = "yuv420p"
    if time_base is not None:
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
    if threads is not None:
        stream.codec_context.thread_count = int(threads)
    stream.options = dict(options)
    return stream


class VideoWriter:
    """Writes BGR uint8 frames of one size to a video file.

    ``crf`` is x264's constant rate factor (lower is better; 18 is visually lossless, 23 x264's
    default).  Frames are encoded as they come, so a crash loses at most the encoder's look-ahead;
    the container index is written by :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], crf: int = 20,
                 preset: str = "veryfast"):
        import av

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in H264_CONTAINERS + (".avi",):
            raise InputError("unsupported video extension; use .mp4, .mkv, .mov or .avi", path=self.path)
        width, height = int(size[0]), int(size[1])
        if width % 2 or height % 2:
            raise InputError(f"H.264 needs an even frame size, got {width}x{height}", path=self.path)
        self.size = (width, height)
        self.frames_written = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.path), mode="w")
        except (OSError, av.error.FFmpegError) as exc:
            raise InputError(f"cannot write video: {exc}", path=self.path) from None
        if suffix == ".avi":
            self._stream = self._container.add_stream("mjpeg", rate=Fraction(fps).limit_denominator(1001))
            self._stream.pix_fmt = "yuvj420p"
            self._stream.options = {"q:v": "3"}
            self._stream.width = width
            self._stream.height = height
        else:
            self._stream = add_h264_stream(self._container, fps, self.size, {"crf": str(int(crf)), "preset": preset})

    def write(self, frame_bgr: np.ndarray) -> None:
        import av

        if frame_bgr.shape[:2] != (self.size[1], self.size[0]):
            raise ValueError(f"frame is {frame_bgr.shape[1]}x{frame_bgr.shape[0]}, writer expects "
                             f"{self.size[0]}x{self.size[1]}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame_bgr), format="bgr24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        if self._container is None:
            return
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
