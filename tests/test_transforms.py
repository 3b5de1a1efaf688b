"""Transforms: seeded round trips against OpenCV and closed-form cases."""

import cv2
import numpy as np
import pytest

from ar_guide.geometry import transforms as tf


def random_rotations(rng, n):
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = rng.uniform(0.0, np.pi, size=n)
    return [tf.rotation_from_rotvec(a * t) for a, t in zip(axes, angles)]


def test_rotvec_matches_cv2_rodrigues():
    rng = np.random.default_rng(1)
    for _ in range(200):
        rotvec = rng.normal(size=3) * rng.uniform(0, 1.0)
        expected, _ = cv2.Rodrigues(rotvec)
        np.testing.assert_allclose(tf.rotation_from_rotvec(rotvec), expected, atol=1e-12)


def test_rotvec_round_trip_including_near_pi():
    rng = np.random.default_rng(2)
    for rotation in random_rotations(rng, 200) + [tf.rotation_from_rotvec([np.pi - 1e-9, 0, 0])]:
        back = tf.rotation_from_rotvec(tf.rotvec_from_rotation(rotation))
        np.testing.assert_allclose(back, rotation, atol=1e-9)


def test_quaternion_round_trip_and_sign():
    rng = np.random.default_rng(3)
    for rotation in random_rotations(rng, 200):
        q = tf.quaternion_from_rotation(rotation)
        assert q[0] >= 0.0
        assert abs(np.linalg.norm(q) - 1.0) < 1e-12
        np.testing.assert_allclose(tf.rotation_from_quaternion(q), rotation, atol=1e-12)


def test_quaternion_known_answer():
    # 90 degrees about z: q = (cos 45, 0, 0, sin 45).
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(tf.quaternion_from_rotation(rotation), [np.sqrt(0.5), 0, 0, np.sqrt(0.5)], atol=1e-15)


def test_invert_and_compose_cancel_inner_frames():
    rng = np.random.default_rng(4)
    r1, r2 = random_rotations(rng, 2)
    camera_from_reference = tf.make_transform(r1, rng.normal(size=3) * 100)
    reference_from_ct = tf.make_transform(r2, rng.normal(size=3) * 100)
    camera_from_ct = camera_from_reference @ reference_from_ct
    points_ct = rng.normal(size=(10, 3)) * 50
    via = tf.transform_points(camera_from_reference, tf.transform_points(reference_from_ct, points_ct))
    np.testing.assert_allclose(tf.transform_points(camera_from_ct, points_ct), via, atol=1e-9)
    np.testing.assert_allclose(tf.invert_transform(camera_from_ct) @ camera_from_ct, np.eye(4), atol=1e-12)


def test_rvec_tvec_match_opencv_meaning():
    # OpenCV's rvec/tvec map object points to camera points: x_cam = R x_obj + t.
    rng = np.random.default_rng(5)
    rvec = rng.normal(size=3) * 0.5
    tvec = np.array([10.0, -20.0, 400.0])
    camera_from_object = tf.transform_from_rvec_tvec(rvec, tvec)
    obj = rng.normal(size=(5, 3)) * 30
    k = np.array([[800.0, 0, 320], [0, 800, 240], [0, 0, 1]])
    uv_cv, _ = cv2.projectPoints(obj, rvec, tvec, k, None)
    cam = tf.transform_points(camera_from_object, obj)
    uv = (cam[:, :2] / cam[:, 2:]) * 800 + [320, 240]
    np.testing.assert_allclose(uv, uv_cv.reshape(-1, 2), atol=1e-9)
    r2, t2 = tf.rvec_tvec_from_transform(camera_from_object)
    np.testing.assert_allclose(r2.ravel(), rvec, atol=1e-12)
    np.testing.assert_allclose(t2.ravel(), tvec)


def test_rotation_angle_between():
    a = tf.rotation_from_rotvec([0.1, 0.2, 0.3])
    b = a @ tf.rotation_from_rotvec([0.0, 0.0, np.radians(7.0)])
    assert tf.rotation_angle_between(a, b) == pytest.approx(np.radians(7.0), abs=1e-12)


@pytest.mark.parametrize(
    "matrix, message",
    [
        (np.eye(3), "expected a 4x4"),
        (np.diag([1.0, 1.0, -1.0, 1.0]), "reflection"),
        (np.diag([2.0, 2.0, 2.0, 1.0]), "not orthonormal"),
        (np.vstack([np.eye(4)[:3], [0, 0, 1, 1]]), "last row"),
        (np.full((4, 4), np.nan), "NaN"),
    ],
)
def test_check_transform_rejects(matrix, message):
    with pytest.raises(ValueError, match=message):
        tf.check_transform(matrix)


def test_gl_flip_is_read_only_and_involutive():
    with pytest.raises(ValueError):
        tf.GL_CAMERA_FROM_CAMERA[0, 0] = 2.0
    np.testing.assert_array_equal(tf.GL_CAMERA_FROM_CAMERA @ tf.GL_CAMERA_FROM_CAMERA, np.eye(4))


def test_look_at_points_z_at_target():
    world_from_camera = tf.look_at([0, 0, -500], [0, 0, 0], up=[0, -1, 0])
    np.testing.assert_allclose(world_from_camera[:3, 2], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(world_from_camera[:3, 1], [0, 1, 0], atol=1e-12)
