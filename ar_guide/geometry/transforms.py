"""Rigid transforms as 4x4 float64 arrays named ``<to>_from_<from>``.

``camera_from_ct = camera_from_reference @ reference_from_ct``: inner frame names cancel.
Quaternions are (w, x, y, z), as in trimesh and the pose log.  See docs/frames.md.
"""

from __future__ import annotations

import numpy as np

#: Maps OpenCV camera coordinates (x right, y down, z forward) to OpenGL camera coordinates
#: (x right, y up, z backward).  The only place where the two conventions meet.
GL_CAMERA_FROM_CAMERA = np.diag([1.0, -1.0, -1.0, 1.0])
GL_CAMERA_FROM_CAMERA.setflags(write=False)


def check_transform(matrix, name: str = "transform", atol: float = 1e-6) -> np.ndarray:
    """Return a float64 copy of a rigid 4x4 transform, or raise ValueError.

    Rules: shape (4, 4); finite; last row (0, 0, 0, 1); rotation block orthonormal with
    determinant +1 (no reflection, no scaling) within ``atol``.
    """
    m = np.array(matrix, dtype=np.float64, copy=True)
    if m.shape != (4, 4):
        raise ValueError(f"{name}: expected a 4x4 homogeneous transform, got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    if not np.allclose(m[3], [0.0, 0.0, 0.0, 1.0], atol=atol):
        raise ValueError(f"{name}: last row must be [0, 0, 0, 1], got {m[3].tolist()}")
    r = m[:3, :3]
    if not np.allclose(r @ r.T, np.eye(3), atol=atol):
        raise ValueError(f"{name}: rotation part is not orthonormal (scaling or shear)")
    if np.linalg.det(r) < 0:
        raise ValueError(f"{name}: rotation part is a reflection (determinant -1)")
    return m


def make_transform(rotation: np.ndarray, translation) -> np.ndarray:
    """4x4 transform from a (3, 3) rotation and a (3,) translation (mm)."""
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = np.asarray(translation, dtype=np.float64).reshape(3)
    return m


def invert_transform(a_from_b: np.ndarray) -> np.ndarray:
    """``b_from_a`` from ``a_from_b``, using the transpose of the rotation."""
    r = a_from_b[:3, :3]
    t = a_from_b[:3, 3]
    b_from_a = np.eye(4)
    b_from_a[:3, :3] = r.T
    b_from_a[:3, 3] = -r.T @ t
    return b_from_a


def transform_points(a_from_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Map (N, 3) points from frame b to frame a."""
    p = np.asarray(points_b, dtype=np.float64).reshape(-1, 3)
    return p @ a_from_b[:3, :3].T + a_from_b[:3, 3]


def skew(v: np.ndarray) -> np.ndarray:
    """(3, 3) cross-product matrix of a (3,) vector."""
    x, y, z = v
    return np.array([[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]])


def rotation_from_rotvec(rotvec) -> np.ndarray:
    """Rodrigues' formula: (3,) axis * angle (rad) to a (3, 3) rotation (as cv2.Rodrigues)."""
    w = np.asarray(rotvec, dtype=np.float64).reshape(3)
    theta = float(np.linalg.norm(w))
    if theta < 1e-12:
        return np.eye(3) + skew(w)
    k = skew(w / theta)
    return np.eye(3) + np.sin(theta) * k + (1.0 - np.cos(theta)) * (k @ k)


def rotvec_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rotation_from_rotvec`, stable near 0 and pi (via the quaternion)."""
    q = quaternion_from_rotation(rotation)
    w, xyz = q[0], q[1:]
    s = float(np.linalg.norm(xyz))
    if s < 1e-12:
        return 2.0 * xyz
    angle = 2.0 * np.arctan2(s, w)
    return xyz / s * angle


def transform_from_rvec_tvec(rvec, tvec) -> np.ndarray:
    """``camera_from_object`` from OpenCV's rvec/tvec (which map object to camera)."""
    return make_transform(rotation_from_rotvec(rvec), tvec)


def rvec_tvec_from_transform(camera_from_object: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV rvec, tvec, each (3, 1) float64, from a 4x4 transform."""
    rvec = rotvec_from_rotation(camera_from_object[:3, :3]).reshape(3, 1)
    tvec = camera_from_object[:3, 3].reshape(3, 1).copy()
    return rvec, tvec


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) with w >= 0 from a (3, 3) rotation (Shepperd's method)."""
    r = np.asarray(rotation, dtype=np.float64)
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    candidates = np.array([trace, r[0, 0], r[1, 1], r[2, 2]])
    i = int(np.argmax(candidates))
    if i == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif i == 1:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif i == 2:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def rotation_from_quaternion(q_wxyz) -> np.ndarray:
    """(3, 3) rotation from a quaternion (w, x, y, z); normalised first."""
    q = np.asarray(q_wxyz, dtype=np.float64).reshape(4)
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise ValueError("quaternion has zero length")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_angle_between(rotation_a: np.ndarray, rotation_b: np.ndarray) -> float:
    """Angle (rad) of the rotation that takes ``rotation_a`` to ``rotation_b``."""
    r = rotation_a.T @ rotation_b
    return float(np.linalg.norm(rotvec_from_rotation(r)))


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> np.ndarray:
    """``world_from_camera`` for an OpenCV camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should appear upwards in the image (OpenCV's -y).
    """
    eye = np.asarray(eye, dtype=np.float64)
    z = np.asarray(target, dtype=np.float64) - eye
    z /= np.linalg.norm(z)
    down = -np.asarray(up, dtype=np.float64)
    x = np.cross(down, z)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to 'up'")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return make_transform(np.column_stack([x, y, z]), eye)
