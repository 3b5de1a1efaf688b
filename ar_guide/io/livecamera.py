"""The live camera: newest frame only, capture times for latency, and reconnection after a loss.

:class:`LiveCamera` wraps a :class:`~ar_guide.io.sources.CameraSource` (or what ``opener``
returns) and turns it into an endless iterable of :class:`LiveEvent`:

- while the camera delivers, one ``"ok"`` event per new frame, always the newest (the source's
  grab thread drops what the caller was too slow to take; ``dropped_frames`` counts them), with
  ``capture_time_s``, the ``time.monotonic()`` right after the grab, so that the app can measure
  capture-to-display latency;
- when the camera stops delivering for ``stall_timeout_s`` (unplugged, stream dropped, driver
  hung) or its stream ends, ``"lost"`` events at ``LiveCaptureSettings.lost_tick_s`` (10 Hz) with a
  message for the banner ("camera lost 3.2 s ago (no frames for 1.0 s): reconnecting (attempt 3)"),
  so that the window stays alive and the overlay can be hidden.  Meanwhile a background thread
  waits for the old capture to be released, then reopens the camera every ``retry_every_s``;
- when it is back, ``"ok"`` events again, the first one saying so ("camera back after 4.1 s"),
  and, if the camera came back at another size, which (the app must then refuse a calibration
  made at the old size: ``width`` and ``height`` follow the camera).

Losing the camera never raises.  Only the first open, in the constructor, raises InputError (a
wrong index or URL is the user's mistake).  A video FILE used as the camera (rehearsals, tests)
ends the iteration at its end (``ended``) instead of being reopened.

Frame numbers and timestamps run on across reconnections: ``Frame.index`` continues after the
last frame before the loss (the frames the camera may have produced while lost are unknown);
``Frame.timestamp_s`` is ``capture_time_s`` minus the monotonic time at which the LiveCamera
was created.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import Callable, Iterator

from ar_guide.constants import LiveCaptureSettings
from ar_guide.io.sources import CameraSource, Frame

STATUS_OK = "ok"
STATUS_LOST = "lost"


@dataclasses.dataclass(frozen=True, eq=False)
class LiveEvent:
    """One step of the live loop.

    frame : the newest camera frame (index and timestamp_s continuous over reconnections), or
        None while the camera is lost
    capture_time_s : ``time.monotonic()`` right after the frame was grabbed; for a "lost" event,
        when the event was made
    status : "ok" | "lost"
    message : "" for an ordinary frame; the banner text while lost; on the first frame after a
        reconnection, what happened ("camera back after 4.1 s (reconnect 1)")
    """

    frame: Frame | None
    capture_time_s: float
    status: str
    message: str


class _Reconnection:
    """One outage's background work: release the lost capture, then reopen every retry_every_s."""

    def __init__(self, lost_source, open_source: Callable[[], object], retry_every_s: float,
                 release_wait_s: float):
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self.attempts = 0
        self.last_error: str | None = None
        self._source = None
        self._thread = threading.Thread(target=self._run, args=(lost_source, open_source, retry_every_s,
                                                                release_wait_s),
                                        name="ar_guide-reconnect", daemon=True)
        self._thread.start()

    def _run(self, lost_source, open_source, retry_every_s: float, release_wait_s: float) -> None:
        if lost_source is not None:
            _close_quietly(lost_source, release_wait_s)
            # A device that is still held cannot be opened again: wait for the release.
            deadline = time.monotonic() + release_wait_s
            while not getattr(lost_source, "released", True) and time.monotonic() < deadline:
                if self._cancel.wait(0.02):
                    return
        while not self._cancel.is_set():
            started = time.monotonic()
            with self._lock:
                self.attempts += 1
            try:
                source = open_source()
            except Exception as exc:  # any failure to open is one more failed attempt, never a crash
                with self._lock:
                    self.last_error = _one_line(exc)
            else:
                with self._lock:
                    if not self._cancel.is_set():
                        self._source = source
                        return
                _close_quietly(source, 0.5)
                return
            self._cancel.wait(max(0.0, retry_every_s - (time.monotonic() - started)))

    def take(self):
        """The reopened source, once (None until then)."""
        with self._lock:
            source, self._source = self._source, None
            return source

    def cancel(self) -> None:
        with self._lock:
            self._cancel.set()
            source, self._source = self._source, None
        if source is not None:
            _close_quietly(source, 0.5)


