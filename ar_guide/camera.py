"""CameraModel: intrinsics, distortion and the image size they belong to; calibration files.

Reads OpenCV FileStorage YAML (``camera_matrix``, ``distortion_coefficients``,
``image_width``, ``image_height``), ROS ``camera_info`` YAML and SciKit-Surgery's plain-text
calibration (3 rows of the camera matrix, then one row of distortion).  Writes FileStorage YAML
that OpenCV's own tools read, plus ar_guide's extra keys.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError
from ar_guide.geometry import projection
from ar_guide.io.textfiles import parse_yaml, read_text


@dataclasses.dataclass(frozen=True, eq=False)
class CameraModel:
    """A calibrated pinhole camera with OpenCV's distortion model.

    camera_matrix : (3, 3) float64, pixels
    distortion : (n,) float64, n in (0, 4, 5, 8, 12), OpenCV order
    image_size : (width, height) in pixels the calibration belongs to, or None if the file
        did not say (then it cannot be checked against a video).
    extras : anything else the file held (rms, board, views, date ...), for reports.
    """

    camera_matrix: np.ndarray
    distortion: np.ndarray
    image_size: tuple[int, int] | None
    extras: dict = dataclasses.field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        k = np.array(self.camera_matrix, dtype=np.float64).reshape(3, 3)
        d = np.array(self.distortion, dtype=np.float64).ravel()
        projection.full_distortion(d)  # validates the length
        if not (np.all(np.isfinite(k)) and k[0, 0] > 0 and k[1, 1] > 0
                and np.allclose([k[0, 1], k[1, 0], k[2, 0], k[2, 1]], 0.0) and k[2, 2] == 1.0):
            raise ValueError("camera matrix must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] with fx, fy > 0 "
                             "(OpenCV's model has no skew)")
        if not np.all(np.isfinite(d)):
            raise ValueError("distortion coefficients must be finite")
        k.setflags(write=False)
        d.setflags(write=False)
        object.__setattr__(self, "camera_matrix", k)
        object.__setattr__(self, "distortion", d)

    @property
    def fx(self) -> float:
        return float(self.camera_matrix[0, 0])

    @property
    def fy(self) -> float:
        return float(self.camera_matrix[1, 1])

    @property
    def cx(self) -> float:
        return float(self.camera_matrix[0, 2])

    @property
    def cy(self) -> float:
        return float(self.camera_matrix[1, 2])

    def project(self, points_camera: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame mm to (N, 2) distorted pixels (NaN behind the camera)."""
        return projection.project_points(points_camera, self.camera_matrix, self.distortion)

    def scaled(self, width: int, height: int) -> "CameraModel":
        """The same lens at another resolution of the same sensor area (explicit rescale).

        Uses the OpenCV pixel-centre convention: u' = (u + 0.5) * s - 0.5.
        """
        if self.image_size is None:
            raise ValueError("cannot scale a calibration whose image size is unknown")
        sx = width / self.image_size[0]
        sy = height / self.image_size[1]
        k = self.camera_matrix.copy()
        k[0, 0] *= sx
        k[0, 1] *= sx
        k[1, 1] *= sy
        k[0, 2] = (k[0, 2] + 0.5) * sx - 0.5
        k[1, 2] = (k[1, 2] + 0.5) * sy - 0.5
        return dataclasses.replace(self, camera_matrix=k, image_size=(int(width), int(height)))

    def check_image_size(self, width: int, height: int, what: str = "the video") -> None:
        """Raise InputError if this calibration was made at another image size."""
        if self.image_size is None:
            return
        if tuple(self.image_size) != (int(width), int(height)):
            raise InputError(
                f"calibration is for {self.image_size[0]}x{self.image_size[1]} images but {what} "
                f"is {width}x{height}; recalibrate at this resolution",
                path=self.source,
            )


def load_camera(path: str | os.PathLike) -> CameraModel:
    """Load a calibration from FileStorage YAML/XML, ROS camera_info YAML or SciKit-Surgery text."""
    path = Path(path)
    text = read_text(path, "calibration file")
    if text.lstrip().startswith("%YAML") or "!!opencv-matrix" in text or path.suffix == ".xml":
        return _load_filestorage(path)
    if path.suffix in (".yaml", ".yml"):
        return _load_ros_yaml(path, text)
    return _load_plain_text(path, text)


def _load_filestorage(path: Path) -> CameraModel:
    import cv2

    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except cv2.error as exc:
        raise InputError(f"not a readable OpenCV FileStorage file ({exc.err.strip()})", path=path) from None
    try:
        if not fs.isOpened():
            raise InputError("not a readable OpenCV FileStorage file", path=path)
        k = fs.getNode("camera_matrix").mat()
        if k is None or k.shape != (3, 3):
            raise InputError("missing or malformed, expected a 3x3 matrix", path=path, key="camera_matrix")
        d = fs.getNode("distortion_coefficients").mat()
        if d is None:
            raise InputError("missing, expected 4, 5, 8 or 12 coefficients", path=path,
                             key="distortion_coefficients")
        d = d.ravel()
        if d.size not in projection.SUPPORTED_DISTORTION_LENGTHS:
            raise InputError(f"expected 4, 5, 8 or 12 coefficients, got {d.size}", path=path,
                             key="distortion_coefficients")
        w = fs.getNode("image_width")
        h = fs.getNode("image_height")
        size = None
        if not w.empty() and not h.empty():
            size = (int(w.real()), int(h.real()))
        extras = {}
        for key in ("rms", "rms_px", "avg_reprojection_error", "views", "board", "date", "calibration_time"):
            node = fs.getNode(key)
            if node.empty():
                continue
            if node.isString():
                extras[key] = node.string()
            elif node.isReal() or node.isInt():
                extras[key] = node.real()
        return _checked_camera(path, k, d, size, extras)
    finally:
        fs.release()


