"""Tracking on real third-party photos and video (../shared/data; skipped when absent)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from ar_guide.camera import load_camera
from ar_guide.geometry.transforms import rotation_angle_between, transform_points
from ar_guide.tracking.aruco import DetectorSettings, MarkerDetector
from ar_guide.tracking.bodies import charuco_body, load_sksurgery_body
from ar_guide.tracking.pose import BodyPoseEstimator
from ar_guide.tracking.status import BodyTracker, TrackingStatus

pytestmark = pytest.mark.shared_data

# OpenCV's ArucoDetector with its own defaults and no corner refinement: how the gold corners
# of OpenCV's tests were made (they come out identical, see below).
OPENCV_RAW = DetectorSettings(threshold_windows_px=(3, 13, 23), min_marker_side_px=0.03 * 640 / 2.8,
                              subpixel=False, refine_edges=False)


def _gold(shared_data):
    folder = shared_data / "markers" / "opencv_tutorial"
    cases = json.loads((folder / "gold_marker_corners.json").read_text())
    out = []
    for case in cases.values():
        if isinstance(case, dict):
            gray = cv2.imread(str(folder / case["image_in_opencv_extra"]), cv2.IMREAD_GRAYSCALE)
            corners = {int(k): np.array(v, dtype=np.float64) for k, v in case["markers"].items()}
            out.append((case["image_in_opencv_extra"], gray, case["dictionary"], corners))
    return out


def _chessboard_predicted_corners(shared_data, gray, detections):
    """Marker corners predicted by the board pose fitted to the ChArUco (chessboard) corners only.

    Saddle points are unbiased by blur, ink spread and exposure, and independent of the marker
    corners: an independent reference for the marker corners of the same photo.
    """
    camera = load_camera(shared_data / "calibration" / "opencv_charuco_tutorial" / "tutorial_camera_charuco.yml")
    board = charuco_body("board", (5, 7), 40.0, 20.0, "DICT_6X6_250")
    result = BodyPoseEstimator(board, camera).measure(detections, gray)
    assert result.points_used >= 12 and result.reprojection_rms_px < 0.3
    return {i: camera.project(transform_points(result.camera_from_body, c)) for i, c in board.markers_body.items()}


def test_gold_corners_are_opencvs_raw_contour_vertices(shared_data):
    """OpenCV's gold corners are its unrefined integer contour vertices, reproduced exactly."""
    for name, gray, dictionary, gold in _gold(shared_data):
        detections = MarkerDetector(dictionary, OPENCV_RAW).detect(gray)
        found = {int(i): c for i, c in zip(detections.ids, detections.corners_px)}
        assert sorted(found) == sorted(gold), name
        for i, corners in gold.items():
            np.testing.assert_allclose(found[i], corners, atol=1e-3, err_msg=f"{name} marker {i}")


def test_default_detector_on_gold_photos(shared_data):
    """Every gold marker is found with the product's default settings, and the corners match
    the gold within 1 px -- except where the gold itself is off.

    The gold corners lie on the dark side of the edge (integer contour vertices): 0.7-0.8 px
    inside the true corner on the ChArUco photos, against the chessboard-fitted reference below,
    plus up to 0.5 px of rounding.  Our sub-pixel corners are 0.2 px inside (printing).  So a
    corner may differ from gold by up to about 1.3 px; on the ChArUco photos every corner that
    differs by more than 1 px is closer than the gold to the independent reference.
    """
    for name, gray, dictionary, gold in _gold(shared_data):
        detections = MarkerDetector(dictionary, DetectorSettings()).detect(gray)
        found = {int(i): c.astype(np.float64) for i, c in zip(detections.ids, detections.corners_px)}
        assert sorted(found) == sorted(gold), name
        reference = (_chessboard_predicted_corners(shared_data, gray, detections)
                     if name.startswith("ch") else None)
        for i, corners in gold.items():
            deviation = np.abs(found[i] - corners).max(axis=1)
            assert deviation.max() < 1.3, (name, i, deviation)
            if reference is None:
                continue   # singlemarkersoriginal: 1 of 24 corners is 1.15 px from gold
            for k in np.flatnonzero(deviation > 1.0):
                ours = np.linalg.norm(found[i][k] - reference[i][k])
                theirs = np.linalg.norm(corners[k] - reference[i][k])
                assert ours < theirs, (name, i, k, ours, theirs)
        far = sum(int((np.abs(found[i] - c).max(axis=1) > 1.0).sum()) for i, c in gold.items())
        assert far <= 0.1 * 4 * len(gold), (name, far)   # measured: 1 of 24, 6 of 68, 4 of 52


