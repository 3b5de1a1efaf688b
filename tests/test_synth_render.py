"""Synthetic frames: the rendered pixels agree with the ground truth and OpenCV's camera model.

These tests draw with OpenGL (llvmpipe on the CPU); each frame takes well under a second.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ar_guide.geometry.projection import pixels_to_normalized
from ar_guide.geometry.transforms import (invert_transform, look_at, make_transform, rotation_from_rotvec,
                                          transform_points)
from ar_guide.synth.degrade import Developer, SensorModel
from ar_guide.synth.optics import make_canvas, synthetic_camera
from ar_guide.synth.phantom import BOARD_DICTIONARY, make_charuco_board
from ar_guide.synth.raster import clip_from_camera, jitter_pattern
from ar_guide.synth.take import Take
from ar_guide.tracking.aruco import CharucoInterpolator, MarkerDetector, charuco_layout


def test_clip_matrix_puts_opencv_pixel_centres_on_window_pixels():
    # Window x of a pixel centre is u + 0.5 (OpenGL pixel i spans [i, i + 1]); rows are not
    # flipped, so window y is v + 0.5.  Checked against the pinhole projection u = fx X / Z + cx.
    k = np.array([[900.0, 0.0, 700.3], [0.0, 880.0, 410.7], [0.0, 0.0, 1.0]])
    size = (1400, 820)
    rng = np.random.default_rng(5)
    p = np.column_stack([rng.uniform(-300, 300, 50), rng.uniform(-200, 200, 50), rng.uniform(100, 3000, 50)])
    for jitter in ((0.0, 0.0), (0.25, -0.375)):
        m = clip_from_camera(k, size, 20.0, 20000.0, jitter)
        clip = np.column_stack([p, np.ones(len(p))]) @ m.T
        ndc = clip[:, :3] / clip[:, 3:]
        u = (ndc[:, 0] + 1) / 2 * size[0] - 0.5
        v = (ndc[:, 1] + 1) / 2 * size[1] - 0.5
        # Pixel i samples the scene at i + jitter: the scene point moves by -jitter.
        np.testing.assert_allclose(u, k[0, 0] * p[:, 0] / p[:, 2] + k[0, 2] - jitter[0], atol=1e-9)
        np.testing.assert_allclose(v, k[1, 1] * p[:, 1] / p[:, 2] + k[1, 2] - jitter[1], atol=1e-9)
        assert np.all((ndc[:, 2] > -1) & (ndc[:, 2] < 1))
    depth = np.array([[0, 0, 20.0, 1.0], [0, 0, 20000.0, 1.0]]) @ clip_from_camera(k, size, 20.0, 20000.0).T
    np.testing.assert_allclose(depth[:, 2] / depth[:, 3], [-1.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("count", [1, 2, 3, 4, 8, 16])
def test_jitter_pattern_is_zero_mean_and_spread(count):
    j = jitter_pattern(count)
    assert j.shape == (count, 2)
    np.testing.assert_allclose(j.mean(axis=0), [0.0, 0.0], atol=1e-12)
    assert np.all(np.abs(j) < 0.5)
    if count > 1:  # n-rooks: one sample per column and per row of a count x count grid
        assert len(np.unique(np.round(j[:, 0], 9))) == count
        assert len(np.unique(np.round(j[:, 1], 9))) == count


@pytest.fixture(scope="module")
def take():
    with Take(1280, 720, 10.0, 7) as t:
        yield t


@pytest.fixture(scope="module")
def charuco():
    board = make_charuco_board()
    _markers, chessboard = charuco_layout(board)
    return MarkerDetector(BOARD_DICTIONARY), CharucoInterpolator(board), chessboard


def detected_corner_errors(image, camera_from_reference, camera, charuco):
    """Detected ChArUco corners minus their projection under the true pose (px), and counts."""
    detector, interpolate, chessboard = charuco
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    detections = detector.detect(gray)
    ids, corners = interpolate(gray, detections)
    truth = camera.project(transform_points(camera_from_reference, chessboard[ids]))
    return corners - truth, len(detections), len(ids)


@pytest.mark.parametrize("t", [1.5, 3.8])  # near and frontal; 57 degrees from the board normal
def test_clean_frame_matches_ground_truth(take, charuco, t):
    # No motion blur, noise, lighting drift or compression: what remains is the renderer, the
    # remap through the distortion model and OpenCV's corner refinement.
    image = take.render(t, samples=4, motion_blur=False, noise_seed=None, lighting_drift=False)
    truth = take.truth(t)
    error, markers, corners = detected_corner_errors(image, truth.camera_from_reference, take.camera, charuco)
    assert markers == truth.visibility.visible_markers == 17
    assert corners == truth.visibility.visible_corners == 24
    distance = np.linalg.norm(error, axis=1)
    assert np.median(distance) < 0.1
    assert distance.max() < 0.3
    assert np.all(np.abs(error.mean(axis=0)) < 0.05)  # no systematic offset (pixel-centre convention)


def test_clean_frame_matches_ground_truth_in_the_distorted_corner(take, charuco):
    # Put the board in the top-left corner of the image, where the lens moves points by tens of
    # pixels: the pixels still follow cv2.projectPoints' model.
    ct_from_reference = take.phantom.ct_from_reference
    centre = transform_points(ct_from_reference, [[105.0, 75.0, 0.0]])[0]
    normal = -ct_from_reference[:3, 2]
    eye = centre + 520.0 * normal
    camera_from_ct = invert_transform(look_at(eye, centre, up=-ct_from_reference[:3, 1]))
    # Turn the camera so that the board's centre (now on the optical axis) lands on the distorted
    # pixel (330, 210): rotate the axis onto that pixel's undistorted ray.
    k = take.camera.camera_matrix
    x, y = pixels_to_normalized(np.array([[330.0, 210.0]]), k, take.camera.distortion)[0]
    ray = np.array([x, y, 1.0]) / np.linalg.norm([x, y, 1.0])
    axis = np.cross([0.0, 0.0, 1.0], ray)
    angle = np.arccos(ray[2])
    turn = make_transform(rotation_from_rotvec(axis / np.linalg.norm(axis) * angle), [0.0, 0.0, 0.0])
    camera_from_ct = turn @ camera_from_ct
    camera_from_reference = camera_from_ct @ ct_from_reference
    centre_px = take.camera.project(transform_points(camera_from_reference, [[105.0, 75.0, 0.0]]))[0]
    np.testing.assert_allclose(centre_px, [330.0, 210.0], atol=1e-6)
    corner_camera = transform_points(camera_from_reference, [[0.0, 0.0, 0.0]])[0]
    pinhole = k[:2, :2] @ (corner_camera[:2] / corner_camera[2]) + k[:2, 2]
    corner_px = take.camera.project(corner_camera[None])[0]
    assert np.linalg.norm(pinhole - corner_px) > 20.0  # the distortion matters here
    image = take.render_static(camera_from_ct, samples=4)
    error, markers, corners = detected_corner_errors(image, camera_from_reference, take.camera, charuco)
    assert markers >= 15 and corners >= 20
    distance = np.linalg.norm(error, axis=1)
    assert np.median(distance) < 0.1
    assert distance.max() < 0.3


def test_rendering_is_deterministic(take):
    a = take.render(2.0, samples=2, noise_seed=11)
    b = take.render(2.0, samples=2, noise_seed=11)
    c = take.render(2.0, samples=2, noise_seed=12)
    np.testing.assert_array_equal(a, b)
    assert np.mean(np.abs(a.astype(int) - c.astype(int))) > 0.5  # noise differs with its seed


def test_motion_blur_spreads_edges_along_the_motion(take):
    # During the fast pan the image moves tens of pixels in one exposure: sub-frames are added
    # and the frame is visibly smoother than a sharp render of the same instant.
    t = 4.55
    assert take.image_motion_px(t - take.exposure_s / 2, t + take.exposure_s / 2) > 15.0
    count = take.subframe_count(t, 2)
    assert count > 2
    sharp = take.render(t, samples=count, motion_blur=False, lighting_drift=False).astype(np.float32)
    blurred = take.render(t, samples=count, motion_blur=True, lighting_drift=False).astype(np.float32)

    def edge_energy(img):
        g = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        return float(np.mean(np.abs(cv2.Laplacian(g, cv2.CV_32F))))

    assert edge_energy(blurred) < 0.8 * edge_energy(sharp)


def test_sensor_noise_follows_the_poisson_gaussian_model():
    # Flat grey field, linear tone curve, no vignetting or blur: the output's spread is the model's
    # sqrt(I / full_well + read_noise^2), in 8-bit units.
    camera = synthetic_camera(320, 180)
    canvas = make_canvas(camera)
    sensor = SensorModel(exposure=1.0, full_well_e=1800.0, read_noise=0.0015, optics_sigma_px=0.0,
                         vignetting_power=0.0, gamma=1.0)
    developer = Developer(canvas, sensor)
    wc, hc = canvas.size
    for level in (0.1, 0.5):
        flat = np.full((hc, wc, 3), level, np.float32)
        out = developer.develop(flat, 1.0, (1.0, 1.0, 1.0), np.random.default_rng(3)).astype(np.float64)
        expected = 255.0 * np.sqrt(level / 1800.0 + 0.0015 ** 2)
        assert out.mean() == pytest.approx(255.0 * level, abs=0.2)
        assert out.std() == pytest.approx(expected, rel=0.04)


def test_vignetting_darkens_the_corners_by_the_field_angle():
    camera = synthetic_camera(320, 180)
    canvas = make_canvas(camera)
    developer = Developer(canvas, SensorModel(exposure=1.0, optics_sigma_px=0.0, vignetting_power=2.5, gamma=1.0))
    wc, hc = canvas.size
    out = developer.develop(np.full((hc, wc, 3), 0.8, np.float32), 1.0, (1.0, 1.0, 1.0), None).astype(float)
    x, y = canvas.normalized_xy[0, 0]
    expected_corner = 0.8 * (1.0 + x * x + y * y) ** -1.25 * 255.0  # cos^2.5 of the field angle
    assert out[0, 0, 1] == pytest.approx(expected_corner, abs=1.0)
    centre = out[90, 160, 1]
    assert centre == pytest.approx(0.8 * 255.0, abs=1.0)
    assert out[0, 0, 1] < 0.75 * centre
