"""Frame sources: video files (decoded with PyAV), folders of images, cameras (newest frame only).

Every source is an iterable of :class:`Frame` and a context manager, with ``width``, ``height``,
``fps``, ``frame_count`` and ``skipped_frames``.  The pipeline only sees Frames, so the same code
runs on a file, a folder, a camera or a test's list of images.

Damaged input does not stop playback: a video packet that FFmpeg cannot decode is skipped and
counted (``skipped_frames``), a truncated file ends with what was decodable, and only a file with
no decodable frame at all is an error (InputError).  ``Frame.index`` comes from the frame's
timestamp, so frames lost to corruption or dropped by the recorder leave gaps in the index
instead of shifting every later frame (``missing_frames`` counts the gaps).

What FFmpeg does not report cannot be skipped: noise deep inside an H.264 frame is usually
concealed without any error, so that frame and the frames predicted from it (up to the next key
frame) come out smeared; only damage that breaks a slice header or the container is seen.
Damage to a Matroska block header makes FFmpeg's demuxer stop: the source then ends early
(``ended_early``).  An MP4 whose recording was cut off has no index and cannot be opened.

OpenCV's ``cv2.VideoCapture`` is used for cameras only: for files it numbers decoded frames consecutively (hiding gaps)
and gives no per-frame error.  Example, ../shared/data/video/sksurgery_aruco/multipattern.avi:
the AVI holds 11 frame slots, slot 1 being an empty (0-byte) chunk, so 10 frames decode with
timestamps 0, 2/30, 3/30 ... 10/30 s.  PyAV gives them indices 0, 2, 3 ... 10; VideoCapture
returns the same 10 images numbered 0..9.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from ar_guide.errors import InputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")

#: Frame rate assumed for timestamps of an image folder, and of a video whose container
#: states none.
DEFAULT_FPS = 30.0
#: Consecutive demuxer errors after which the rest of a file is taken as unreadable.
_MAX_CONSECUTIVE_DEMUX_ERRORS = 50


@dataclasses.dataclass(frozen=True, eq=False)
class Frame:
    """One image of a source.

    index : position in the source, 0-based, counting frames skipped as corrupt (and frames
        missing from the file) too, so that it matches the frame numbers of the recording
    timestamp_s : presentation time from the container (pts * time_base) for files; index / fps
        for image folders; the capture clock for cameras
    image_bgr : (H, W, 3) uint8, BGR, C-contiguous
    """

    index: int
    timestamp_s: float
    image_bgr: np.ndarray


class FrameSource(Protocol):
    """What the pipeline needs from a source of frames."""

    width: int
    height: int
    fps: float
    frame_count: int | None
    skipped_frames: int

    def __iter__(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...

    def __enter__(self): ...

    def __exit__(self, *exc) -> bool: ...


class VideoFileSource:
    """Frames of a video file, decoded with PyAV (FFmpeg).

    width, height : frame size (px), from the first decoded frame
    fps : the stream's average frame rate (DEFAULT_FPS if the container gives none)
    frame_count : from the container header, or estimated from its duration, or None; a
        header's count includes slots that hold no frame (multipattern.avi: 11 for 10 frames)
    skipped_frames : packets the decoder rejected so far (corrupt frames)
    missing_frames : positions in the timeline for which no frame came so far (index gaps),
        whatever the cause: corrupt frames, frames the recorder dropped
    ended_early : after iteration, True if the file ended before its header's frame count or
        the demuxer gave up (truncated or damaged tail)

    ``strict`` (default) makes the decoder report every bitstream error it sees (FFmpeg's
    ``err_detect=explode``), so that a damaged frame is skipped instead of shown with concealed
    garbage: without it, a corrupt MJPEG frame decodes silently, and H.264 frames that reference
    a damaged frame come out smeared.  ``threads``: decoder threads (0 = FFmpeg's choice);
    ``thread_type``: "SLICE" (default), "FRAME" or "AUTO".  Strict decoding needs "SLICE":
    with frame threads, FFmpeg keeps failing every frame after the first error.  Slice threading
    was also the fastest here (benchmarks/decode_speed.py: 1080p H.264 on 2 cores, about 4 ms per
    frame including the conversion to BGR, against 5.5 ms with frame threads or cv2.VideoCapture).
    Iterating twice restarts from the beginning.
    """

    def __init__(self, path: str | os.PathLike, threads: int = 0, thread_type: str = "SLICE",
                 strict: bool = True):
        if strict and thread_type != "SLICE":
            raise ValueError("strict decoding needs thread_type='SLICE' (FFmpeg's frame threads "
                             "fail every frame after the first error)")
        self.path = Path(path)
        self.threads = int(threads)
        self.thread_type = thread_type
        self.strict = bool(strict)
        self.skipped_frames = 0
        self.missing_frames = 0
        self.ended_early = False
        self.width: int | None = None
        self.height: int | None = None
        if not self.path.exists():
            raise InputError("video file not found", path=self.path)
        if self.path.is_dir():
            raise InputError("is a folder, not a video file (for a folder of images use an image "
                             "source)", path=self.path)
        self._container = None
        self._frames = None
        self._open()
        first = next(self._frames, None)
        if first is None:
            self.close()
            reason = "no decodable video frames"
            if self.skipped_frames:
                reason += f" ({self.skipped_frames} packets could not be decoded)"
            raise InputError(reason, path=self.path)
        self.height, self.width = first.image_bgr.shape[:2]
        self._first = first

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> None:
        import av

        try:
            container = av.open(str(self.path), mode="r")
        except av.error.FFmpegError as exc:
            hint = ""
            if self.path.suffix.lower() in (".mp4", ".mov", ".m4v"):
                hint = ("; an MP4/MOV recording that was interrupted has no index (moov atom) "
                        "and cannot be read")
            raise InputError(f"not a readable video ({_ffmpeg_reason(exc)}){hint}",
                             path=self.path) from None
        except OSError as exc:
            raise InputError(f"cannot open video: {exc.strerror or exc}", path=self.path) from None
        if not container.streams.video:
            container.close()
            raise InputError("no video stream in this file", path=self.path)
        stream = container.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count = self.threads
        if self.strict:
            ctx.options = {"err_detect": "explode"}
        try:
            ctx.thread_type = self.thread_type
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"thread_type must be SLICE, FRAME or AUTO, got {self.thread_type!r}") \
                from None
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        self.fps = float(rate) if rate else DEFAULT_FPS
        self.frame_count, self._count_exact = _frame_count(container, stream, self.fps)
        self._container = container
        self._stream = stream
        self._time_base = stream.time_base or Fraction(1, 1)
        self._start_pts = stream.start_time
        self._frames = self._decode()

    # -- decoding --------------------------------------------------------------------------

    def _decode(self) -> Iterator[Frame]:
        import av

        container, stream = self._container, self._stream
        last_index = -1
        pending_errors = 0  # decode errors since the last delivered frame
        demux_errors = 0
        exhausted = False
        packets = container.demux(stream)
        while not exhausted:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.EOFError:
                break
            except (av.error.FFmpegError, OSError):
                # The demuxer lost its way in damaged data; a new generator resumes reading.
                demux_errors += 1
                if demux_errors > _MAX_CONSECUTIVE_DEMUX_ERRORS:
                    self.ended_early = True
                    break
                packets = container.demux(stream)
                continue
            demux_errors = 0
            if packet.size == 0 and packet.pts is None:
                exhausted = True  # the final flush packet: decode() below drains the decoder
            try:
                decoded = packet.decode()
            except (av.error.FFmpegError, ValueError):
                self.skipped_frames += 1
                pending_errors += 1
                continue
            last_index, pending_errors = yield from self._emit(decoded, last_index, pending_errors)
        if not exhausted:
            yield from self._drain(last_index, pending_errors)
            return
        self._check_complete(last_index)

    def _drain(self, last_index: int, pending_errors: int) -> Iterator[Frame]:
        """Frames still buffered in the decoder when the demuxer gave up."""
        import av

        try:
            remaining = self._stream.codec_context.decode(None)
        except (av.error.FFmpegError, ValueError):
            remaining = []
        last_index, _ = yield from self._emit(remaining, last_index, pending_errors)
        self._check_complete(last_index)

    def _emit(self, decoded, last_index: int, pending_errors: int):
        """Yields the decoded pictures as numbered Frames; returns (last_index, pending_errors)."""
        for frame in decoded:
            index, timestamp = self._position(frame, last_index, pending_errors)
            if index > last_index + 1:
                self.missing_frames += index - last_index - 1
            last_index = index
            pending_errors = 0
            yield Frame(index, timestamp, self._to_bgr(frame))
        return last_index, pending_errors

    def _check_complete(self, last_index: int) -> None:
        # A header's frame count is exact; one estimated from the duration may be one off.
        if self.frame_count is not None:
            slack = 0 if self._count_exact else 1
            if last_index + 1 < self.frame_count - slack:
                self.ended_early = True

    def _position(self, frame, last_index: int, pending_errors: int) -> tuple[int, float]:
        """Index and timestamp of a decoded frame, from its pts where the file gives one."""
        pts = frame.pts
        if pts is None:
            index = last_index + 1 + pending_errors
            return index, index / self.fps
        timestamp = float(pts * self._time_base)
        start = self._start_pts if self._start_pts is not None else pts
        index = int(round(float((pts - start) * self._time_base) * self.fps))
        # Never repeat or go back (variable frame rate files, rounding): positions only advance.
        return max(index, last_index + 1), timestamp

    def _to_bgr(self, frame) -> np.ndarray:
        if self.width is not None and (frame.width, frame.height) != (self.width, self.height):
            # A stream that changes size mid-way is scaled to its first frame's size.
            image = frame.to_ndarray(format="bgr24", width=self.width, height=self.height)
        else:
            image = frame.to_ndarray(format="bgr24")
        return np.ascontiguousarray(image)

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        if self._first is None:
            # Second pass: start again from the beginning.
            self.close()
            self.skipped_frames = 0
            self.missing_frames = 0
            self.ended_early = False
            self._open()
        else:
            first, self._first = self._first, None
            yield first
        if self._frames is None:
            return
        yield from self._frames

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        if self._container is not None:
            self._container.close()
            self._container = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"VideoFileSource({str(self.path)!r}, {self.width}x{self.height}, "
                f"{self.fps:g} fps, frames~{self.frame_count})")


def _ffmpeg_reason(exc) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return text.split(":")[0].strip() if text else type(exc).__name__


def _frame_count(container, stream, fps: float) -> tuple[int | None, bool]:
    """(count, exact): from the header if it states one, else estimated from the duration."""
    if stream.frames and stream.frames > 0:
        return int(stream.frames), True
    if stream.duration and stream.time_base:
        return int(round(float(stream.duration * stream.time_base) * fps)), False
    if container.duration:
        return int(round(container.duration / 1_000_000 * fps)), False
    return None, False


# ----------------------------------------------------------------------------------------------
# Images


def natural_key(name: str):
    """Sort key that orders "img2" before "img10"."""
    return [(0, int(t), "") if t.isdigit() else (1, 0, t.lower()) for t in re.split(r"(\d+)", name)]


class ImageFolderSource:
    """Images of a folder, or of a glob pattern, in natural order ("img2" before "img10").

    Timestamps are index / fps.  An unreadable image is skipped and counted (``skipped_frames``);
    its index is kept free.  All images must have the size of the first readable one.
    """

    def __init__(self, spec: str | os.PathLike, fps: float = DEFAULT_FPS):
        spec = str(spec)
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise InputError(f"frame rate must be positive, got {fps!r}", path=spec)
        self.spec = spec
        self.fps = float(fps)
        self.skipped_frames = 0
        if os.path.isdir(spec):
            candidates = [os.path.join(spec, n) for n in os.listdir(spec)]
        elif glob.has_magic(spec):
            candidates = glob.glob(spec)
        elif os.path.isfile(spec):
            candidates = [spec]
        else:
            raise InputError("no such folder, file or pattern", path=spec)
        self.files = sorted((Path(c) for c in candidates
                             if os.path.isfile(c) and Path(c).suffix.lower() in IMAGE_SUFFIXES),
                            key=lambda p: natural_key(p.name))
        if not self.files:
            raise InputError(f"no images found (expected {', '.join(IMAGE_SUFFIXES)})", path=spec)
        self.frame_count = len(self.files)
        first = None
        for f in self.files:
            first = _read_image(f)
            if first is not None:
                break
        if first is None:
            raise InputError("none of the images can be read", path=spec)
        self.height, self.width = first.shape[:2]

    def __iter__(self) -> Iterator[Frame]:
        self.skipped_frames = 0
        for index, f in enumerate(self.files):
            image = _read_image(f)
            if image is None:
                self.skipped_frames += 1
                continue
            if image.shape[:2] != (self.height, self.width):
                raise InputError(f"image is {image.shape[1]}x{image.shape[0]} but the first one is "
                                 f"{self.width}x{self.height}; all images must have one size",
                                 path=f)
            yield Frame(index, index / self.fps, image)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        return False

    def __repr__(self) -> str:
        return f"ImageFolderSource({self.spec!r}, {len(self.files)} images, {self.fps:g} fps)"


def _read_image(path: Path) -> np.ndarray | None:
    """(H, W, 3) uint8 BGR, or None if the file cannot be decoded (grey images become BGR)."""
    import cv2

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError:
        return None
    if data.size == 0:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    return None if image is None else np.ascontiguousarray(image)


# ----------------------------------------------------------------------------------------------
# Cameras


class CameraSource:
    """Live frames from a camera index (0, 1 ...), a device path or a stream URL, through
    cv2.VideoCapture.

    A background thread grabs continuously and keeps only the newest frame: a pipeline slower
    than the camera never works through a backlog of old frames, which is what makes webcam
    trackers lag by hundreds of ms (FIELD-NOTES.md, "Latency").  ``Frame.index`` counts every
    frame grabbed, so frames the pipeline never saw leave gaps (counted in ``dropped_frames``);
    ``timestamp_s`` is the monotonic clock right after the grab (before the image is decoded
    and converted), from ``clock_origin_s``: ``clock_origin_s + timestamp_s`` is the
    ``time.monotonic()`` of the grab, for capture-to-display latency.  Iteration ends, with
    ``disconnected`` True, when the camera stops delivering frames for ``stall_timeout_s``
    (unplugged, stream lost) or the stream ends (then ``ended`` is True too).  The capture is
    released by the grab thread when it stops, never while a read is in progress (a network
    read can block until FFmpeg's read timeout); ``released`` says when that has happened.

    A video FILE given as the camera (for rehearsals and tests) is paced in real time: each frame
    is delivered at its timestamp in the file (``CAP_PROP_POS_MSEC``, else its number / fps)
    after the first, as a camera would, instead of as fast as it decodes.  ``realtime`` forces
    pacing on or off (default: on for regular files only).  Network streams (``scheme://``)
    open with FFmpeg open/read timeouts (``LiveCaptureSettings``) instead of FFmpeg's 30 s.
    ``capture``: an already opened cv2.VideoCapture-like object to use instead of opening
    ``spec`` (tests pass one that fails on purpose).
    """

    def __init__(self, spec: int | str, size: tuple[int, int] | None = None,
                 fps: float | None = None, stall_timeout_s: float = 2.0, realtime: bool | None = None,
                 capture=None):
        import cv2

        self.spec = spec
        self.stall_timeout_s = float(stall_timeout_s)
        self.realtime = os.path.isfile(str(spec)) if realtime is None else bool(realtime)
        index = camera_index(spec)
        name = str(spec) if index is None else f"camera {index}"
        if capture is None and index is None and "://" not in str(spec) and not os.path.exists(str(spec)):
            raise InputError("no such device or file", path=name)
        self._cap = capture if capture is not None else _open_capture(spec)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError("cannot open this camera or stream (no such device, in use, or "
                             "unreachable)", path=name)
        if size is not None:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, int(size[0]))
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, int(size[1]))
        if fps is not None:
            self._cap.set(cv2.CAP_PROP_FPS, float(fps))
        ok, image = self._cap.read()
        if not ok or image is None:
            self._cap.release()
            raise InputError("the camera opened but delivers no frames", path=str(spec))
        self.height, self.width = image.shape[:2]
        reported = self._cap.get(cv2.CAP_PROP_FPS)
        self.fps = float(reported) if reported and reported > 0 else DEFAULT_FPS
        self.frame_count = None
        self.skipped_frames = 0
        self.dropped_frames = 0
        self.disconnected = False
        self.ended = False
        self.clock_origin_s = time.monotonic()
        self._file_t0 = self._file_time_s(0)
        self._stop = threading.Event()
        self._latest = (0, 0.0, np.ascontiguousarray(image))  # (grab number, time, image)
        self._grabbed = 1
        self._running = True
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._grab_loop, name="ar_guide-camera",
                                        daemon=True)
        self._thread.start()

    @property
    def released(self) -> bool:
        """True once the grab thread has stopped and released the capture."""
        return not self._thread.is_alive()

    def _file_time_s(self, grab_number: int) -> float:
        """Timestamp (s) in the file of the frame just grabbed."""
        import cv2

        ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        return ms / 1000.0 if ms and ms > 0 else grab_number / self.fps

    def _grab_loop(self) -> None:
        try:
            while self._running:
                ok = self._cap.grab()
                if ok and self.realtime:
                    # Deliver the frame when a camera would have: at its time in the file.
                    due = self.clock_origin_s + (self._file_time_s(self._grabbed) - self._file_t0)
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                # The capture time is taken at the grab: decoding and colour conversion
                # (retrieve) count as latency.
                now = time.monotonic() - self.clock_origin_s
                image = None
                if ok:
                    ok, image = self._cap.retrieve()
                with self._cond:
                    if not ok or image is None:
                        self.ended = self._running
                        self._cond.notify_all()
                        return
                    self._latest = (self._grabbed, now, image)
                    self._grabbed += 1
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()
            self._cap.release()

    def __iter__(self) -> Iterator[Frame]:
        last = -1
        while True:
            with self._cond:
                deadline = time.monotonic() + self.stall_timeout_s
                while self._latest[0] <= last and self._running:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                index, timestamp, image = self._latest
                if index <= last:
                    # Nothing new: the stream ended, the camera stalled, or close() was called.
                    self.disconnected = not self._stop.is_set()
                    return
            self.dropped_frames += index - last - 1
            last = index
            yield Frame(index, timestamp, np.ascontiguousarray(image))

    def close(self, timeout_s: float | None = None) -> None:
        """Stops the grab thread; waits for it up to ``timeout_s`` (default stall_timeout_s + 1).

        The thread releases the capture itself when its current read returns, so a read blocked
        in a driver or a network stack never sees its capture freed under it.
        """
        self._running = False
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=self.stall_timeout_s + 1.0 if timeout_s is None else timeout_s)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def camera_index(spec: int | str) -> int | None:
    """The camera index that ``spec`` names (0, "1" ...), or None for a device path, file or URL."""
    if isinstance(spec, int):
        return spec
    text = str(spec).strip()
    return int(text) if text.isdigit() else None


def _open_capture(spec: int | str):
    """cv2.VideoCapture of a camera index, a device path, a file or a URL (with FFmpeg timeouts).

    OpenCV's and FFmpeg's own messages are silenced while opening (each backend tried prints its
    failure, a dozen lines for a missing camera, again at every reconnection attempt); the caller
    says what failed in one line.  Setting OPENCV_LOG_LEVEL or OPENCV_FFMPEG_LOGLEVEL in the
    environment brings them back for debugging a camera.
    """
    import cv2

    from ar_guide.constants import LiveCaptureSettings

    # Read once, when OpenCV's FFmpeg backend first starts: -8 is FFmpeg's AV_LOG_QUIET.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    with _quiet_opencv_log():
        index = camera_index(spec)
        if index is not None:
            return cv2.VideoCapture(index)
        text = str(spec)
        if "://" in text:
            settings = LiveCaptureSettings()
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(settings.stream_open_timeout_ms),
                      cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(settings.stream_read_timeout_ms)]
            return cv2.VideoCapture(text, cv2.CAP_FFMPEG, params)
        return cv2.VideoCapture(text)


class _quiet_opencv_log:
    """OpenCV's log level set to silent for a block, unless the user set OPENCV_LOG_LEVEL."""

    def __enter__(self):
        import cv2.utils.logging as cv_log

        self._previous = None
        if "OPENCV_LOG_LEVEL" not in os.environ:
            self._previous = cv_log.getLogLevel()
            cv_log.setLogLevel(cv_log.LOG_LEVEL_SILENT)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            import cv2.utils.logging as cv_log

            cv_log.setLogLevel(self._previous)
        return False


def open_source(spec: str | os.PathLike, fps: float | None = None) -> FrameSource:
    """A video file, a folder of images, a glob pattern ("frames/*.png") or a single image.

    ``fps`` sets the timestamps of image sources (default DEFAULT_FPS); videos use their own.
    """
    text = str(spec)
    if os.path.isdir(text) or glob.has_magic(text) and not os.path.exists(text):
        return ImageFolderSource(text, fps if fps is not None else DEFAULT_FPS)
    path = Path(text)
    if not path.exists():
        raise InputError("no such file or folder", path=text)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageFolderSource(text, fps if fps is not None else DEFAULT_FPS)
    return VideoFileSource(path)


def __getattr__(name: str):
    # LiveCamera and LiveEvent live in ar_guide.io.livecamera (which imports this module).
    if name in ("LiveCamera", "LiveEvent"):
        from ar_guide.io import livecamera

        return getattr(livecamera, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
