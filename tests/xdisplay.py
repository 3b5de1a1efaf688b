"""A virtual X display (Xvfb) and window lookup (xdotool) for the window tests.

Use the ``xvfb`` fixture from tests/conftest.py; it skips where Xvfb or xdotool is missing
(``./run.sh test`` installs both as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest


def start_xvfb():
    """(display name, process) of a new Xvfb server; skips the test if it cannot start."""
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are needed for window tests (apt-get install xvfb xdotool)")
    for number in range(90, 140):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    display = f":{number}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.skip("Xvfb did not start")
        time.sleep(0.05)
    return display, proc


def find_window(display: str, name: str, timeout_s: float = 60.0) -> str:
    """xdotool's id of the newest window whose title contains ``name``."""
    env = dict(os.environ, DISPLAY=display)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = subprocess.run(["xdotool", "search", "--name", name], capture_output=True, text=True, env=env)
        ids = result.stdout.split()
        if ids:
            return ids[-1]
        time.sleep(0.2)
    raise AssertionError(f"no window named {name!r} appeared")
