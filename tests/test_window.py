"""The window, on a virtual display (Xvfb): it opens, shows the overlay and obeys the keyboard.

Skipped where Xvfb or xdotool is missing (``./run.sh test`` installs both as root).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ar_guide.io.display import has_display
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence


@pytest.fixture(scope="module")
def xvfb():
    if not (shutil.which("Xvfb") and shutil.which("xdotool")):
        pytest.skip("Xvfb and xdotool are needed for window tests (apt-get install xvfb xdotool)")
    for number in range(90, 110):
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
    yield display
    proc.terminate()
    proc.wait(timeout=10)


def find_window(display: str, name: str, timeout_s: float = 60.0) -> str:
    env = dict(os.environ, DISPLAY=display)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = subprocess.run(["xdotool", "search", "--name", name], capture_output=True, text=True, env=env)
        ids = result.stdout.split()
        if ids:
            return ids[-1]
        time.sleep(0.2)
    raise AssertionError(f"no window named {name!r} appeared")


def test_has_display_follows_the_x_server(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    assert has_display()
    monkeypatch.setenv("DISPLAY", ":12345")
    assert not has_display()
    monkeypatch.delenv("DISPLAY")
    assert not has_display()


def test_play_window_opens_and_quits_on_q(xvfb, tmp_path):
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    report = tmp_path / "report.json"
    env = dict(os.environ, DISPLAY=xvfb)
    proc = subprocess.Popen([sys.executable, "-m", "ar_guide", "play", str(sequence.video), "--scene",
                             str(sequence.scene), "--calibration", str(sequence.calibration), "--report",
                             str(report), "--realtime"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        window = find_window(xvfb, "ar_guide")
        time.sleep(0.5)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    data = json.loads(report.read_text())
    assert data["stopped_by_user"] is True
    assert 0 < data["frames"] < TEST_SPEC.frame_count
