"""Work on a background thread where the newest input wins: the live loops' detector.

A live preview must never wait for detection, and detection must never work through a backlog
of old frames (FIELD-NOTES.md, "Latency": buffered frames make webcam trackers lag by 250-500 ms).
:class:`LatestWorker` runs one function on a worker thread; :meth:`~LatestWorker.submit` replaces
any input that is still waiting (it is dropped, and counted), and :meth:`~LatestWorker.latest`
returns the newest finished result at once.  The preview then shows every camera frame with the
last result drawn on it, marked stale when it is old.

An exception in the function is not swallowed: it is re-raised in the caller's thread by the next
``latest``, ``wait`` or ``submit``.

Used by ``calibrate run --camera`` and ``calibrate check --camera``; the live overlay reuses it.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any, Callable


@dataclasses.dataclass(frozen=True, eq=False)
class WorkResult:
    """One finished piece of work.

    sequence : 1, 2, 3 ... in order of completion (tells a new result from one seen before)
    index, timestamp_s : what the input was submitted with (frame index, capture time, s)
    value : what the function returned
    started_s, finished_s : ``time.monotonic()`` when the worker began and finished it
    """

    sequence: int
    index: int
    timestamp_s: float
    value: Any
    started_s: float
    finished_s: float

    @property
    def duration_s(self) -> float:
        """Time the function took (s)."""
        return self.finished_s - self.started_s

    def age_s(self, now_s: float | None = None) -> float:
        """Time since the result was ready (s), on the monotonic clock."""
        return (time.monotonic() if now_s is None else now_s) - self.finished_s


class LatestWorker:
    """Runs ``function(item)`` on one background thread, newest submitted item first.

    ``submitted``, ``processed`` and ``dropped`` count the items given, run, and replaced before
    they were run.  Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, function: Callable[[Any], Any], name: str = "ar_guide-worker"):
        self._function = function
        self._cond = threading.Condition()
        self._pending: tuple[Any, int, float] | None = None
        self._latest: WorkResult | None = None
        self._busy = False
        self._error: BaseException | None = None
        self._running = True
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: Any, index: int = 0, timestamp_s: float = 0.0) -> None:
        """Queue ``item``, replacing any item not yet started (that one is dropped)."""
        self._raise_pending_error()
        with self._cond:
            if self._pending is not None:
                self.dropped += 1
            self._pending = (item, int(index), float(timestamp_s))
            self.submitted += 1
            self._cond.notify_all()

    def latest(self) -> WorkResult | None:
        """The newest finished result (None before the first); never blocks."""
        self._raise_pending_error()
        with self._cond:
            return self._latest

    def busy(self) -> bool:
        """True while an item is being processed or waits to be."""
        with self._cond:
            return self._busy or self._pending is not None

    def wait(self, timeout_s: float | None = None) -> WorkResult | None:
        """Blocks until nothing is pending or running (or the timeout); returns the newest result."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while (self._busy or self._pending is not None) and self._error is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
        self._raise_pending_error()
        with self._cond:
            return self._latest

    def close(self) -> None:
        """Stops the thread after the item in progress (pending items are dropped)."""
        with self._cond:
            self._running = False
            self._pending = None
            self._cond.notify_all()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    # -- the thread

    def _loop(self) -> None:
        sequence = 0
        while True:
            with self._cond:
                while self._pending is None and self._running:
                    self._cond.wait()
                if not self._running:
                    return
                item, index, timestamp = self._pending
                self._pending = None
                self._busy = True
            started = time.monotonic()
            try:
                value = self._function(item)
            except BaseException as exc:  # handed to the caller's thread, not lost
                with self._cond:
                    self._error = exc
                    self._busy = False
                    self._running = False
                    self._cond.notify_all()
                return
            finished = time.monotonic()
            sequence += 1
            with self._cond:
                self._latest = WorkResult(sequence, index, timestamp, value, started, finished)
                self.processed += 1
                self._busy = False
                self._cond.notify_all()

    def _raise_pending_error(self) -> None:
        with self._cond:
            error, self._error = self._error, None
        if error is not None:
            raise error
