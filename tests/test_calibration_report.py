"""The calibration report: files written, charts that parse as SVG and show what they claim, the
JSON numbers equal to the result's, dropped views marked, and the page for a failed solve."""

from __future__ import annotations

import dataclasses
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import calibration_synth as cs
from ar_guide.calibration.detect import BoardDetector
from ar_guide.calibration.quality import Finding, findings
from ar_guide.calibration.report import annotate_view, svg_residuals, svg_view_errors, write_report
from ar_guide.calibration.solve import calibrate

W, H = 640, 360
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def solved():
    cam = cs.camera(W, H)
    board = cs.charuco((9, 7), 15.0, 11.0)
    poses = cs.covering_poses(board, cam, cs.PLAN_12, seed=0, distance_mm=(180.0, 280.0))
    images = cs.render_all(board, cam, poses)
    views = [BoardDetector(board).detect(image, f"view{i:02d}.png") for i, image in enumerate(images)]
    # One bad view, to be dropped: its corners moved 2 px in random directions.
    rng = np.random.default_rng(5)
    shift = rng.normal(size=views[4].image_points_px.shape)
    shift *= 2.0 / np.linalg.norm(shift, axis=1, keepdims=True)
    views[4] = dataclasses.replace(views[4], image_points_px=views[4].image_points_px + shift.astype(np.float32))
    result = calibrate(views, (W, H))
    assert [v.source for v, _, _ in result.dropped] == ["view04.png"]
    return board, views, result, {v.source: image for v, image in zip(views, images)}


def _svgs(page: str) -> list:
    return [ET.fromstring(m) for m in re.findall(r"<svg .*?</svg>", page, flags=re.S)]


def test_report_files_and_numbers(solved, tmp_path):
    board, views, result, images = solved
    found = findings(result, views, (W, H))
    page = write_report(tmp_path / "rep", result, board, (W, H), found, views, [("blank.png", "no markers")],
                        images, written="cam.yaml", source="images: x")
    assert page == tmp_path / "rep" / "report.html"
    data = json.loads((tmp_path / "rep" / "report.json").read_text())
    assert data["rms_px"] == pytest.approx(result.rms_px, rel=1e-6)
    assert data["fx"] == pytest.approx(result.camera.fx, rel=1e-6)
    assert data["std"]["fx"] == pytest.approx(result.std["fx"], rel=1e-6)
    assert data["views_used"] == 11 and data["views_dropped"] == 1 and data["views_offered"] == 12
    dropped = [v for v in data["per_view"] if not v["used"]]
    assert [v["source"] for v in dropped] == ["view04.png"] and dropped[0]["reason"].startswith("RMS")
    assert data["not_used"] == [{"source": "blank.png", "reason": "no markers"}]
    assert data["verdict"] == ("good" if not found else data["verdict"])
    assert len(data["coverage"]["counts"]) == 6 and len(data["coverage"]["counts"][0]) == 8
    # One annotated image per view (used and dropped), embedded as thumbnails too.
    assert len(list((tmp_path / "rep" / "views").glob("*.jpg"))) == 12
    text = page.read_text()
    assert text.count("data:image/jpeg;base64,") == 12
    svgs = _svgs(text)
    assert len(svgs) == 5  # per-view errors, coverage, residuals, tilts, distortion
    assert "view04.png" in text and "(dropped)" in text and "blank.png: no markers" in text


def test_view_error_chart_marks_dropped_views():
    svg = ET.fromstring(svg_view_errors(["a", "b", "c"], [0.2, 0.4, 2.0], [False, False, True], 0.6,
                                        width=300, height=200))
    bars = [r for r in svg.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    assert [r.find(SVG + "title").text for r in bars] == ["a: 0.200 px", "b: 0.400 px", "c: 2.000 px (dropped)"]
    heights = [float(r.get("height")) for r in bars]
    np.testing.assert_allclose(np.array(heights) / heights[0], [1.0, 2.0, 10.0], rtol=1e-2)
    assert bars[2].get("fill") == "url(#hatch)" and bars[0].get("fill") != "url(#hatch)"
    assert "outlier limit 0.60 px" in ET.tostring(svg, encoding="unicode")


def test_residual_chart_scale():
    points = [np.array([[100.0, 100.0], [200.0, 150.0]])]
    residuals = [np.array([[0.5, 0.0], [0.0, -0.5]])]
    svg = ET.fromstring(svg_residuals(points, residuals, (640, 480), width=320))
    lines = [l for l in svg.iter(SVG + "line")]
    vectors = lines[:2]
    # Drawn length = residual * magnification * chart scale (0.5); the scale bar says the unit.
    length = np.hypot(float(vectors[0].get("x2")) - float(vectors[0].get("x1")),
                      float(vectors[0].get("y2")) - float(vectors[0].get("y1")))
    text = ET.tostring(svg, encoding="unicode")
    magnify = float(re.search(r"magnified (\d+)x", text).group(1))
    assert length == pytest.approx(0.5 * magnify * 0.5, rel=0.02)
    assert float(vectors[1].get("y2")) < float(vectors[1].get("y1"))  # -0.5 px in v points up


def test_annotated_view_draws_at_the_corners(solved):
    _, views, result, images = solved
    view = result.views[0]
    out = annotate_view(images[view.source], view)
    u, v = np.round(view.image_points_px[0]).astype(int)
    # A green circle of radius 3-4 px around the corner.
    ring = out[v - 5:v + 6, u - 5:u + 6]
    assert np.any((ring[..., 1] > 150) & (ring[..., 0] < 80) & (ring[..., 2] < 80))
    # Half-size image: the same corner at half the coordinates (pixel centres).
    small = annotate_view(images[view.source][::2, ::2].copy(), view)
    u2, v2 = np.round((view.image_points_px[0] + 0.5) / 2 - 0.5).astype(int)
    ring = small[v2 - 4:v2 + 5, u2 - 4:u2 + 5]
    assert np.any((ring[..., 1] > 150) & (ring[..., 0] < 80) & (ring[..., 2] < 80))


def test_report_of_a_failed_solve(solved, tmp_path):
    board, views, _, _ = solved
    found = [Finding("solve", True, "2 views of the board; at least 3 are needed")]
    page = write_report(tmp_path / "r", None, board, (W, H), found, views[:2], [("a.png", "no markers")])
    text = page.read_text()
    assert "NOT TRUSTWORTHY" in text and "at least 3 are needed" in text
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["verdict"] == "not trustworthy" and "rms_px" not in data


def test_report_when_the_file_was_not_written(solved, tmp_path):
    board, views, result, _ = solved
    page = write_report(tmp_path / "r", result, board, (W, H), [], views, written=None)
    assert "NOT WRITTEN" in page.read_text()
    assert json.loads((tmp_path / "r" / "report.json").read_text())["verdict"] == "not written"
