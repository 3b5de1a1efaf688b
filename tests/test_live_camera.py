"""The live camera (ar_guide.io.livecamera): newest frame only, capture times, loss and reconnection.

The camera is a fake cv2.VideoCapture behind the real CameraSource (its grab thread, newest-frame
slot and stall detection all run): it numbers its frames in the pixels, and can stall (a dropped
network stream: grab blocks), be unplugged (grab fails, like V4L2 after a USB unplug), refuse to
open, raise from the opener, and come back, at another size if asked.
"""

from __future__ import annotations

import re
import threading
import time

import cv2
import numpy as np
import pytest

from ar_guide.constants import LiveCaptureSettings
from ar_guide.errors import InputError
from ar_guide.io.sources import CameraSource, LiveCamera, LiveEvent
from ar_guide.io.writers import VideoWriter


class FakeDevice:
    """A camera that produces numbered frames at ``fps`` and fails on command."""

    def __init__(self, size=(64, 48), fps=50.0):
        self.size = size
        self.fps = fps
        self.lock = threading.Lock()
        self.plugged = True      # False: opening fails; open captures' grab fails
        self.stalled = False     # True: opening fails; open captures' grab blocks
        self.generation = 0      # bumped when the device comes back: older captures are dead
        self.produced = 0        # frames grabbed so far, all captures together
        self.raise_on_open: Exception | None = None
        self.captures: list[FakeCapture] = []
        self.opens = 0

    def opener(self, spec, size=None, fps=None, stall_timeout_s=1.0):
        with self.lock:
            self.opens += 1
        if self.raise_on_open is not None:
            raise self.raise_on_open
        capture = FakeCapture(self)
        self.captures.append(capture)
        return CameraSource(spec, stall_timeout_s=stall_timeout_s, realtime=False, capture=capture)

    def come_back(self, size=None):
        with self.lock:
            if size is not None:
                self.size = size
            self.generation += 1
            self.plugged = True
            self.stalled = False


class FakeCapture:
    """The cv2.VideoCapture methods CameraSource uses."""

    def __init__(self, device: FakeDevice):
        self.device = device
        self.generation = device.generation
        self.opened = device.plugged and not device.stalled
        self.released = False
        self.size = device.size
        self.next_due = time.monotonic()
        self.number = 0

    def isOpened(self):
        return self.opened

    def grab(self):
        d = self.device
        while True:
            if self.generation != d.generation or not d.plugged:
                return False
            if not d.stalled:
                break
            time.sleep(0.005)     # a stalled read blocks
        delay = self.next_due - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self.next_due += 1.0 / d.fps
        with d.lock:
            d.produced += 1
            self.number = d.produced
        return True

    def retrieve(self):
        image = np.zeros((self.size[1], self.size[0], 3), np.uint8)
        image[..., 0] = self.number & 0xFF
        image[..., 1] = (self.number >> 8) & 0xFF
        return True, image

    def read(self):
        if not self.grab():
            return False, None
        return self.retrieve()

    def get(self, prop):
        return self.device.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop, value):
        return False

    def release(self):
        self.released = True


def number_of(image) -> int:
    return int(image[0, 0, 0]) | int(image[0, 0, 1]) << 8


def compress(statuses):
    out = []
    for s in statuses:
        if not out or out[-1] != s:
            out.append(s)
    return out


def drive(camera, script, until_s, work_s=0.0, device=None):
    """Iterates ``camera`` until ``until_s``, running ``script`` [(at_s, action)] on a timer thread.

    Returns [(event, receipt monotonic time, frames the device had produced at receipt)].
    ``work_s``: time spent per frame (a slow pipeline)."""
    start = time.monotonic()

    def run_script():
        for at, action in script:
            time.sleep(max(0.0, start + at - time.monotonic()))
            action()

    timer = threading.Thread(target=run_script, daemon=True)
    timer.start()
    log = []
    for event in camera:
        now = time.monotonic()
        log.append((event, now, device.produced if device is not None else None))
        if now - start > until_s:
            break
        if event.status == "ok" and work_s:
            time.sleep(work_s)
    timer.join(5)
    return log


# ---------------------------------------------------------------------------------------------

