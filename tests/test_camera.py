"""Calibration files: FileStorage round trip, other formats, clear errors."""

import numpy as np
import pytest

from ar_guide.camera import CameraModel, load_camera, save_camera
from ar_guide.errors import InputError

K = np.array([[1000.0, 0, 639.5], [0, 1002.0, 361.0], [0, 0, 1]])
D = np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01])


def test_filestorage_round_trip_is_readable_by_opencv(tmp_path):
    import cv2

    path = tmp_path / "cam.yaml"
    save_camera(path, CameraModel(K, D, (1280, 720)), extras={"rms": 0.21, "board": "charuco 7x5"})
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    np.testing.assert_array_equal(fs.getNode("camera_matrix").mat(), K)
    fs.release()
    cam = load_camera(path)
    np.testing.assert_array_equal(cam.camera_matrix, K)
    np.testing.assert_array_equal(cam.distortion, D)
    assert cam.image_size == (1280, 720)
    assert cam.extras["rms"] == pytest.approx(0.21)
    assert cam.extras["board"] == "charuco 7x5"


def test_ros_camera_info(tmp_path):
    path = tmp_path / "ost.yaml"
    path.write_text(
        "image_width: 640\nimage_height: 480\ncamera_name: cam\n"
        "camera_matrix: {rows: 3, cols: 3, data: [500, 0, 320, 0, 501, 240, 0, 0, 1]}\n"
        "distortion_model: plumb_bob\n"
        "distortion_coefficients: {rows: 1, cols: 5, data: [0.1, -0.2, 0, 0, 0]}\n"
    )
    cam = load_camera(path)
    assert cam.fx == 500 and cam.fy == 501 and cam.image_size == (640, 480)
    assert cam.distortion.size == 5


def test_sksurgery_plain_text(tmp_path):
    path = tmp_path / "calibration.txt"
    path.write_text("560.0 0.0 320.0\n0.0 560.0 240.0\n0.0 0.0 1.0\n0.1 0.0 0.0 0.0 0.0\n")
    cam = load_camera(path)
    assert cam.fx == 560 and cam.image_size is None


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="calibration file not found"):
        load_camera(tmp_path / "nope.yaml")


def test_garbage_file(tmp_path):
    path = tmp_path / "junk.txt"
    path.write_text("hello world\n")
    with pytest.raises(InputError, match="junk.txt: unrecognised calibration format"):
        load_camera(path)


def test_filestorage_without_camera_matrix(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("%YAML:1.0\n---\nimage_width: 640\n")
    with pytest.raises(InputError, match="'camera_matrix': missing"):
        load_camera(path)


def test_image_size_mismatch_is_an_error():
    cam = CameraModel(K, D, (1280, 720), source="cam.yaml")
    with pytest.raises(InputError, match="cam.yaml: calibration is for 1280x720 images but the video is 640x480"):
        cam.check_image_size(640, 480)


def test_scaled_keeps_pixel_centre_convention():
    cam = CameraModel(K, D, (1280, 720))
    half = cam.scaled(640, 360)
    # A ray through the centre of pixel (u, v) at full size passes through ((u + 0.5) / 2 - 0.5) at half size.
    point = np.array([[30.0, -20.0, 500.0]])
    uv_full = cam.project(point)[0]
    uv_half = half.project(point)[0]
    np.testing.assert_allclose(uv_half, (uv_full + 0.5) / 2 - 0.5, atol=1e-9)


def test_skew_is_refused(tmp_path):
    path = tmp_path / "skew.txt"
    path.write_text("560.0 3.0 320.0\n0.0 560.0 240.0\n0.0 0.0 1.0\n0.1 0.0 0.0 0.0 0.0\n")
    with pytest.raises(InputError, match="skew.txt: camera matrix must be"):
        load_camera(path)
