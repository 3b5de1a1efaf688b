"""The live session's recording: raw video, frame timestamps, pose log and overlay video, crash-safe.

:class:`Recorder` writes the folder described in :mod:`ar_guide.io.recording`.  Two rules:

- It never slows the live loop.  :meth:`Recorder.write` copies the two images and queues them;
  one writer thread encodes (H.264, one encoder thread each, so recording takes at most about one
  core).  When RecorderSettings.max_queue_frames are waiting, further frames are dropped from the
  *recording* (their rows say "dropped", their poses are still logged) instead of making the
  display wait.
- A crash, kill -9 or power cut loses at most about the last second.  The videos are cut into
  segments of RecorderSettings.segment_s, each closed with its index; inside the open segment
  a Matroska cluster reaches the file every RecorderSettings.cluster_ms.  frames.csv,
  poses.csv and segments.csv are flushed every row and fsync'ed every
  RecorderSettings.fsync_every_s, finished segments when they close.  Nothing is an index
  written only at the end: recording.json is complete from the start (its final counts are an
  addition).

A write error (disk full, a removed drive, a file-size limit) stops the recording, never the
live loop: the writer keeps what is on disk, and :attr:`Recorder.error` says what happened in
one line ("recording stopped: No space left on device (/media/usb/rec/raw/seg_00012.mkv)")
for the app's banner.  Only the constructor raises (InputError: the folder cannot be created or
already holds files).
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import datetime
import os
import platform
import threading
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

from ar_guide import __version__
from ar_guide.constants import RecorderSettings
from ar_guide.errors import InputError
from ar_guide.io.poselog import PoseLogWriter
from ar_guide.io.recording import (DROPPED, FORMAT, FORMAT_VERSION, FRAME_COLUMNS, FRAMES_CSV, OVERLAY_DIR,
                                   POSES_CSV, RAW_DIR, RECORDED, RECORDING_JSON, SEGMENT_COLUMNS, SEGMENTS_CSV,
                                   RecordingInfo, open_recording, segment_name)
from ar_guide.io.report import write_json
from ar_guide.io.writers import add_h264_stream

__all__ = ["Recorder", "RecordingInfo", "open_recording"]

_TIME_BASE = Fraction(1, 1000)   # Matroska's own: timestamps in ms


@dataclasses.dataclass(frozen=True, eq=False)
class _Item:
    frame: int
    timestamp_s: float
    capture_time_s: float
    states: dict
    raw_bgr: np.ndarray | None      # None: dropped from the recording
    overlay_bgr: np.ndarray | None


_STOP = object()


@dataclasses.dataclass(frozen=True)
class _Refuse:
    """Queued by write() for a frame it cannot record: the frames before it are written, then the
    recording stops with ``message``."""

    message: str


class _VideoSegmentFile:
    """One H.264/Matroska segment file, frames encoded as they come."""

    def __init__(self, path: Path, fps: float, size: tuple[int, int], crf: int, settings: RecorderSettings):
        import av

        self.path = path
        self.frames = 0
        self._container = av.open(str(path), mode="w", format="matroska",
                                  options={"cluster_time_limit": str(int(settings.cluster_ms)), "flush_packets": "1"})
        try:
            # zerolatency: no look-ahead, no B-frames, so a frame's packet is written at once.
            stream = add_h264_stream(self._container, fps, size,
                                     {"crf": str(int(crf)), "preset": settings.preset, "tune": "zerolatency"},
                                     time_base=_TIME_BASE, threads=settings.encoder_threads)
        except BaseException:
            self._container.close()
            raise
        self._stream = stream

    def encode(self, image_bgr: np.ndarray, pts_ms: int) -> None:
        import av

        picture = av.VideoFrame.from_ndarray(image_bgr, format="bgr24")
        picture.pts = int(pts_ms)
        picture.time_base = _TIME_BASE
        for packet in self._stream.encode(picture):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> int:
        """Flushes the encoder and writes the index; returns the file's size (bytes)."""
        try:
            for packet in self._stream.encode():
                self._container.mux(packet)
        finally:
            self._container.close()
        _fsync_path(self.path)
        return self.path.stat().st_size

    def abandon(self) -> None:
        """Closes after a write error, keeping what reached the file."""
        try:
            self._container.close()
        except Exception:  # the error that brought us here may strike again
            pass


