"""The ArUco adapter: detector settings, detection and sub-pixel corners on exact synthetic images."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ar_guide.camera import CameraModel
from ar_guide.constants import EdgeRefinement
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.tracking import aruco
from ar_guide.tracking.aruco import (CharucoInterpolator, DetectorSettings, Detections, MarkerDetector,
                                     detector_parameters, refine_marker_corners)
from ar_guide.tracking.bodies import charuco_body
from tracking_images import board_texture, degrade, marker_sheet, render_plane

# 640x480, barrel distortion; markers of 30 mm at 600-900 mm are 20-35 px wide.
CAMERA = CameraModel(np.array([[700.0, 0.0, 321.0], [0.0, 703.0, 238.0], [0.0, 0.0, 1.0]]),
                     np.array([-0.3, 0.12, 0.001, -0.0008, -0.03]), (640, 480))
IDS = [3, 17, 42, 64, 99, 120, 150, 181, 200, 233, 240, 249]


def _sheet_scene(seed, inverted=False, distance=750.0, tilt=(0.5, -0.3, 0.2)):
    """Rendered image of a 4x3 sheet of 30 mm DICT_6X6_250 markers, and the true corners."""
    rng = np.random.default_rng(seed)
    texture, mm_per_px, markers = marker_sheet("DICT_6X6_250", IDS, 4, 30.0, inverted=inverted)
    h, w = texture.shape
    centre = np.array([w, h, 0.0]) * mm_per_px / 2
    rotation = rotation_from_rotvec(tilt)
    camera_from_sheet = make_transform(rotation, [0.0, 0.0, distance] - rotation @ centre)
    gray = render_plane(texture, mm_per_px, CAMERA, camera_from_sheet, (640, 480), supersample=3,
                        background=0 if inverted else 255)
    gray = degrade(gray, rng, blur_sigma_px=0.7, noise=2.0)
    truth = {i: CAMERA.project(transform_points(camera_from_sheet, c)) for i, c in markers.items()}
    return gray, truth


@pytest.fixture(scope="module")
def sheet():
    return _sheet_scene(1)


def _errors(detections, truth):
    assert sorted(detections.ids.tolist()) == sorted(truth)
    return np.concatenate([np.linalg.norm(c - truth[int(i)], axis=1) for i, c in zip(detections.ids, detections.corners_px)])


def test_default_detector_finds_small_markers_with_subpixel_corners(sheet):
    gray, truth = sheet
    sides = [np.linalg.norm(np.diff(c, axis=0, append=c[:1]), axis=1).mean() for c in truth.values()]
    assert 18 < min(sides) and max(sides) < 40          # the case that matters: small markers
    detections = MarkerDetector("DICT_6X6_250").detect(gray)
    assert detections.corners_px.dtype == np.float32 and detections.ids.dtype == np.int32
    errors = _errors(detections, truth)
    # Edge refinement: about 0.05 px on average (measured 0.045 mean, 0.13 max here).
    assert errors.mean() < 0.1 and errors.max() < 0.3, (errors.mean(), errors.max())
    # OpenCV's cornerSubPix alone is an order of magnitude worse on markers this small.
    plain = _errors(MarkerDetector("DICT_6X6_250", DetectorSettings(refine_edges=False)).detect(gray), truth)
    assert plain.mean() > 3 * errors.mean()


def test_corners_do_not_depend_on_the_threshold_window(sheet):
    gray, truth = sheet
    results = {}
    for windows in [(5,), (7,), (5, 15), (3, 13, 23)]:
        d = MarkerDetector("DICT_6X6_250", DetectorSettings(threshold_windows_px=windows)).detect(gray)
        results[windows] = {int(i): c for i, c in zip(d.ids, d.corners_px)}
        assert sorted(results[windows]) == sorted(truth)
    base = results[(5, 15)]
    # The refinement stops iterating once corners move less than converged_px (0.1 px), so
    # different starting quads may end that far apart (OpenCV's own differ by up to 2 px here).
    for other in results.values():
        assert max(np.abs(other[i] - base[i]).max() for i in base) < EdgeRefinement().converged_px


def test_inverted_markers(sheet):
    gray, truth = _sheet_scene(2, inverted=True)
    assert len(MarkerDetector("DICT_6X6_250").detect(gray)) == 0
    detections = MarkerDetector("DICT_6X6_250", DetectorSettings(detect_inverted=True)).detect(gray)
    errors = _errors(detections, truth)
    assert errors.mean() < 0.1 and errors.max() < 0.3


def test_refinement_of_a_partly_covered_edge():
    """Tape over the middle of a marker's side: the corners stay accurate (the profiles there
    have no contrast and are ignored; the line fits use the rest of the edge)."""
    gray, truth = _sheet_scene(3)
    plain = MarkerDetector("DICT_6X6_250", DetectorSettings(refine_edges=False)).detect(gray)
    k = list(plain.ids).index(42)
    c = truth[42]
    mid = ((c[1] + c[2]) / 2).astype(int)                     # the middle of the right-hand side
    taped = gray.copy()
    taped[mid[1] - 2:mid[1] + 3, mid[0] - 6:mid[0] + 7] = 128
    refined = refine_marker_corners(taped, plain.corners_px[k:k + 1], 8)[0]
    assert np.linalg.norm(refined - truth[42], axis=1).max() < 0.3
    # A corner whose neighbourhood is hidden entirely keeps OpenCV's position.
    corner = truth[42][1].astype(int)
    hidden = gray.copy()
    hidden[corner[1] - 8:corner[1] + 9, corner[0] - 8:corner[0] + 9] = 128
    refined = refine_marker_corners(hidden, plain.corners_px[k:k + 1], 8)[0]
    np.testing.assert_allclose(refined[1], plain.corners_px[k, 1], atol=1e-4)


def test_no_markers_in_texture():
    rng = np.random.default_rng(4)
    noise = rng.normal(128, 40, (60, 80)).astype(np.float32)
    import cv2

    clutter = cv2.resize(noise, (640, 480), interpolation=cv2.INTER_CUBIC)
    gray = np.clip(clutter, 0, 255).astype(np.uint8)
    for name in ("DICT_4X4_50", "DICT_6X6_250", "DICT_ARUCO_ORIGINAL"):
        assert len(MarkerDetector(name).detect(gray)) == 0


def test_charuco_interpolation_on_a_rendered_board():
    body = charuco_body("board", (7, 5), 25.0, 18.0, "DICT_5X5_100")
    texture, mm_per_px = board_texture(body.board, 25.0, (7, 5), px_per_square=100)
    rotation = rotation_from_rotvec([0.45, 0.3, -0.2])
    camera_from_board = make_transform(rotation, [0.0, 0.0, 420.0] - rotation @ body.centre_body)
    gray = degrade(render_plane(texture, mm_per_px, CAMERA, camera_from_board, (640, 480), supersample=2),
                   np.random.default_rng(5))
    detections = MarkerDetector("DICT_5X5_100").detect(gray)
    assert sorted(detections.ids.tolist()) == list(range(17))
    ids, corners = CharucoInterpolator(body.board)(gray, detections)
    assert sorted(ids.tolist()) == list(range(24))
    truth = CAMERA.project(transform_points(camera_from_board, body.charuco_corners_body[ids]))
    errors = np.linalg.norm(corners - truth, axis=1)
    assert errors.mean() < 0.1 and errors.max() < 0.25
    empty_ids, empty = CharucoInterpolator(body.board)(gray, Detections.empty("DICT_5X5_100"))
    assert empty_ids.shape == (0,) and empty.shape == (0, 2)


def test_detector_settings_validation():
    with pytest.raises(ValueError, match="odd sizes >= 3"):
        DetectorSettings(threshold_windows_px=(4,))
    with pytest.raises(ValueError, match="constant step"):
        DetectorSettings(threshold_windows_px=(5, 9, 15))
    with pytest.raises(ValueError, match="min_marker_side_px must be >= 0"):
        DetectorSettings(min_marker_side_px=-1)
    assert DetectorSettings(threshold_windows_px=[5, 15]).threshold_windows_px == (5, 15)


def test_detector_parameters_follow_the_image_size():
    default = DetectorSettings()
    p = detector_parameters(default, (1280, 720))
    assert (p.adaptiveThreshWinSizeMin, p.adaptiveThreshWinSizeMax) == (7, 7)
    p2 = detector_parameters(dataclasses.replace(default, threshold_windows_px=(5, 15)), (1280, 720))
    assert (p2.adaptiveThreshWinSizeMin, p2.adaptiveThreshWinSizeMax, p2.adaptiveThreshWinSizeStep) == (5, 15, 10)
    assert not p.useAruco3Detection
    # Contour length of a 16 px marker turned 45 degrees: 4 * 16 * 0.7 px of 1280.
    assert p.minMarkerPerimeterRate == pytest.approx(4 * 16 * 0.7 / 1280)
    # ArUco3: a 40 px marker maps to the 16 px canonical side: ratio (40 - 16) / 1920.
    p3 = detector_parameters(dataclasses.replace(default, aruco3=True, min_marker_side_px=40), (1920, 1080))
    assert p3.useAruco3Detection and p3.minSideLengthCanonicalImg == 16
    assert p3.minMarkerLengthRatioOriginalImg == pytest.approx(24 / 1920)


def test_detector_input_checks_and_dictionary_errors():
    detector = MarkerDetector("6x6_250")
    assert detector.dictionary == "DICT_6X6_250"
    with pytest.raises(ValueError, match=r"expected a \(H, W\) uint8 grey image"):
        detector.detect(np.zeros((10, 10, 3), np.uint8))
    assert len(detector.detect(np.full((48, 64), 255, np.uint8))) == 0
    with pytest.raises(InputError, match="unknown ArUco dictionary 'DICT_5X5_7'; expected one of DICT_4X4_100"):
        aruco.get_dictionary("DICT_5X5_7", path="scene.yaml")


def test_smallest_marker_side():
    # Face-on: f * s / d.  At 60 degrees the mean side is (1 + cos 60) / 2 = 3/4 of that.
    assert aruco.smallest_marker_side_px(20.0, 1000.0, 500.0, 0.0) == pytest.approx(40.0)
    assert aruco.smallest_marker_side_px(20.0, 1000.0, 500.0, 60.0) == pytest.approx(30.0)
