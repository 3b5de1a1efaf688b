"""Tracking status: OK / STALE / LOST timing, gates, acquisition and reacquisition."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ar_guide.camera import CameraModel
from ar_guide.constants import TrackingGates
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.tracking.bodies import marker_map_body
from ar_guide.tracking.pose import BodyPoseEstimator, PoseFailure, PoseMeasurement
from ar_guide.tracking.status import BodyTracker, TrackingStatus

OK, STALE, LOST = TrackingStatus.OK, TrackingStatus.STALE, TrackingStatus.LOST
DT = 1.0 / 30.0
GATES = TrackingGates()  # lost_after 0.25 s, 1500 mm/s, 360 deg/s, slack 5 mm / 3 deg, ratio 4, 2 frames


def pose(x=0.0, y=0.0, z=400.0, angle_deg=0.0):
    return make_transform(rotation_from_rotvec([0.0, 0.0, math.radians(angle_deg)]), [x, y, z])


# Three markers: below instant_acquire_min_markers, so acquisition takes two frames.
def measurement(camera_from_body, rms=0.4, ratio=10.0, markers=3, alternative=None):
    return PoseMeasurement(camera_from_body, rms, markers, 4 * markers, ratio, tuple(range(markers)), alternative)


def acquired(tracker, camera_from_body, t0=0.0):
    """Feed two consistent frames; returns the time of the second."""
    assert tracker.update(measurement(camera_from_body), t0).status is LOST
    assert tracker.update(measurement(camera_from_body), t0 + DT).status is OK
    return t0 + DT


def test_acquisition_takes_two_consistent_frames():
    tracker = BodyTracker("reference")
    first = tracker.update(measurement(pose()), 0.0)
    assert first.status is LOST and first.camera_from_body is None
    assert first.reason == "reacquiring (1/2)"
    assert first.reprojection_rms_px == pytest.approx(0.4) and first.markers_used == 3
    second = tracker.update(measurement(pose(x=1.0)), DT)
    assert second.status is OK and second.reason == "ok"
    np.testing.assert_array_equal(second.camera_from_body, pose(x=1.0))
    assert second.age_s == 0.0 and second.pose_timestamp_s == DT
    assert not second.camera_from_body.flags.writeable
    # A gap between the two frames restarts the count.
    tracker = BodyTracker("reference")
    tracker.update(measurement(pose()), 0.0)
    tracker.update(None, DT)
    assert tracker.update(measurement(pose()), 2 * DT).reason == "reacquiring (1/2)"
    # One frame suffices when the gates say so.
    assert BodyTracker("r", TrackingGates(acquire_frames=1)).update(measurement(pose()), 0.0).status is OK


def test_strong_measurement_is_acquired_at_once_but_not_after_a_jump():
    gates = TrackingGates()
    strong = gates.instant_acquire_min_markers
    tracker = BodyTracker("reference")
    first = tracker.update(measurement(pose(), markers=strong), 0.0)
    assert first.status is OK and first.reason == "ok"
    # Ambiguous: never at once, whatever the marker count.
    tracker = BodyTracker("reference")
    assert tracker.update(measurement(pose(), markers=12, ratio=1.5), 0.0).status is LOST
    # A jump away from a good pose is confirmed over two frames even with many markers.
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    jumped = tracker.update(measurement(pose(x=300.0), markers=12), t + DT)
    assert jumped.status is STALE and jumped.reason.startswith("jump 300 mm")
    assert tracker.update(measurement(pose(x=300.0), markers=12), t + 2 * DT).status is OK


def test_ok_stale_lost_timing():
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose(x=5.0))
    good = pose(x=5.0)
    # 0.1 s and 0.25 s after the last good pose: STALE, carrying that pose and its age.
    stale = tracker.update(None, t + 0.1)
    assert stale.status is STALE and stale.reason == "not seen"
    np.testing.assert_array_equal(stale.camera_from_body, good)
    assert stale.pose_timestamp_s == t and stale.age_s == pytest.approx(0.1)
    assert stale.reprojection_rms_px is None and stale.markers_used == 0
    assert tracker.update(PoseFailure("too few markers (1 < 2)", 1, 4), t + 0.25).status is STALE
    # Just past lost_after_s: LOST, no pose at all (never a stale pose passed on silently).
    lost = tracker.update(PoseFailure("too few markers (1 < 2)", 1, 4), t + 0.2501)
    assert lost.status is LOST and lost.camera_from_body is None and lost.age_s is None
    assert lost.reason == "too few markers (1 < 2)" and lost.markers_used == 1
    assert tracker.last_good_camera_from_body is None


def test_reprojection_gate():
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    state = tracker.update(measurement(pose(), rms=3.1), t + DT)
    assert state.status is STALE and state.reason == "reprojection 3.1 px > 2.0 px"
    assert state.reprojection_rms_px == pytest.approx(3.1)
    np.testing.assert_array_equal(state.camera_from_body, pose())


def test_jump_rejected_then_new_place_confirmed():
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    # 80 mm in one frame is 2400 mm/s: beyond 1500 mm/s * 0.033 s + 5 mm = 55 mm.
    jumped = tracker.update(measurement(pose(x=80.0)), t + DT)
    assert jumped.status is STALE and jumped.reason == "jump 80 mm in 0.033 s"
    np.testing.assert_array_equal(jumped.camera_from_body, pose())
    # The body really is there (a fast move): the next consistent frame confirms it.  No lock-out,
    # although the old pose is still fresh and the new one is "too far" from it.
    moved = tracker.update(measurement(pose(x=81.0)), t + 2 * DT)
    assert moved.status is OK
    np.testing.assert_array_equal(moved.camera_from_body, pose(x=81.0))
    # Rotation jumps too: 30 degrees in one frame > 360 deg/s * 0.033 s + 3 deg.
    spun = tracker.update(measurement(pose(x=81.0, angle_deg=30.0)), t + 3 * DT)
    assert spun.status is STALE and spun.reason == "jump 30 deg in 0.033 s"
    # Motion within the gates is accepted: 40 mm and 10 degrees in one frame.
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    assert tracker.update(measurement(pose(x=40.0, angle_deg=10.0)), t + DT).status is OK
    # The allowance grows with the time since the last good pose.
    tracker.update(None, t + 2 * DT)
    assert tracker.update(measurement(pose(x=40.0 + 90.0)), t + 3 * DT).status is OK


def test_a_flickering_wrong_pose_never_becomes_ok():
    """A false pose that alternates with the true one (a flip, a false marker) never passes."""
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    for k in range(1, 20):
        wrong = k % 2 == 1
        state = tracker.update(measurement(pose(x=200.0) if wrong else pose(x=0.5)), t + k * DT)
        if wrong:
            assert state.status is STALE and state.reason.startswith("jump 200 mm")
        else:
            assert state.status is OK
            np.testing.assert_array_equal(state.camera_from_body, pose(x=0.5))


def test_reacquisition_after_lost_anywhere():
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    assert tracker.update(None, t + 1.0).status is LOST
    # Far from the old pose (there is no old pose any more): two consistent frames suffice.
    assert tracker.update(measurement(pose(x=300.0, z=700.0)), t + 1.0 + DT).reason == "reacquiring (1/2)"
    assert tracker.update(measurement(pose(x=300.5, z=700.0)), t + 1.0 + 2 * DT).status is OK
    # Two inconsistent frames do not acquire: the second restarts the count.
    tracker = BodyTracker("reference")
    tracker.update(measurement(pose()), 0.0)
    assert tracker.update(measurement(pose(x=200.0)), DT).reason == "reacquiring (1/2)"
    assert tracker.update(measurement(pose(x=200.0)), 2 * DT).status is OK


def test_planar_ambiguity_rules():
    tracker = BodyTracker("reference")
    # A mirror solution 8.6 degrees away: within the rotation gate, so only the flip rule catches it.
    flipped = pose() @ make_transform(rotation_from_rotvec([0.15, 0.0, 0.0]), [0.0, 0.0, 0.0])
    # Acquisition refuses ambiguous frames, however consistent.
    for k in range(3):
        state = tracker.update(measurement(pose(), ratio=1.3, alternative=flipped), k * DT)
        assert state.status is LOST and state.reason == "ambiguous planar pose (ratio 1.3 < 4)"
    t = acquired(tracker, pose(), t0=3 * DT)
    # While tracking, an ambiguous frame is fine when the kept solution is the one nearer the
    # last good pose ...
    assert tracker.update(measurement(pose(), ratio=1.3, alternative=flipped), t + DT).status is OK
    # ... and refused when it is the other one (a flip).
    state = tracker.update(measurement(flipped, ratio=1.3, alternative=pose()), t + 2 * DT)
    assert state.status is STALE and state.reason == "planar-ambiguity flip (ratio 1.3 < 4)"
    # Unambiguous frames are judged by the other gates only.
    assert tracker.update(measurement(pose(x=1.0), ratio=6.0, alternative=flipped), t + 3 * DT).status is OK


def test_invalid_measurements_and_time():
    tracker = BodyTracker("reference")
    t = acquired(tracker, pose())
    bad = pose()
    bad[0, 3] = np.nan
    state = tracker.update(measurement(bad), t + DT)
    assert state.status is STALE and state.reason == "invalid pose (NaN)"
    with pytest.raises(ValueError, match="timestamp must be finite"):
        tracker.update(None, float("nan"))
    # Time going backwards (a loop or a seek in a video) starts over.
    state = tracker.update(measurement(pose()), 0.0)
    assert state.status is LOST and state.reason == "reacquiring (1/2)"
    tracker.reset()
    assert tracker.update(None, 5.0).status is LOST


def test_states_never_hold_nan():
    tracker = BodyTracker("reference")
    rng = np.random.default_rng(4)
    t = 0.0
    for _ in range(300):
        t += rng.choice([DT, 2 * DT, 0.3])
        choice = rng.integers(4)
        if choice == 0:
            m = None
        elif choice == 1:
            m = PoseFailure("too few markers (1 < 2)", 1, 4)
        else:
            m = measurement(pose(x=rng.normal(0, 30), angle_deg=rng.normal(0, 5)), rms=rng.uniform(0.1, 3.0),
                            ratio=rng.uniform(1.0, 10.0))
        state = tracker.update(m, t)
        values = [state.timestamp_s, state.age_s, state.reprojection_rms_px, state.pose_timestamp_s]
        assert all(v is None or math.isfinite(v) for v in values)
        if state.camera_from_body is not None:
            assert np.all(np.isfinite(state.camera_from_body))
        assert (state.camera_from_body is None) == (state.status is LOST)
        assert (state.reason == "ok") == (state.status is OK)


def test_false_marker_id_does_not_move_the_tracked_pose():
    """End to end: estimator + tracker on a 4-marker plate; marker 3 is decoded in the wrong place."""
    square = np.array([[0, 0, 0], [30, 0, 0], [30, 30, 0], [0, 30, 0]], dtype=np.float64)
    body = marker_map_body("plate", "DICT_4X4_50", {i: square + [60.0 * (i % 2), 60.0 * (i // 2), 0.0]
                                                     for i in range(4)})
    camera = CameraModel(np.array([[900.0, 0, 320], [0, 900.0, 240], [0, 0, 1]]), np.zeros(5), (640, 480))
    estimator = BodyPoseEstimator(body, camera)
    tracker = BodyTracker(body.name, centre_body=body.centre_body)
    truth = make_transform(rotation_from_rotvec([0.5, 0.2, 0.1]), [-45.0, -45.0, 450.0])
    ids = np.arange(4)
    corners = np.stack([camera.project(transform_points(truth, body.markers_body[i])) for i in ids])
    rng = np.random.default_rng(2)
    previous = None
    for k in range(6):
        noisy = corners + rng.normal(0, 0.2, corners.shape)
        if k >= 3:
            noisy[3] += [70.0, 15.0]    # from frame 3 on, a false "marker 3"
        m = estimator.measure_points(ids, noisy, previous_camera_from_body=previous)
        state = tracker.update(m, k * DT)
        if k >= 1:
            assert state.status is OK, state.reason
            assert np.linalg.norm(state.camera_from_body[:3, 3] - truth[:3, 3]) < 1.0
        if k >= 3:
            assert m.rejected_marker_ids == (3,) and state.markers_used == 3
        previous = state.camera_from_body if state.status is OK else previous
