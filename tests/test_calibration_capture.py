"""The live session's capture policy: steadiness, duplicates, new coverage, sufficiency, hints.

Views are the board's corners projected at chosen poses (test_calibration_check.pose_at) with
seeded noise, or hand-made corner sets where the test is about the image grid only.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ar_guide.calibration.capture import (CapturePolicy, CaptureSession, SteadinessTracker, estimate_tilt,
                                          features_from_points, features_of_view, pose_distance_px, tilt_bin,
                                          tilt_direction, tilt_from_pose, tilt_magnitude_deg)
from ar_guide.calibration.detect import BoardView
from ar_guide.camera import CameraModel
from ar_guide.constants import CaptureSettings
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from test_calibration_check import BOARD, CAMERA, H, W, pose_at

SETTINGS = CaptureSettings()
OBJ = BOARD.corners_mm


def view_at(pose: np.ndarray, noise_px: float = 0.0, seed: int = 0, camera: CameraModel = CAMERA) -> BoardView:
    uv = camera.project(OBJ @ pose[:3, :3].T + pose[:3, 3])
    inside = np.all((uv > 2) & (uv < [W - 3, H - 3]), axis=1)
    uv = uv + np.random.default_rng(seed).normal(0.0, noise_px, uv.shape)
    return BoardView("test", (W, H), np.flatnonzero(inside), uv[inside], OBJ[inside])


def features(view: BoardView, t: float = 0.0):
    return features_of_view(view, (W, H), timestamp_s=t)


# -- tilts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("rotvec, expected", [
    # A right-handed rotation about the camera's x axis turns +y (down) towards +z: the bottom
    # edge moves away, so +30 deg about x gives tilt_x = +30 (coverage's convention).
    ([-np.radians(30), 0, 0], (-30.0, 0.0)),
    ([np.radians(30), 0, 0], (30.0, 0.0)),
    # About y, +z turns towards +x... and +x towards -z: the right edge comes closer, the left
    # edge goes away: tilt_y > 0.
    ([0, -np.radians(30), 0], (0.0, -30.0)),
    ([0, np.radians(20), 0], (0.0, 20.0)),
])
def test_tilt_convention(rotvec, expected):
    pose = make_transform(rotation_from_rotvec(rotvec), [0.0, 0.0, 400.0])
    tilt = tilt_from_pose(pose)
    np.testing.assert_allclose(tilt, expected, atol=1e-9)
    # Check the words against the geometry: the named edge is farther from the camera.
    top, bottom = np.array([0.0, -50, 0]), np.array([0.0, 50, 0])
    left, right = np.array([-50.0, 0, 0]), np.array([50.0, 0, 0])
    z = lambda p: (pose[:3, :3] @ p + pose[:3, 3])[2]
    if abs(expected[0]) > 0:
        assert (z(bottom) > z(top)) == (expected[0] > 0)
    if abs(expected[1]) > 0:
        assert (z(left) > z(right)) == (expected[1] > 0)


def test_tilt_estimated_from_the_corners():
    # Pinhole camera with the guessed intrinsics: the homography's rotation is exact.
    k = np.array([[640.0, 0, 319.5], [0, 640.0, 179.5], [0, 0, 1]])
    pinhole = CameraModel(k, np.zeros(5), (W, H))
    for axis, tilt in (((1.0, 0.0), 35.0), ((0.0, 1.0), -25.0), ((0.7, 0.7), 30.0)):
        pose = pose_at(W / 2, H / 2, 450.0, axis, tilt, spin_deg=20.0, camera=pinhole)
        view = view_at(pose, camera=pinhole)
        # (float32 pixels in BoardView: 1e-5 px, a few 1e-6 deg)
        np.testing.assert_allclose(estimate_tilt(view.object_points_mm, view.image_points_px, k),
                                   tilt_from_pose(pose), atol=1e-4)
    # Through the real (distorted, f 523 px) lens with the guessed f 640 px: still the right
    # direction and within a few degrees, enough for binning.
    pose = pose_at(W / 2, H / 2, 380.0, (1.0, 0.0), 30.0)
    estimate = features(view_at(pose)).tilt_deg
    truth = tilt_from_pose(pose)
    assert tilt_direction(estimate, 20.0) == tilt_direction(truth, 20.0) == "bottom"
    assert abs(tilt_magnitude_deg(estimate) - tilt_magnitude_deg(truth)) < 8.0  # 5.1 deg here


def test_tilt_directions_and_bins():
    # coverage's convention: +tilt_x = lower edge farther, +tilt_y = left edge farther
    assert tilt_direction((-30.0, 5.0), 20.0) == "top"
    assert tilt_direction((30.0, 5.0), 20.0) == "bottom"
    assert tilt_direction((5.0, -30.0), 20.0) == "right"
    assert tilt_direction((5.0, 30.0), 20.0) == "left"
    assert tilt_direction((10.0, 10.0), 20.0) is None
    assert tilt_bin((3.0, -4.0)) == (0, 0)            # face-on: one bin whatever the direction
    assert tilt_bin((0.0, -30.0)) == (2, 0)           # 25-40 deg ring, "right" sector
    assert tilt_bin((-30.0, 0.0)) == (2, 2)           # "top": a quarter turn on, 8 sectors
    assert tilt_bin((0.0, 45.0)) == (3, 4)
    assert tilt_bin(None) is None


# -- steadiness -----------------------------------------------------------------------------------


def test_steady_only_after_the_board_stayed_still():
    tracker = SteadinessTracker(SETTINGS)
    base = pose_at(W / 2, H / 2, 380.0, (1.0, 0.0), 20.0)
    t = 0.0
    # Moving 2 px per frame at 30 fps: never steady.
    for k in range(15):
        pose = base.copy()
        pose[0, 3] += k * 2.0 * 380.0 / 523.0
        assert not tracker.update(features(view_at(pose, 0.05, seed=k), t))
        t += 1 / 30
    # Still (0.05 px noise): steady once 0.3 s of still frames are seen, not before.
    still_since = t - 1 / 30   # the last moving frame is where it stopped
    states = []
    for k in range(20):
        states.append((t - still_since, tracker.update(features(view_at(pose, 0.05, seed=100 + k), t))))
        t += 1 / 30
    first = next(age for age, steady in states if steady)
    assert SETTINGS.steady_s - 1e-9 <= first < SETTINGS.steady_s + 1 / 30 + 1e-9
    assert all(steady for age, steady in states if age >= first)
    # A frame without the board starts over.
    assert not tracker.update(None)
    assert not tracker.update(features(view_at(pose, 0.05, seed=7), t))


# -- the policy -----------------------------------------------------------------------------------


def test_duplicates_refused_new_coverage_taken():
    policy = CapturePolicy((W, H), len(OBJ), SETTINGS)
    centre = pose_at(W / 2, H / 2, 380.0, (1.0, 0.0), 5.0)
    first = features(view_at(centre, 0.1, seed=1))
    decision = policy.consider(first)
    assert decision.take and "new image cell" in decision.reason
    policy.add(first)
    # The same pose again (other noise), and nudged by 5 px: refused as duplicates.
    again = features(view_at(centre, 0.1, seed=2))
    decision = policy.consider(again)
    assert not decision.take and decision.reason == "same pose as view 1"
    nudged = centre.copy()
    nudged[0, 3] += 5.0 * 380.0 / 523.0
    assert not policy.consider(features(view_at(nudged, 0.1, seed=3))).take
    # The top-left corner: new cells.
    corner = features(view_at(pose_at(0.2 * W, 0.25 * H, 380.0), 0.1, seed=4))
    decision = policy.consider(corner)
    assert decision.take and decision.new_cells > 0
    policy.add(corner)
    # Closer, so that it covers more of the middle: new cells.
    near = features(view_at(pose_at(W / 2, H / 2, 260.0), 0.1, seed=5))
    assert policy.consider(near).take
    policy.add(near)
    # At the centre, strongly tilted: no new cell, but a new tilt bin.
    tilted = features(view_at(pose_at(W / 2, H / 2, 380.0, (0.0, 1.0), 35.0), 0.1, seed=6))
    assert all(policy.cell_counts[cell] > 0 for cell in tilted.cells)
    decision = policy.consider(tilted)
    assert decision.take and decision.reason == "new tilt" and decision.new_tilt_bin, decision


def test_too_few_corners_and_max_views():
    policy = CapturePolicy((W, H), len(OBJ), SETTINGS)
    view = view_at(pose_at(W / 2, H / 2, 380.0))
    few = features_from_points(view.corner_ids[:8], view.image_points_px[:8], (W, H), (0.0, 0.0))
    decision = policy.consider(few)
    assert not decision.take and decision.reason == "too few corners (8 < 12)"
    small = CapturePolicy((W, H), len(OBJ), dataclasses.replace(SETTINGS, max_views=1))
    small.add(features(view))
    other = features(view_at(pose_at(0.2 * W, 0.25 * H, 380.0)))
    assert small.consider(other).reason == "1 views already taken"
    # A small board caps the corner count at half its corners.
    assert CapturePolicy((W, H), 12, SETTINGS).min_corners == 6


def _grid_view(cells, tilt=(0.0, 0.0), first_id=0):
    """A fake view with one corner at the centre of each (row, col) cell of the 8 x 6 grid."""
    cw, ch = W / 8, H / 6
    uv = np.array([[(c + 0.5) * cw - 0.5, (r + 0.5) * ch - 0.5] for r, c in cells])
    return features_from_points(np.arange(first_id, first_id + len(uv)), uv, (W, H), tilt)


def test_hints_name_the_missing_region_and_tilts():
    policy = CapturePolicy((W, H), 1000, SETTINGS)
    every = [(r, c) for r in range(6) for c in range(8)]
    # All cells but the top-left corner, in 15 views; tilts only towards top and right.
    tilts = [(-30.0, 0.0), (0.0, -30.0)] + [(0.0, 0.0)] * 13
    for k in range(15):
        cells = [cell for i, cell in enumerate(every) if cell != (0, 0) and i % 15 == k] or [(3, 3)]
        policy.add(_grid_view(cells * 12, tilts[k], first_id=1000 * k))
    assert policy.cell_fraction == pytest.approx(47 / 48)
    assert not policy.is_sufficient()
    missing = policy.missing()
    assert missing[0] == "cover the top-left corner of the image"
    assert missing[1] == "tilt the board 20-40 deg: bottom edge farther away"
    # The region covered, one more tilt direction: sufficient, nothing missing.
    policy.add(_grid_view([(0, 0)] * 12, (30.0, 0.0), first_id=99000))
    assert policy.is_sufficient() and policy.missing() == []
    # Undo takes it back.
    policy.undo()
    assert not policy.is_sufficient()
    assert policy.missing()[0] == "cover the top-left corner of the image"


def test_hints_at_the_start():
    policy = CapturePolicy((W, H), len(OBJ), SETTINGS)
    policy.add(features(view_at(pose_at(W / 2, H / 2, 380.0))))
    missing = policy.missing(limit=3)
    # One line of each kind: a region (corners first), a tilt, the count.
    assert missing[0] == "cover the top-left corner of the image"
    assert missing[1].startswith("tilt the board")
    assert missing[2] == "take 14 more views (1 of 15)"
    assert policy.summary()["views"] == 1 and not policy.summary()["sufficient"]


# -- the session ----------------------------------------------------------------------------------


def test_session_takes_a_steady_board_once_then_waits_for_a_new_pose():
    session = CaptureSession((W, H), len(OBJ), SETTINGS)
    t = 0.0
    captured = []

    def hold(pose, seconds, seed):
        nonlocal t
        for k in range(int(round(seconds * 30))):
            obs = session.observe(view_at(pose, 0.05, seed=seed + k), t)
            if obs.captured:
                captured.append(t)
            t += 1 / 30
        return obs

    a = pose_at(W / 2, H / 2, 380.0, (1.0, 0.0), 10.0)
    obs = hold(a, 1.5, 0)
    assert len(captured) == 1 and obs.state == "steady" and "same pose as view 1" in obs.hint
    assert captured[0] == pytest.approx(SETTINGS.steady_s, abs=1.5 / 30)
    b = pose_at(0.8 * W, 0.75 * H, 380.0, (0.0, 1.0), -30.0)
    hold(b, 1.0, 100)
    assert len(captured) == 2 and len(session.views) == 2
    # No board: the state says so.
    assert session.observe(None, t).state == "no board"
    # Manual capture takes the last view seen, even a duplicate; undo drops it.
    session.observe(view_at(b, 0.05, seed=500), t + 0.1)
    decision = session.capture_now()
    assert decision.take and decision.reason == "same pose as view 2"
    assert len(session.views) == 3
    assert session.undo() and len(session.views) == 2
    assert session.undo() and session.undo() and not session.undo()
    assert session.observe(None, t + 0.2).state == "no board"
    assert session.capture_now().reason == "no board in view"


def test_session_too_few_corners():
    session = CaptureSession((W, H), len(OBJ), SETTINGS)
    view = view_at(pose_at(W / 2, H / 2, 380.0))
    part = BoardView("part", (W, H), view.corner_ids[:6], view.image_points_px[:6], view.object_points_mm[:6])
    obs = session.observe(part, 0.0)
    assert obs.state == "too few corners" and obs.hint == "bring more of the board into view (6 corners, need 12)"


def test_pose_distance():
    a = features(view_at(pose_at(W / 2, H / 2, 380.0)))
    b = features(view_at(pose_at(W / 2 + 40, H / 2, 380.0)))
    assert pose_distance_px(a, b) == pytest.approx(40.0, abs=3.0)   # lens distortion: not exactly 40
    c = features_from_points([500, 501, 502], np.zeros((3, 2)), (W, H), None)
    assert pose_distance_px(a, c) == np.inf
