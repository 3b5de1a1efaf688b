"""Files the live app writes besides a recording: screenshots with their pose sidecar, and where
recordings go.

A screenshot is a PNG of the composited frame as shown, and a JSON sidecar with the same stem that
says what the frame showed: frame index and times, each body's status and pose, the
registration, the active target, the layers shown.  Both are written whole or not at all (a
temporary file renamed into place), so a crash never leaves half a screenshot.
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import cv2
import numpy as np

from ar_guide import __version__
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import quaternion_from_rotation
from ar_guide.io.report import write_json

#: Where key r records when no --record folder was given, relative to the working directory.
DEFAULT_RECORDINGS = Path("ar_guide_recordings")
#: Where screenshots go unless --screenshots says otherwise.
DEFAULT_SCREENSHOTS = Path("ar_guide_screenshots")


def is_unused_folder(path: Path) -> bool:
    """True if ``path`` does not exist, or is an empty folder."""
    if not path.exists():
        return True
    return path.is_dir() and not any(path.iterdir())


def check_record_folder(path: Path) -> Path:
    """``--record DIR`` at start: DIR must be new or empty (a recording is never overwritten) and
    its parent must be writable; InputError otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError("exists and is not a folder; --record takes a new folder", path=path, key="--record")
    if not is_unused_folder(path):
        raise InputError("already holds files; name a new folder (a recording is never overwritten)",
                         path=path, key="--record")
    parent = path.resolve().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot create the recording folder: {parent} is not writable", path=path, key="--record")
    return path


def next_recording_folder(base: Path | None, now: datetime.datetime | None = None) -> Path:
    """The folder for a new recording.

    ``base`` (the --record folder) is used as it is while unused; once it holds a recording, the
    next ones go to ``base-2``, ``base-3`` ...  Without ``base``: ``ar_guide_recordings/live-
    YYYYmmdd-HHMMSS`` (``-2`` ... appended within the same second).
    """
    if base is None:
        now = now or datetime.datetime.now()
        base = DEFAULT_RECORDINGS / f"live-{now:%Y%m%d-%H%M%S}"
    base = Path(base)
    if is_unused_folder(base):
        return base
    k = 2
    while not is_unused_folder(base.with_name(f"{base.name}-{k}")):
        k += 1
    return base.with_name(f"{base.name}-{k}")


def state_record(state) -> dict:
    """One body's state for a sidecar: status, reason, markers, RMS, and the pose when there is one
    (4x4 ``camera_from_body``, translation mm, quaternion w, x, y, z; STALE poses are marked by
    their status and age)."""
    record = {"status": state.status.value, "reason": state.reason, "markers_used": int(state.markers_used),
              "reprojection_rms_px": state.reprojection_rms_px, "pose_age_s": state.age_s}
    pose = state.camera_from_body
    if pose is not None:
        pose = np.asarray(pose, dtype=np.float64)
        record["camera_from_body"] = pose.tolist()
        record["translation_mm"] = pose[:3, 3].tolist()
        record["quaternion_wxyz"] = np.asarray(quaternion_from_rotation(pose[:3, :3])).tolist()
    return record


def screenshot_sidecar(pipeline, result, frame_index: int | None, timestamp_s: float | None,
                       capture_time_s: float | None, header: dict, extra: dict | None = None) -> dict:
    """What a screenshot showed.

    result : the FrameResult of the frame shown, or None when no frame was processed (camera lost,
        wrong frame size); the sidecar then says so instead of giving poses
    frame_index, timestamp_s : the frame's (source numbering; session time, s)
    capture_time_s : ``time.monotonic()`` of the grab (s)
    header : the session's inputs (camera, scene, calibration)
    """
    data = {
        "ar_guide_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
        **header,
        "frame_index": frame_index,
        "timestamp_s": timestamp_s,
        "capture_time_monotonic_s": capture_time_s,
        "layers": {"anatomy": pipeline.toggles.anatomy, "targets": pipeline.toggles.targets,
                   "paths": pipeline.toggles.paths, "hud": pipeline.toggles.hud,
                   "anatomy_opacity_scale": pipeline.toggles.opacity_scale},
        "reference_from_ct": np.asarray(pipeline.reference_from_ct).tolist(),
    }
    reg = pipeline.registration
    if reg is not None:
        data["registration"] = {"method": reg.method, "fre_mm": reg.fre_mm,
                                "predicted_tre_mm": dict(reg.predicted_tre_mm)}
    name = pipeline.active_target_name
    if name is not None:
        target = next(t for t in pipeline.targets if t.name == name)
        data["active_target"] = {"name": name, "position_ct": np.asarray(target.position_ct).tolist(),
                                 "radius_mm": target.radius_mm, "predicted_tre_mm": target.tre_mm}
    else:
        data["active_target"] = None
    if result is None:
        data["overlay"] = "none"
        data["bodies"] = None
    else:
        data["overlay"] = result.overlay
        data["bodies"] = {name: state_record(state) for name, state in result.states.items()}
        data["camera_from_ct"] = None if result.camera_from_ct is None else np.asarray(result.camera_from_ct).tolist()
        if result.targets_uv_px is not None:
            data["targets_uv_px"] = {t.name: np.asarray(uv).tolist() for t, uv in
                                     zip(pipeline.targets, result.targets_uv_px)}
    if extra:
        data.update(extra)
    return data


def screenshot_paths(folder: Path, frame_index: int | None, now: datetime.datetime | None = None) -> tuple[Path, Path]:
    """(PNG, JSON) paths of a new screenshot: ``live-YYYYmmdd-HHMMSS-f000123.png`` (-2 ... if taken)."""
    now = now or datetime.datetime.now()
    stem = f"live-{now:%Y%m%d-%H%M%S}" + (f"-f{frame_index:06d}" if frame_index is not None else "")
    candidate, k = stem, 2
    while (folder / f"{candidate}.png").exists() or (folder / f"{candidate}.json").exists():
        candidate, k = f"{stem}-{k}", k + 1
    return folder / f"{candidate}.png", folder / f"{candidate}.json"


def save_screenshot(folder: Path, image_bgr: np.ndarray, sidecar: dict, frame_index: int | None) -> Path:
    """Writes the PNG and its JSON sidecar; returns the PNG's path.  Raises OSError on a write error
    (the caller shows it; the session goes on)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png, side = screenshot_paths(folder, frame_index)
    # Fast compression: the window must not stall for a screenshot (level 1: ~4x faster than 3).
    ok, data = cv2.imencode(".png", image_bgr, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise OSError(f"could not encode the screenshot as PNG ({png.name})")
    tmp = png.with_name(png.name + ".part")
    with open(tmp, "wb") as f:
        f.write(data.tobytes())
    os.replace(tmp, png)
    sidecar = dict(sidecar, image=png.name)
    try:
        write_json(side, sidecar)
    except InputError as exc:  # write_json reports an unwritable path as InputError
        raise OSError(exc.detail) from None
    return png