def _load_ros_yaml(path: Path, text: str) -> CameraModel:
    data = parse_yaml(text, path)
    if not isinstance(data, dict) or "camera_matrix" not in data:
        raise InputError("not a camera calibration: expected 'camera_matrix' (OpenCV FileStorage "
                         "or ROS camera_info)", path=path)
    try:
        k = np.array(data["camera_matrix"]["data"], dtype=np.float64).reshape(3, 3)
    except (KeyError, TypeError, ValueError):
        raise InputError("expected rows, cols and 9 numbers in 'data'", path=path, key="camera_matrix") from None
    try:
        d = np.array(data["distortion_coefficients"]["data"], dtype=np.float64).ravel()
    except (KeyError, TypeError, ValueError):
        raise InputError("expected a list of numbers in 'data'", path=path,
                         key="distortion_coefficients") from None
    if d.size not in projection.SUPPORTED_DISTORTION_LENGTHS:
        raise InputError(f"expected 4, 5, 8 or 12 coefficients, got {d.size}", path=path,
                         key="distortion_coefficients")
    size = None
    if "image_width" in data and "image_height" in data:
        size = (int(data["image_width"]), int(data["image_height"]))
    return _checked_camera(path, k, d, size, {})


def _load_plain_text(path: Path, text: str) -> CameraModel:
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            rows.append([float(v) for v in line.replace(",", " ").split()])
        except ValueError:
            raise InputError(f"unrecognised calibration format (line {line[:40]!r})", path=path) from None
    if len(rows) < 4 or any(len(r) != 3 for r in rows[:3]):
        raise InputError("unrecognised calibration format: expected OpenCV YAML, ROS camera_info, "
                         "or 3 rows of the camera matrix and a row of distortion", path=path)
    k = np.array(rows[:3])
    d = np.array(rows[3])
    if d.size not in projection.SUPPORTED_DISTORTION_LENGTHS:
        raise InputError(f"expected 4, 5, 8 or 12 distortion coefficients, got {d.size}", path=path)
    return _checked_camera(path, k, d, None, {})


def _checked_camera(path: Path, k, d, size, extras) -> CameraModel:
    try:
        return CameraModel(k, d, size, extras, source=str(path))
    except ValueError as exc:
        raise InputError(str(exc), path=path) from None


def save_camera(path: str | os.PathLike, camera: CameraModel, extras: dict | None = None) -> None:
    """Write OpenCV FileStorage YAML; ``extras`` adds numbers, strings, arrays, and dicts / lists
    of those as FileStorage maps / sequences (rms_px, board, warnings ...)."""
    import cv2

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    try:
        if camera.image_size is not None:
            fs.write("image_width", int(camera.image_size[0]))
            fs.write("image_height", int(camera.image_size[1]))
        fs.write("camera_matrix", np.asarray(camera.camera_matrix))
        fs.write("distortion_coefficients", np.asarray(camera.distortion).reshape(1, -1))
        merged = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
        merged.update(camera.extras)
        merged.update(extras or {})
        for key, value in merged.items():
            _write_node(fs, key, value)
    finally:
        fs.release()


def _write_node(fs, key: str, value) -> None:
    """One FileStorage entry: arrays as matrices, numbers, strings; dicts as maps and lists or
    tuples as sequences (nested), so OpenCV's readers and ``cv2.FileStorage`` read them back."""
    import cv2

    if isinstance(value, np.ndarray):
        fs.write(key, value)
    elif isinstance(value, (bool, np.bool_)):
        fs.write(key, int(bool(value)))
    elif isinstance(value, (int, np.integer)):
        fs.write(key, int(value))
    elif isinstance(value, (float, np.floating)):
        fs.write(key, float(value))
    elif isinstance(value, dict):
        fs.startWriteStruct(key, cv2.FileNode_MAP)
        for k, v in value.items():
            _write_node(fs, str(k), v)
        fs.endWriteStruct()
    elif isinstance(value, (list, tuple)):
        flow = all(isinstance(v, (int, float, np.integer, np.floating)) for v in value)
        fs.startWriteStruct(key, cv2.FileNode_SEQ | (cv2.FileNode_FLOW if flow else 0))
        for v in value:
            _write_node(fs, "", v)
        fs.endWriteStruct()
    else:
        # OpenCV escapes ' as \' inside double quotes, which YAML readers other than OpenCV's reject.
        fs.write(key, str(value).replace("'", "\u2019"))
