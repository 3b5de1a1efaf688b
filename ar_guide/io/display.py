"""On-screen windows, only where a display exists.

OpenCV's GUI aborts the whole process (uncatchably) when it cannot reach a display, so every
window goes through :func:`has_display` first.
"""

from __future__ import annotations

import os
import socket


def has_display() -> bool:
    """True when $DISPLAY names an X server that accepts a connection."""
    display = os.environ.get("DISPLAY", "").strip()
    if not display:
        return False
    host, _, rest = display.rpartition(":")
    number = rest.split(".")[0]
    if not number.isdigit():
        return False
    try:
        if host in ("", "unix"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(1.0)
                s.connect(f"/tmp/.X11-unix/X{number}")
        else:
            with socket.create_connection((host, 6000 + int(number)), timeout=1.0):
                pass
    except OSError:
        return False
    return True


class Window:
    """A resizable OpenCV window that keeps the video's aspect ratio."""

    def __init__(self, title: str, size: tuple[int, int] | None = None, fullscreen: bool = False):
        import cv2

        if not has_display():
            raise RuntimeError("no display: cannot open a window (use --no-window)")
        self.title = title
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
        if fullscreen:
            cv2.setWindowProperty(title, cv2.WND_PROP_FULLSCREEN, cv2.WINDOW_FULLSCREEN)
        elif size is not None:
            cv2.resizeWindow(title, int(size[0]), int(size[1]))

    def show(self, image_bgr, wait_ms: int = 1) -> int:
        """Shows a frame; returns the key pressed (or -1)."""
        import cv2

        cv2.imshow(self.title, image_bgr)
        return cv2.waitKeyEx(max(1, int(wait_ms)))

    def is_open(self) -> bool:
        import cv2

        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        except cv2.error:
            return False

    def close(self) -> None:
        import cv2

        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass
