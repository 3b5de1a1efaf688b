"""The demo sequence supports the demo's accuracy targets (slow: generates the 10 s sequence).

A plain tracker (ArUco detection through the adapter, ChArUco corners, IPPE + Levenberg-Marquardt
on all corners) run on the compressed demo video must reach, over the frames where it tracks
the board: overlay error at the target (pixel distance between the target's projection under the
estimated and the true pose) median <= 1 px and 95th percentile <= 3 px, rotation error median
<= 0.5 degree; and it must find no marker while the ground truth says the board is out of view.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import yaml

from ar_guide.camera import load_camera
from ar_guide.geometry.transforms import rotation_angle_between, transform_from_rvec_tvec, transform_points
from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence, load_ground_truth
from ar_guide.tracking.aruco import CharucoInterpolator, MarkerDetector, charuco_layout, make_charuco_board

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AR_GUIDE_CACHE", str(tmp_path_factory.getbasetemp() / "ar_guide_cache"))
        return ensure_sequence(DEMO_SPEC, progress=False)


def test_demo_sequence_supports_the_accuracy_targets(demo):
    truth = load_ground_truth(demo.ground_truth)
    camera = load_camera(demo.calibration)
    scene = yaml.safe_load(demo.scene.read_text())
    ref = scene["reference"]
    board = make_charuco_board(tuple(ref["squares"]), ref["square_mm"], ref["marker_mm"], ref["dictionary"])
    _markers, chessboard = charuco_layout(board)
    detector, interpolate = MarkerDetector(ref["dictionary"]), CharucoInterpolator(board)
    reference_from_ct = np.array(scene["registration"]["reference_from_ct"])
    target_ref = transform_points(reference_from_ct, [scene["targets"][0]["position"]])

    cap = cv2.VideoCapture(str(demo.video))
    pixel_errors, rotation_errors, false_positives, tracked = [], [], [], []
    i = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        detections = detector.detect(gray)
        if truth.visible_markers[i] == 0 and len(detections):
            false_positives.append(i)
        ids, corners = interpolate(gray, detections)
        if len(ids) >= 6:
            obj = chessboard[ids]
            img = corners.reshape(-1, 1, 2).astype(np.float64)
            _ok, rvec, tvec = cv2.solvePnP(obj, img, camera.camera_matrix, camera.distortion,
                                           flags=cv2.SOLVEPNP_IPPE)
            rvec, tvec = cv2.solvePnPRefineLM(obj, img, camera.camera_matrix, camera.distortion, rvec, tvec)
            estimate = transform_from_rvec_tvec(rvec.ravel(), tvec.ravel())
            true = truth.camera_from_reference[i]
            uv_est = camera.project(transform_points(estimate, target_ref))
            uv_true = camera.project(transform_points(true, target_ref))
            pixel_errors.append(float(np.linalg.norm(uv_est - uv_true)))
            rotation_errors.append(np.degrees(rotation_angle_between(estimate[:3, :3], true[:3, :3])))
            tracked.append(i)
        i += 1
    cap.release()
    assert i == len(truth) == 300
    assert false_positives == []
    in_view = np.flatnonzero(truth.visible_markers > 0)
    # Tracked in most frames that show the board (not in the fast pan in and out of view).
    assert len(tracked) >= 0.85 * len(in_view)
    e = np.array(pixel_errors)
    assert np.median(e) <= 1.0
    assert np.percentile(e, 95) <= 3.0
    assert np.median(rotation_errors) <= 0.5
