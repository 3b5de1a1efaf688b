"""Quality warnings: a careful session passes; the sessions that produce calibrations that look
fine by RMS and are wrong (faces-on views, the board kept in the centre, too few views) are
flagged with what to do; each check on a result built to trip it."""

from __future__ import annotations

import dataclasses

import pytest

import calibration_synth as cs
from ar_guide.calibration.detect import BoardDetector
from ar_guide.calibration.quality import assess, findings, verdict
from ar_guide.calibration.solve import calibrate
from ar_guide.camera import CameraModel
from ar_guide.synth.calibration_views import random_board_poses

W, H = 640, 360


@pytest.fixture(scope="module")
def setup():
    return cs.camera(W, H), cs.charuco((9, 7), 15.0, 11.0)


@pytest.fixture(scope="module")
def careful(setup):
    cam, board = setup
    poses = cs.covering_poses(board, cam, cs.PLAN_12, seed=0, distance_mm=(180.0, 280.0))
    views = [BoardDetector(board).detect(image, f"v{i}") for i, image in enumerate(cs.render_all(board, cam, poses))]
    return views, calibrate(views, (W, H))


def _codes(found):
    return [f.code for f in found]


def test_careful_session_has_no_warnings(careful):
    views, result = careful
    found = findings(result, views, (W, H))
    assert found == [] and verdict(found) == "good"
    assert assess(result, len(views), (W, H)) == []


def test_fronto_parallel_views_are_not_trustworthy(setup):
    """Faces-on views fit to 0.08 px RMS, yet fx comes out 4% wrong: the tilt and focal-length
    checks say so, and what to do."""
    cam, board = setup
    poses = cs.fronto_parallel_poses(board, cam, 12, seed=1, distance_mm=(250.0, 350.0))
    detector = BoardDetector(board)
    views = [detector.detect(image) for image in cs.render_all(board, cam, poses, seed=1)]
    result = calibrate(views, (W, H))
    assert result.rms_px < 0.1 and abs(result.camera.fx / cam.fx - 1) > 0.02
    found = findings(result, views, (W, H))
    assert {"tilt", "focal_std"} <= set(_codes(found))
    assert verdict(found) == "not trustworthy"
    tilt = next(f for f in found if f.code == "tilt")
    assert tilt.serious and tilt.message.startswith("no view is tilted more than 20 degrees")
    assert "add 3 views with the board tilted 30-45 degrees" in tilt.message
    focal = next(f for f in found if f.code == "focal_std")
    assert focal.serious and "fx = " in focal.message and "limit 0.5%" in focal.message


def test_board_kept_in_the_centre_leaves_corners_uncovered(setup):
    cam, _ = setup
    board = cs.charuco((7, 5), 30.0, 22.0)
    detector = BoardDetector(board)
    views = [detector.detect(image) for image in
             cs.render_all(board, cam, random_board_poses(board, cam, 12, seed=2), seed=2)]
    result = calibrate([v for v in views if v is not None], (W, H))
    found = findings(result, len(views), (W, H))
    coverage = next(f for f in found if f.code == "coverage")
    assert "never the top-right corner" in coverage.message
    assert "add views with the board near the top-right corner" in coverage.message


def test_few_views(careful):
    views, _ = careful
    result = calibrate(views[:5], (W, H))
    found = findings(result, views[:5], (W, H))
    few = next(f for f in found if f.code == "few_views")
    assert few.message.startswith("only 5 views used; 10 or more are recommended: add 5 views")
    assert few.serious  # fewer than (3 + 10) // 2 = 6 views


def test_high_rms_and_many_dropped(careful):
    views, result = careful
    bad = dataclasses.replace(result, rms_px=1.4, dropped=[(v, 2.0, "x") for v in views[:4]])
    found = findings(bad, 16, (W, H))
    rms = next(f for f in found if f.code == "rms")
    assert rms.serious and rms.message.startswith("RMS reprojection error 1.40 px is high")
    assert next(f for f in found if f.code == "dropped").message.startswith("4 of 16 views were dropped")


def test_uncertain_principal_point_and_aspect(careful):
    views, result = careful
    c = result.camera
    k = c.camera_matrix.copy()
    k[0, 0] *= 1.03
    std = dict(result.std, cx=6.0, fx=1.0, fy=1.0)
    odd = dataclasses.replace(result, camera=dataclasses.replace(c, camera_matrix=k), std=std)
    found = findings(odd, views, (W, H))
    assert "principal_point_std" in _codes(found)
    pp = next(f for f in found if f.code == "principal_point_std")
    assert "cx = " in pp.message and "cy" not in pp.message.split("(limits")[0]
    aspect = next(f for f in found if f.code == "aspect")
    assert aspect.message.startswith("fx / fy = 1.03")
    # With --fix-aspect there is nothing to say about the ratio.
    fixed = dataclasses.replace(odd, options=dataclasses.replace(odd.options, fix_aspect=True))
    assert "aspect" not in _codes(findings(fixed, views, (W, H)))


def test_distortion_that_folds_inside_the_image(careful):
    views, result = careful
    c = result.camera
    # k1 = -0.5 folds at distorted radius 0.544; the image corners of this camera are at 0.70.
    folding = CameraModel(c.camera_matrix, [-0.5, 0, 0, 0, 0], c.image_size)
    found = findings(dataclasses.replace(result, camera=folding), views, (W, H))
    fold = next(f for f in found if f.code == "distortion_fold")
    assert fold.serious and "folds over inside the image" in fold.message and "--fix-k3" in fold.message
