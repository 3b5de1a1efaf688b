"""`ar-guide demo` end to end on the 10 s synthetic phantom sequence (slow: generates it).

The issue's acceptance figures, from the demo's own report: overlay error at the targets median
<= 1.0 px and p95 <= 3 px over frames with status OK, rotation error median <= 0.5 degree, and
no overlay drawn as current while the reference was not visible.
"""

from __future__ import annotations

import json

import pytest

from ar_guide.cli import main
from ar_guide.io.poselog import read_pose_log
from ar_guide.io.sources import VideoFileSource

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--no-window", "--output", str(out)]) == 0
    return out, json.loads((out / "report.json").read_text())


def test_demo_meets_the_accuracy_targets(demo_run):
    _out, report = demo_run
    gt = report["ground_truth"]
    assert gt["overlay_error_px"]["median"] <= 1.0
    assert gt["overlay_error_px"]["p95"] <= 3.0
    assert gt["rotation_error_deg"]["median"] <= 0.5
    assert gt["false_overlay_frames"] == 0


def test_demo_tracks_what_it_can_see_and_reports_the_rest(demo_run):
    _out, report = demo_run
    gt = report["ground_truth"]
    assert report["frames"] == 300
    # The board leaves the view and is covered by a hand: not every frame can be OK, but most
    # frames that show it are (fast pans blur the markers beyond detection).
    assert 0.6 < report["tracked_fraction"] < 1.0
    assert gt["recall_ok_while_visible"] > 0.8
    assert report["status_frames"]["LOST"] > 0 and report["status_frames"]["STALE"] > 0
    for stage in ("detect", "pose", "render", "compose", "total"):
        assert report["timings_ms"][stage]["median"] > 0


def test_demo_writes_video_and_pose_log(demo_run):
    out, report = demo_run
    with VideoFileSource(out / "overlay.mp4") as video:
        assert (video.width, video.height) == (1280, 720)
        assert sum(1 for _ in video) == 300
    rows = read_pose_log(out / "poses.csv")
    assert len(rows) == 300
    assert sum(r.status == "OK" for r in rows) == report["status_frames"]["OK"]
    assert all(r.translation_mm is None for r in rows if r.status != "OK")


def test_demo_live_rehearsal_runs_the_live_app_on_the_demo_video(demo_run, tmp_path, monkeypatch, capsys):
    """``demo --live``: ar-guide live with the demo video as a camera paced in real time, headless here;
    its report lands in the output folder with the live figures (latency, frame rate, skipped)."""
    import argparse

    from ar_guide.apps import demo
    from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(output=tmp_path / "out", no_window=True, live=True, max_seconds=2.0)
    assert demo.run_live_rehearsal(args, ensure_sequence(DEMO_SPEC)) == 0
    report = json.loads((tmp_path / "out" / "live-report.json").read_text())
    assert report["command"] == "live" and report["stopped_by"] == "time limit"
    assert report["camera"]["width"] == 1280 and report["camera"]["height"] == 720
    # Paced at 30 fps for 2 s: about 60 frames, not the 300 of the file as fast as it decodes.
    assert 40 <= report["frames"] <= 62
    assert report["latency_ms"]["median"] > 0
    assert "rehearsal: ar-guide live --camera" in capsys.readouterr().err