class LiveCamera:
    """An iterable of :class:`LiveEvent` that survives the camera's loss (see the module doc).

    spec : camera index (0, 1 ...), device path, video file (paced in real time) or stream URL
    size, fps : asked of the camera (it may deliver another; ``width``, ``height`` and ``fps``
        say what it does)
    stall_timeout_s, retry_every_s : default from ``settings`` (LiveCaptureSettings)
    opener : ``opener(spec, size=..., fps=..., stall_timeout_s=...)`` returns a source like
        CameraSource (iterable of Frame that ends on a stall or the stream's end; ``width``,
        ``height``, ``fps``, ``close()``; optionally ``clock_origin_s``, ``dropped_frames``,
        ``ended``, ``released``) or raises; tests inject one that fails on purpose

    Attributes: ``width``, ``height``, ``fps`` (of the camera as it is now), ``connected``,
    ``reconnects`` (successful reopenings), ``attempts`` (reopenings tried, all outages),
    ``dropped_frames`` (frames grabbed but superseded before the caller took them), ``ended``
    (a video file reached its end), ``last_error`` (why the last reopening failed, or None).
    """

    def __init__(self, spec: int | str, size: tuple[int, int] | None = None, fps: float | None = None,
                 stall_timeout_s: float | None = None, retry_every_s: float | None = None,
                 opener: Callable = CameraSource, settings: LiveCaptureSettings = LiveCaptureSettings()):
        self.spec = spec
        self.settings = settings
        self.stall_timeout_s = float(settings.stall_timeout_s if stall_timeout_s is None else stall_timeout_s)
        self.retry_every_s = float(settings.retry_every_s if retry_every_s is None else retry_every_s)
        self._size = size
        self._fps = fps
        self._opener = opener
        self._is_file = isinstance(spec, (str, os.PathLike)) and os.path.isfile(str(spec))
        self._closed = threading.Event()
        self._t0 = time.monotonic()
        self._source = self._open()  # InputError here: the camera cannot be opened at all
        self.width, self.height, self.fps = int(self._source.width), int(self._source.height), float(self._source.fps)
        self.connected = True
        self.ended = False
        self.reconnects = 0
        self.attempts = 0
        self.last_error: str | None = None
        self._dropped_before = 0
        self._next_index = 0
        self._reconnection: _Reconnection | None = None

    def _open(self):
        return self._opener(self.spec, size=self._size, fps=self._fps, stall_timeout_s=self.stall_timeout_s)

    @property
    def dropped_frames(self) -> int:
        source = self._source
        return self._dropped_before + int(getattr(source, "dropped_frames", 0) if source is not None else 0)

    # -- iteration

    def __iter__(self) -> Iterator[LiveEvent]:
        note = ""
        while not self._closed.is_set():
            source = self._source
            if source is None:
                return
            yield from self._frames(source, note)
            if self._closed.is_set():
                return
            ended = bool(getattr(source, "ended", False))
            if ended and self._is_file:
                self.ended = True
                self.connected = False
                return
            why = "stream ended" if ended else f"no frames for {self.stall_timeout_s:g} s"
            note = yield from self._lost(source, why)

    def _frames(self, source, note: str) -> Iterator[LiveEvent]:
        origin = getattr(source, "clock_origin_s", None)
        base = self._next_index
        for frame in source:
            capture = origin + frame.timestamp_s if origin is not None else time.monotonic()
            index = base + int(frame.index)
            self._next_index = index + 1
            yield LiveEvent(Frame(index, capture - self._t0, frame.image_bgr), capture, STATUS_OK, note)
            note = ""
            if self._closed.is_set():
                return

    def _lost(self, source, why: str) -> Iterator[LiveEvent]:
        """"lost" events until the camera is back; returns the note for its first frame."""
        lost_at = time.monotonic()
        self.connected = False
        self._dropped_before += int(getattr(source, "dropped_frames", 0))
        self._source = None
        job = _Reconnection(source, self._open, self.retry_every_s, self.settings.release_wait_s)
        self._reconnection = job
        attempts_before = self.attempts
        tick = self.settings.lost_tick_s
        try:
            while not self._closed.is_set():
                reopened = job.take()
                self.attempts = attempts_before + job.attempts
                self.last_error = job.last_error or self.last_error
                if reopened is not None:
                    return self._back(reopened, time.monotonic() - lost_at)
                now = time.monotonic()
                if job.attempts == 0:
                    doing = "releasing it"
                else:
                    doing = f"reconnecting (attempt {job.attempts})"
                yield LiveEvent(None, now, STATUS_LOST, f"camera lost {now - lost_at:.1f} s ago ({why}): {doing}")
                self._closed.wait(tick)
        finally:
            if self._source is None:
                job.cancel()
            self._reconnection = None
        return ""

    def _back(self, source, outage_s: float) -> str:
        self.reconnects += 1
        self.connected = True
        self._source = source
        note = f"camera back after {outage_s:.1f} s (reconnect {self.reconnects})"
        size = (int(source.width), int(source.height))
        if size != (self.width, self.height):
            note += f" at {size[0]}x{size[1]} (was {self.width}x{self.height})"
        self.width, self.height, self.fps = size[0], size[1], float(source.fps)
        return note

    def close(self) -> None:
        """Stops the iteration and releases the camera (also while lost); idempotent."""
        self._closed.set()
        job = self._reconnection
        if job is not None:
            job.cancel()
        source = self._source
        if source is not None:
            _close_quietly(source, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        state = "connected" if self.connected else ("ended" if self.ended else "lost")
        return f"LiveCamera({self.spec!r}, {self.width}x{self.height}, {self.fps:g} fps, {state})"


def _close_quietly(source, timeout_s: float | None) -> None:
    try:
        if timeout_s is not None:
            try:
                source.close(timeout_s=timeout_s)
                return
            except TypeError:  # an opener's source whose close() takes no timeout
                pass
        source.close()
    except Exception:  # closing a dead device may fail; it is being replaced anyway
        pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