def test_subpixel_corners_are_closer_to_the_charuco_reference_than_gold(shared_data):
    for name, gray, dictionary, gold in _gold(shared_data):
        if not name.startswith("ch"):
            continue
        detections = MarkerDetector(dictionary).detect(gray)
        reference = _chessboard_predicted_corners(shared_data, gray, detections)
        ours = [np.linalg.norm(c - reference[int(i)], axis=1) for i, c in zip(detections.ids, detections.corners_px)]
        theirs = [np.linalg.norm(gold[i] - reference[i], axis=1) for i in gold]
        plain = MarkerDetector(dictionary, DetectorSettings(refine_edges=False)).detect(gray)
        subpix = [np.linalg.norm(c - reference[int(i)], axis=1) for i, c in zip(plain.ids, plain.corners_px)]
        # Measured: ours 0.45 px, OpenCV cornerSubPix 0.86-0.93 px, gold 0.87-0.99 px.
        assert np.mean(np.concatenate(ours)) < 0.6 * np.mean(np.concatenate(theirs)), name
        assert np.mean(np.concatenate(ours)) < 0.6 * np.mean(np.concatenate(subpix)), name


# ----------------------------------------------------------------------------- SciKit-Surgery video

AUTHORS_T = np.array([-82.29, 48.50, 243.99])
AUTHORS_R = np.array([[-0.847, 0.519, -0.116], [-0.487, -0.671, 0.559], [0.212, 0.530, 0.821]])


def _video(shared_data):
    folder = shared_data / "video" / "sksurgery_aruco"
    capture = cv2.VideoCapture(str(folder / "multipattern.avi"))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    capture.release()
    camera = load_camera(folder / "calibration.txt")
    reference = load_sksurgery_body(folder / "reference.txt", "reference", "DICT_ARUCO_ORIGINAL")
    pointer = load_sksurgery_body(folder / "pointer.txt", "pointer", "DICT_ARUCO_ORIGINAL")
    return frames, fps, camera, reference, pointer


def test_reference_pose_in_frame0_matches_the_authors(shared_data):
    frames, _, camera, reference, _ = _video(shared_data)
    detections = MarkerDetector("DICT_ARUCO_ORIGINAL").detect(frames[0])
    result = BodyPoseEstimator(reference, camera).measure(detections, frames[0])
    assert result.markers_used == 11 and 100 not in result.marker_ids      # 11 of 12 seen
    assert result.rejected_marker_ids == ()
    # The authors' value (their regression test, same nominal camera): within 2 mm and 1 degree.
    # We measure 1.7 mm and 0.1 degree; nearly all of it is depth (242.4 vs 244.0 mm): OpenCV's
    # unrefined corners, which they used, sit ~0.7 px inside the markers, making them look smaller
    # and further away (with OpenCV's cornerSubPix corners we get 0.7 mm).
    assert np.linalg.norm(result.camera_from_body[:3, 3] - AUTHORS_T) < 2.0
    assert np.degrees(rotation_angle_between(AUTHORS_R, result.camera_from_body[:3, :3])) < 1.0
    assert result.reprojection_rms_px < 1.0
    assert result.ambiguity_ratio > 4.0


