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


def screen_size() -> tuple[int, int] | None:
    """(width, height) in px of the X display's default screen, or None (no display, no libX11)."""
    import ctypes
    import ctypes.util

    if not has_display():
        return None
    name = ctypes.util.find_library("X11")
    if name is None:
        return None
    try:
        xlib = ctypes.CDLL(name)
        xlib.XOpenDisplay.restype = ctypes.c_void_p
        xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
        for fn in (xlib.XDefaultScreen, xlib.XCloseDisplay):
            fn.argtypes = [ctypes.c_void_p]
        xlib.XDisplayWidth.argtypes = xlib.XDisplayHeight.argtypes = [ctypes.c_void_p, ctypes.c_int]
        display = xlib.XOpenDisplay(None)
        if not display:
            return None
        try:
            screen = xlib.XDefaultScreen(display)
            return int(xlib.XDisplayWidth(display, screen)), int(xlib.XDisplayHeight(display, screen))
        finally:
            xlib.XCloseDisplay(display)
    except (OSError, AttributeError):
        return None


class Window:
    """A resizable OpenCV window that keeps the video's aspect ratio (letterboxed, never stretched).

    ``WINDOW_GUI_NORMAL`` leaves out Qt's toolbar and status bar (zoom buttons, pixel read-out):
    the whole window is the video.  ``fullscreen`` starts full screen; :meth:`set_fullscreen` and
    :meth:`toggle_fullscreen` switch later (the aspect ratio is kept there too).
    """

    def __init__(self, title: str, size: tuple[int, int] | None = None, fullscreen: bool = False):
        import cv2

        if not has_display():
            raise RuntimeError("no display: cannot open a window (use --no-window)")
        self.title = title
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.fullscreen = False
        cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        if self.size is not None:
            cv2.resizeWindow(title, *self.size)
        if fullscreen:
            self.set_fullscreen(True)

    def set_fullscreen(self, on: bool) -> None:
        """Full screen (True) or back to a normal window at its size (False)."""
        import cv2

        cv2.setWindowProperty(self.title, cv2.WND_PROP_FULLSCREEN,
                              cv2.WINDOW_FULLSCREEN if on else cv2.WINDOW_NORMAL)
        # Leaving full screen does not re-apply the aspect flag on every backend: set it again.
        cv2.setWindowProperty(self.title, cv2.WND_PROP_ASPECT_RATIO, cv2.WINDOW_KEEPRATIO)
        if on:
            # Full screen is the window manager's job; without one (a bare X server, a kiosk
            # session) the window would stay as it was, so cover the screen explicitly.
            screen = screen_size()
            if screen is not None:
                cv2.moveWindow(self.title, 0, 0)
                cv2.resizeWindow(self.title, *screen)
        elif self.size is not None:
            cv2.resizeWindow(self.title, *self.size)
        self.fullscreen = bool(on)

    def toggle_fullscreen(self) -> bool:
        """Switches full screen on or off; returns the new state."""
        self.set_fullscreen(not self.fullscreen)
        return self.fullscreen

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