def test_stall_then_reconnect_newest_frames_and_no_backlog():
    device = FakeDevice(fps=50.0)

    def stall():
        device.stalled = True

    # The stalled read never returns while the stall lasts: reopen after 0.2 s without its release.
    camera = LiveCamera("fake://camera", opener=device.opener, stall_timeout_s=0.3, retry_every_s=0.2,
                        settings=LiveCaptureSettings(release_wait_s=0.2))
    # A pipeline that takes 30 ms a frame against a 20 ms camera: it must see the newest frame,
    # never a queue.
    log = drive(camera, [(0.8, stall), (2.3, device.come_back)], until_s=3.5, work_s=0.03, device=device)
    assert camera.connected and camera.reconnects == 1
    camera.close()

    events = [e for e, _, _ in log]
    assert all(isinstance(e, LiveEvent) for e in events)
    assert compress([e.status for e in events]) == ["ok", "lost", "ok"]
    lost = [e for e in events if e.status == "lost"]
    assert len(lost) >= 5                                  # ~10 Hz over a ~1.2 s outage
    assert all(e.frame is None for e in lost)
    pattern = re.compile(r"camera lost \d+\.\d s ago \(no frames for 0.3 s\): "
                         r"(releasing it|reconnecting \(attempt (\d+)\))$")
    attempts = []
    for e in lost:
        found = pattern.match(e.message)
        assert found, e.message
        attempts.append(int(found.group(2) or 0))
    assert attempts[0] == 0 and lost[0].message.endswith(": releasing it")
    assert attempts == sorted(attempts) and attempts[-1] >= 2     # opens failed while it stalled
    assert camera.attempts >= 2 and camera.last_error is not None
    assert "cannot open this camera or stream" in camera.last_error
    back = events[events.index(lost[-1]) + 1]
    assert re.fullmatch(r"camera back after \d+\.\d s \(reconnect 1\)", back.message)
    assert all(e.message == "" for e in events if e.status == "ok" and e is not back)

    ok = [(e, t, produced) for e, t, produced in log if e.status == "ok"]
    indices = [e.frame.index for e, _, _ in ok]
    assert indices == sorted(set(indices))                 # continuous numbering over the reconnection
    # Every gap is a frame the camera delivered but the slow loop never took.
    assert sum(b - a - 1 for a, b in zip(indices, indices[1:])) + indices[0] == camera.dropped_frames
    assert camera.dropped_frames > len(indices) // 4
    for e, receipt, produced in ok:
        # Newest frame: at most the frame being grabbed, and one more on a busy machine, came after it.
        assert number_of(e.frame.image_bgr) >= produced - 2
        # Capture time: the grab, before receipt, and the frame's timestamp on the same clock.
        assert e.capture_time_s <= receipt
        # Never a backlog: one frame period plus scheduling, however long the loop ran.  A queue
        # would add 10 ms a frame (30 ms work against 20 ms frames), 0.5 s after 50 frames.
        assert receipt - e.capture_time_s < 1.0 / device.fps + 0.1
    offsets = [e.capture_time_s - e.frame.timestamp_s for e, _, _ in ok]
    assert max(offsets) - min(offsets) < 1e-9
    # No backlog after the reconnection either: the first frame back is a fresh one.
    first_back = next(i for i, (e, _, _) in enumerate(ok) if e is back)
    assert number_of(back.frame.image_bgr) >= ok[first_back][2] - 2
    # The stalled capture was released once its read returned, before the camera was reopened.
    assert device.captures[0].released


def test_unplug_and_replug_at_another_size():
    device = FakeDevice(size=(64, 48), fps=40.0)

    def unplug():
        device.plugged = False

    camera = LiveCamera("fake://camera", opener=device.opener, stall_timeout_s=0.5, retry_every_s=0.1)
    log = drive(camera, [(0.4, unplug), (1.0, lambda: device.come_back(size=(80, 60)))], until_s=1.6,
                device=device)
    camera.close()
    events = [e for e, _, _ in log]
    assert compress([e.status for e in events]) == ["ok", "lost", "ok"]
    lost = [e for e in events if e.status == "lost"]
    # An unplugged camera fails at once (no stall timeout to wait for).
    assert all("(stream ended)" in e.message for e in lost)
    back = events[events.index(lost[-1]) + 1]
    assert back.message.endswith(" at 80x60 (was 64x48)")
    assert (camera.width, camera.height) == (80, 60)
    before = [e for e in events[:events.index(lost[0])]]
    after = events[events.index(back):]
    assert all(e.frame.image_bgr.shape == (48, 64, 3) for e in before)
    assert all(e.frame.image_bgr.shape == (60, 80, 3) for e in after)


def test_an_opener_that_raises_never_reaches_the_loop():
    device = FakeDevice(fps=40.0)

    def crash():
        device.raise_on_open = RuntimeError("driver crashed\nsecond line")
        device.plugged = False

    def recover():
        device.raise_on_open = None
        device.come_back()

    camera = LiveCamera("fake://camera", opener=device.opener, stall_timeout_s=0.3, retry_every_s=0.1)
    log = drive(camera, [(0.3, crash), (1.0, recover)], until_s=1.5, device=device)
    camera.close()
    assert compress([e.status for e, _, _ in log]) == ["ok", "lost", "ok"]
    assert camera.last_error == "driver crashed"
    assert camera.attempts >= 3 and camera.reconnects == 1


def test_close_while_lost_ends_the_iteration_and_releases_everything():
    device = FakeDevice(fps=40.0)
    camera = LiveCamera("fake://camera", opener=device.opener, stall_timeout_s=0.2, retry_every_s=0.1)

    def unplug():
        device.plugged = False

    events = []
    closed_at = []

    def close_later():
        time.sleep(0.8)
        closed_at.append(time.monotonic())
        camera.close()

    threading.Timer(0.3, unplug).start()
    closer = threading.Thread(target=close_later)
    closer.start()
    for event in camera:
        events.append(event)
    ended = time.monotonic()
    closer.join()
    assert events[-1].status == "lost"
    assert ended - closed_at[0] < 0.5        # within a lost tick or two, not a retry cycle
    device.come_back()                       # too late: nothing may be reopened after close
    time.sleep(0.3)
    assert all(c.released or not c.opened for c in device.captures)


def test_camera_source_never_releases_under_a_blocked_read():
    device = FakeDevice(fps=40.0)
    capture = FakeCapture(device)
    source = CameraSource("fake://camera", stall_timeout_s=0.2, realtime=False, capture=capture)
    device.stalled = True
    time.sleep(0.1)
    source.close(timeout_s=0.1)             # returns although the grab thread is stuck in grab()
    assert not capture.released and not source.released
    device.come_back()                      # the read returns (failing): now the thread lets go
    deadline = time.monotonic() + 5
    while not capture.released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert capture.released and source.released


def test_a_video_file_as_the_camera_ends_instead_of_reconnecting(tmp_path):
    path = tmp_path / "take.avi"
    with VideoWriter(path, 30.0, (64, 48)) as writer:
        for k in range(12):
            writer.write(np.full((48, 64, 3), k * 20, np.uint8))
    camera = LiveCamera(str(path))
    events = list(camera)
    camera.close()
    assert events and all(e.status == "ok" for e in events)
    assert camera.ended and not camera.connected and camera.reconnects == 0
    # Paced in real time: consecutive captures about one frame period apart on average.
    captures = [e.capture_time_s for e in events]
    assert captures == sorted(captures)
    assert captures[-1] - captures[0] >= (events[-1].frame.index - events[0].frame.index - 1) / 30.0 - 0.02


def test_a_camera_that_cannot_be_opened_is_a_user_error():
    device = FakeDevice()
    device.plugged = False
    with pytest.raises(InputError, match="fake://camera: cannot open this camera or stream"):
        LiveCamera("fake://camera", opener=device.opener)


def test_a_network_stream_that_ends_and_whose_server_goes_away_is_reopened(tmp_path):
    """A real HTTP stream through OpenCV's FFmpeg backend: its end and a dead server are losses
    (a URL is never "the end of the rehearsal"), and the camera comes back with the server."""
    import functools
    import http.server

    with VideoWriter(tmp_path / "stream.mkv", 30.0, (64, 48)) as writer:
        for k in range(20):
            writer.write(np.full((48, 64, 3), k * 10, np.uint8))

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def serve(port=0):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port),
                                                 functools.partial(Handler, directory=str(tmp_path)))
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    server = serve()
    port = server.server_address[1]
    camera = LiveCamera(f"http://127.0.0.1:{port}/stream.mkv", stall_timeout_s=0.3, retry_every_s=0.1)
    statuses, errors_while_down = [], []
    state = {"server": server, "phase": "up"}
    started = time.monotonic()
    for event in camera:
        statuses.append(event.status)
        if camera.reconnects >= 1 and state["phase"] == "up":
            state["server"].shutdown()
            state["server"].server_close()
            state["phase"], state["down_at"] = "down", time.monotonic()
        elif state["phase"] == "down" and time.monotonic() - state["down_at"] > 0.8:
            errors_while_down.append(camera.last_error)
            state["server"] = serve(port)
            state["phase"] = "back"
        elif state["phase"] == "back" and event.status == "ok" and camera.reconnects >= 2:
            break
        assert time.monotonic() - started < 20, statuses
    camera.close()
    state["server"].shutdown()
    state["server"].server_close()
    assert compress(statuses)[:5] == ["ok", "lost", "ok", "lost", "ok"]
    assert camera.reconnects >= 2 and not camera.ended
    assert "cannot open this camera or stream" in errors_while_down[0]