def test_sksurgery_files_list_corners_in_opencv_order(shared_data):
    """Fitting frame 0 with the rows as read gives < 1 px RMS; any other corner order, > 20 px."""
    frames, _, camera, reference, _ = _video(shared_data)
    detections = MarkerDetector("DICT_ARUCO_ORIGINAL").detect(frames[0])
    keep = np.isin(detections.ids, reference.marker_ids)
    img = detections.corners_px[keep].reshape(-1, 2).astype(np.float64)
    for shift in range(4):
        for mirror in (False, True):
            order = np.roll([0, 3, 2, 1] if mirror else [0, 1, 2, 3], shift)
            obj = np.concatenate([reference.markers_body[int(i)][order] for i in detections.ids[keep]])
            ok, rvec, tvec = cv2.solvePnP(obj, img, camera.camera_matrix, camera.distortion, flags=cv2.SOLVEPNP_SQPNP)
            rvec, tvec = cv2.solvePnPRefineLM(obj, img, camera.camera_matrix, camera.distortion, rvec, tvec)
            uv, _ = cv2.projectPoints(obj, rvec, tvec, camera.camera_matrix, camera.distortion)
            rms = np.sqrt(np.mean(np.sum((uv.reshape(-1, 2) - img) ** 2, axis=1)))
            if shift == 0 and not mirror:
                assert rms < 1.0
            else:
                assert rms > 20.0, (shift, mirror, rms)


def test_video_tracking_reference_and_pointer(shared_data):
    """All 10 frames through detector, estimator and tracker, as the pipeline does.

    Reference (12 markers, 70 mm wide): OK from frame 0 on (11 unambiguous markers are acquired at
    once, TrackingGates.instant_acquire_min_markers); the hand-held camera drifts slowly (2 mm
    over the 10 frames, measured), so consecutive poses differ by at most 1.1 mm: no jumps.  Pointer (5 of its 6 markers seen):
    a pose with < 1 px error in every frame, but ambiguous by the ratio test (ratio 2.5-2.8 with
    this nominal camera), so the plain body rule never shows it as OK -- by design, see status.py.
    Tracked as a tool (the tool rule of status.py; tests/test_tools.py) it is OK from the 3rd frame.
    """
    frames, fps, camera, reference, pointer = _video(shared_data)
    detector = MarkerDetector("DICT_ARUCO_ORIGINAL")
    estimators = {b.name: BodyPoseEstimator(b, camera) for b in (reference, pointer)}
    trackers = {b.name: BodyTracker(b.name, centre_body=b.centre_body) for b in (reference, pointer)}
    previous = {"reference": None, "pointer": None}
    previous_pose = None
    for k, gray in enumerate(frames):
        detections = detector.detect(gray)
        states = {}
        for name in estimators:
            measurement = estimators[name].measure(detections, gray, previous[name])
            states[name] = trackers[name].update(measurement, k / fps)
            if states[name].status is TrackingStatus.OK:
                previous[name] = states[name].camera_from_body
            if name == "pointer":
                assert measurement.markers_used == 5 and measurement.reprojection_rms_px < 1.0
                assert measurement.ambiguity_ratio < 4.0
        ref = states["reference"]
        assert ref.status is TrackingStatus.OK, (k, ref.reason)
        if previous_pose is not None:
            assert np.linalg.norm(ref.camera_from_body[:3, 3] - previous_pose[:3, 3]) < 1.5, k
        previous_pose = ref.camera_from_body
        assert states["pointer"].status is TrackingStatus.LOST
        assert states["pointer"].reason.startswith("ambiguous planar pose (ratio ")
    assert len(frames) == 10


def test_old_aruco3_default_lost_the_small_markers(shared_data):
    """Regression: ArUco3 with minMarkerLengthRatioOriginalImg 0.02 (the previous default) finds
    2 of the 17 ChArUco markers on choriginal.jpg; the default now finds all of them."""
    folder = shared_data / "markers" / "opencv_tutorial"
    gray = cv2.imread(str(folder / "choriginal.jpg"), cv2.IMREAD_GRAYSCALE)
    old = DetectorSettings(aruco3=True, min_marker_side_px=16 + 0.02 * 640, refine_edges=False)
    assert len(MarkerDetector("DICT_6X6_250", old).detect(gray)) <= 2
    assert len(MarkerDetector("DICT_6X6_250").detect(gray)) == 17
