"""The window, on a virtual display (Xvfb): it opens, shows the overlay and obeys the keyboard.

Skipped where Xvfb or xdotool is missing (``./run.sh test`` installs both as root).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from xdisplay import find_window

from ar_guide.io.display import has_display
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence


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
