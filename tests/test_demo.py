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