class Recorder:
    """Writes a live session to ``folder`` (see the module doc and ar_guide.io.recording).

    folder : created; must not exist or be empty (a recording is never overwritten)
    fps : the camera's nominal frame rate (the encoders' rate hint; frames keep their own times)
    size : (width, height) px of both the raw and the overlay frames, even numbers (H.264)
    bodies : names of the tracked bodies (reference first), for recording.json
    metadata : what the app adds to recording.json under "session" (camera, scene, calibration ...)

    Attributes: ``error`` (None, or one line: why recording stopped), ``frames_written`` (frames
    in the videos), ``frames_dropped`` (frames dropped from the videos because the writer was
    behind), ``segments`` (finished segments), ``folder``.
    """

    def __init__(self, folder: str | os.PathLike, fps: float, size: tuple[int, int], bodies: list[str],
                 settings: RecorderSettings = RecorderSettings(), metadata: dict | None = None):
        self.folder = Path(folder)
        self.settings = settings
        width, height = (int(v) for v in size)
        if width <= 0 or height <= 0 or width % 2 or height % 2:
            raise InputError(f"cannot record {width}x{height}: H.264 needs an even frame size", path=self.folder)
        if not (isinstance(fps, (int, float)) and fps > 0):
            raise InputError(f"cannot record at frame rate {fps!r}: expected a positive number", path=self.folder)
        self.size = (width, height)
        self.fps = float(fps)
        self.bodies = [str(b) for b in bodies]
        self.error: str | None = None
        self.frames_written = 0
        self.frames_dropped = 0
        self.segments = 0
        self._metadata = dict(metadata or {})
        self._unix_minus_monotonic = time.time() - time.monotonic()
        self._files: list = []
        try:
            if self.folder.exists() and (not self.folder.is_dir() or any(self.folder.iterdir())):
                raise InputError("already exists and is not an empty folder: a recording needs a new folder "
                                 "(recordings are never overwritten)", path=self.folder)
            for sub in (RAW_DIR, OVERLAY_DIR):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self._started = datetime.datetime.now(datetime.timezone.utc)
            self._write_description(state="recording")
            self._frames_file = self._open_csv(FRAMES_CSV, FRAME_COLUMNS)
            self._segments_file = self._open_csv(SEGMENTS_CSV, SEGMENT_COLUMNS)
            self._poses = PoseLogWriter(self.folder / POSES_CSV)
        except OSError as exc:
            self._close_files()
            raise InputError(f"cannot record here: {exc.strerror or exc}", path=self.folder) from None
        except InputError:
            self._close_files()
            raise
        self._frames_csv = csv.writer(self._frames_file, lineterminator="\n")
        self._segments_csv = csv.writer(self._segments_file, lineterminator="\n")
        self._sync_paths = [self.folder / FRAMES_CSV, self.folder / POSES_CSV]
        self._last_sync = time.monotonic()
        self._path = self.folder          # what the writer is writing, for the error message
        self._segment: list[_VideoSegmentFile] | None = None
        self._segment_number = -1
        self._segment_rows: list[tuple[int, float]] = []
        self._first_timestamp_s: float | None = None
        self._last_timestamp_s: float | None = None
        self._last_pts = -1
        self._queue: collections.deque = collections.deque()
        self._queued_images = 0
        self._cond = threading.Condition()
        self._closed = False
        self._refused = False
        self._thread = threading.Thread(target=self._run, name="ar_guide-recorder", daemon=True)
        self._thread.start()

    # -- the live loop's side

    def write(self, frame, capture_time_s: float, raw_bgr: np.ndarray, overlay_bgr: np.ndarray,
              states: dict) -> None:
        """Queues one frame; never blocks on the disk and never raises.

        frame : the Frame (its ``index`` and ``timestamp_s`` are recorded)
        capture_time_s : time.monotonic() of the grab
        raw_bgr, overlay_bgr : (H, W, 3) uint8 BGR, the camera's image and the overlay shown;
            copied (the caller may reuse them)
        states : {body name: BodyState} of this frame, for the pose log
        """
        if self._closed or self.error is not None or self._refused:
            return
        expected = (self.size[1], self.size[0], 3)
        for image in (raw_bgr, overlay_bgr):
            if getattr(image, "shape", None) != expected or image.dtype != np.uint8:
                shape = getattr(image, "shape", None)
                got = f"{shape[1]}x{shape[0]}" if shape is not None and len(shape) >= 2 else repr(shape)
                self._refused = True
                with self._cond:
                    self._queue.append(_Refuse(f"recording stopped: a frame of {got} in a {self.size[0]}x"
                                               f"{self.size[1]} recording (the camera changed its size)"))
                    self._cond.notify_all()
                return
        with self._cond:
            keep = self._queued_images < self.settings.max_queue_frames
            if keep:
                self._queued_images += 1
        raw = overlay = None
        if keep:
            raw = np.array(raw_bgr, dtype=np.uint8, order="C", copy=True)
            overlay = np.array(overlay_bgr, dtype=np.uint8, order="C", copy=True)
        else:
            self.frames_dropped += 1
        item = _Item(int(frame.index), float(frame.timestamp_s), float(capture_time_s), dict(states), raw, overlay)
        with self._cond:
            self._queue.append(item)
            self._cond.notify_all()

    def close(self) -> None:
        """Writes what is queued, finishes the segment and recording.json; never raises."""
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._queue.append(_STOP)
            self._cond.notify_all()
        self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    @property
    def queued(self) -> int:
        """Frames with images waiting for the writer."""
        with self._cond:
            return self._queued_images

    # -- the writer thread

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                item = self._queue.popleft()
            if item is _STOP:
                break
            if isinstance(item, _Refuse):
                if self.error is None:
                    try:
                        self._finish_segment()   # a clean end: the files are fine
                    except Exception as exc:
                        self._fail(exc)
                    self._set_error(item.message)
                continue
            if self.error is None:
                try:
                    self._handle(item)
                except Exception as exc:  # disk full, drive removed, encoder failure: stop recording only
                    self._fail(exc)
            if item.raw_bgr is not None:
                with self._cond:
                    self._queued_images -= 1
        self._finish()

    def _handle(self, item: _Item) -> None:
        if self._first_timestamp_s is None:
            self._first_timestamp_s = item.timestamp_s
        self._last_timestamp_s = item.timestamp_s
        capture_unix = item.capture_time_s + self._unix_minus_monotonic
        if item.raw_bgr is not None:
            if self._segment is None or \
                    item.timestamp_s - self._segment_rows[0][1] >= self.settings.segment_s:
                self._next_segment()
            # Each segment is an ordinary video starting at 0 (a player shows it right on its own).
            pts = max(int(round((item.timestamp_s - self._segment_rows[0][1]) * 1000.0)) if self._segment_rows
                      else 0, self._last_pts + 1)
            # The row first: every picture that reaches a file has its row (rows are flushed at once).
            self._frame_row(item, capture_unix, RECORDED, self._segment_number, pts)
            for video, image in zip(self._segment, (item.raw_bgr, item.overlay_bgr)):
                self._path = video.path
                video.encode(image, pts)
            self._last_pts = pts
            self._segment_rows.append((item.frame, item.timestamp_s))
            self.frames_written += 1
        else:
            self._frame_row(item, capture_unix, DROPPED, "", "")
        self._path = self.folder / POSES_CSV
        for name, state in item.states.items():
            status = state.status.value if hasattr(state.status, "value") else str(state.status)
            self._poses.write(item.frame, item.timestamp_s, name, status,
                              state.camera_from_body if status == "OK" else None,
                              state.reprojection_rms_px, state.markers_used, state.reason)
        now = time.monotonic()
        if now - self._last_sync >= self.settings.fsync_every_s:
            for path in self._sync_paths:
                self._path = path
                _fsync_path(path)
            self._last_sync = now

    def _frame_row(self, item: _Item, capture_unix: float, status: str, segment, pts) -> None:
        self._path = self.folder / FRAMES_CSV
        self._frames_csv.writerow([item.frame, f"{item.timestamp_s:.6f}", f"{item.capture_time_s:.6f}",
                                   f"{capture_unix:.6f}", status, segment, pts])
        self._frames_file.flush()

    def _next_segment(self) -> None:
        self._finish_segment()
        self._segment_number += 1
        name = segment_name(self._segment_number)
        videos = []
        try:
            for sub, crf in ((RAW_DIR, self.settings.raw_crf), (OVERLAY_DIR, self.settings.overlay_crf)):
                self._path = self.folder / sub / name
                videos.append(_VideoSegmentFile(self._path, self.fps, self.size, crf, self.settings))
        except BaseException:
            for video in videos:
                video.abandon()
            raise
        self._segment = videos
        self._segment_rows = []
        self._last_pts = -1

    def _finish_segment(self) -> None:
        if self._segment is None:
            return
        videos, self._segment = self._segment, None
        sizes = []
        try:
            for video in videos:
                self._path = video.path
                sizes.append(video.close())
        except BaseException:
            for video in videos[len(sizes) + 1:]:
                video.abandon()
            raise
        rows = self._segment_rows
        self._path = self.folder / SEGMENTS_CSV
        self._segments_csv.writerow([self._segment_number, rows[0][0], rows[-1][0], len(rows),
                                     f"{rows[0][1]:.6f}", f"{rows[-1][1]:.6f}", *sizes])
        self._segments_file.flush()
        os.fsync(self._segments_file.fileno())
        self.segments += 1

    def _fail(self, exc: BaseException) -> None:
        reason = getattr(exc, "strerror", None)   # OSError and PyAV's errors: "No space left on device"
        if not reason:
            text = str(exc).strip()
            reason = f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__
        self._set_error(f"recording stopped: {reason} ({self._path})")
        if self._segment is not None:
            for video in self._segment:
                video.abandon()
            self._segment = None

    def _set_error(self, message: str) -> None:
        if self.error is None:
            self.error = message

    def _finish(self) -> None:
        """End of the writer thread: the last segment, the files, the final recording.json."""
        if self.error is None:
            try:
                self._finish_segment()
                for path in self._sync_paths:
                    self._path = path
                    _fsync_path(path)
            except Exception as exc:
                self._fail(exc)
        elif self._segment is not None:
            for video in self._segment:
                video.abandon()
            self._segment = None
        self._close_files()
        try:
            self._write_description(state="closed")
        except (InputError, OSError):
            pass  # the disk is full or gone: the description written at the start stands

    # -- files

    def _open_csv(self, name: str, columns):
        f = open(self.folder / name, "w", newline="", encoding="utf-8")
        self._files.append(f)
        csv.writer(f, lineterminator="\n").writerow(columns)
        f.flush()
        return f

    def _close_files(self) -> None:
        for f in self._files:
            try:
                f.close()
            except OSError:
                pass
        self._files = []
        poses = getattr(self, "_poses", None)
        if poses is not None:
            try:
                poses.close()
            except OSError:
                pass

    def _write_description(self, state: str) -> None:
        description = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "state": state,
            "started_utc": self._started.isoformat(timespec="milliseconds"),
            "fps": self.fps, "size": list(self.size), "bodies": self.bodies,
            "files": {"frames": FRAMES_CSV, "poses": POSES_CSV, "segments": SEGMENTS_CSV,
                      "raw_video": f"{RAW_DIR}/seg_NNNNN.mkv", "overlay_video": f"{OVERLAY_DIR}/seg_NNNNN.mkv"},
            "video": {"container": "matroska", "codec": "h264", "raw_crf": self.settings.raw_crf,
                      "overlay_crf": self.settings.overlay_crf, "preset": self.settings.preset,
                      "segment_s": self.settings.segment_s, "cluster_ms": self.settings.cluster_ms,
                      "timestamps": "pts in ms from the segment's first frame (frames.csv pts_ms)"},
            "session": self._metadata,
            "versions": _versions(),
        }
        if state == "closed":
            description.update({
                "closed_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
                "frames_recorded": self.frames_written, "frames_dropped": self.frames_dropped,
                "segments": self.segments, "first_timestamp_s": self._first_timestamp_s,
                "last_timestamp_s": self._last_timestamp_s, "error": self.error})
        write_json(self.folder / RECORDING_JSON, description)


def _fsync_path(path: Path) -> None:
    """fsync a file by name (Linux and macOS accept a read-only descriptor)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _versions() -> dict:
    import av
    import cv2

    return {"ar_guide": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "opencv": cv2.__version__, "pyav": av.__version__,
            "libavcodec": ".".join(str(v) for v in av.library_versions.get("libavcodec", ())),
            "platform": platform.platform()}
