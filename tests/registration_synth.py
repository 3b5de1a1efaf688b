"""Synthetic registration inputs for the tests: fiducials, point files and pointer pose logs.

Seeded and exact: every function returns the ground truth along with what it writes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.io.poselog import PoseLogWriter

#: A rigid reference_from_ct used as ground truth (rotation of about 40 degrees).
TRUE_REFERENCE_FROM_CT = make_transform(rotation_from_rotvec([0.35, -0.4, 0.5]), [25.0, -140.0, 310.0])
#: Fiducials in CT (LPS, mm): spread over an abdomen-sized region, not coplanar.
FIDUCIALS_CT = np.array([
    [-90.0, -95.0, 60.0],
    [-20.0, -105.0, 70.0],
    [60.0, -95.0, 55.0],
    [-85.0, -80.0, 190.0],
    [-10.0, -100.0, 200.0],
    [70.0, -85.0, 185.0],
])
FIDUCIAL_NAMES = tuple(f"F{i + 1}" for i in range(len(FIDUCIALS_CT)))
#: A target deep below the fiducials and a planned path to it (CT mm).
TUMOUR_CT = np.array([-40.0, 10.0, 130.0])
ENTRY_CT = np.array([-70.0, -100.0, 120.0])
#: The pointer's tip in its body frame (SciKit-Surgery's published pointer tip, mm).
TIP_TOOL = np.array([-100.0, 0.0, 0.0])


def write_points_csv(path: Path, names, points, header: str = "name,x,y,z") -> Path:
    rows = [header] + [f"{n}," + ",".join(repr(float(v)) for v in p)
                       for n, p in zip(names, np.asarray(points, dtype=float))]
    Path(path).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return Path(path)


def patient_points(rng: np.random.Generator | None = None, fle_mm: float = 0.0,
                   outlier: tuple[int, float] | None = None, points_ct=FIDUCIALS_CT,
                   reference_from_ct=TRUE_REFERENCE_FROM_CT) -> np.ndarray:
    """The fiducials in the reference frame with isotropic noise of RMS ``fle_mm`` (3-D), and
    optionally fiducial ``outlier[0]`` moved ``outlier[1]`` mm in a random direction."""
    p = transform_points(reference_from_ct, points_ct)
    if fle_mm:
        p = p + rng.normal(0.0, fle_mm / np.sqrt(3.0), p.shape)
    if outlier is not None:
        d = rng.normal(size=3)
        p[outlier[0]] += outlier[1] * d / np.linalg.norm(d)
    return p


@dataclasses.dataclass(frozen=True)
class PoseLogTruth:
    """What a synthetic pointer pose log holds: the held tip positions (reference mm) and when."""

    points_reference: np.ndarray
    holds_s: list  # [(start, end)] of each hold


def write_pointer_pose_log(path: Path, points_reference: np.ndarray, rng: np.random.Generator, *,
                           hold_s=1.5, move_s: float = 0.8, fps: float = 30.0, tip_tool=TIP_TOOL,
                           translation_noise_mm: float = 0.05, rotation_noise_deg: float = 0.03,
                           wobble_deg: float = 4.0, lost_frames: tuple[int, ...] = (),
                           pointer: str = "pointer") -> PoseLogTruth:
    """A pose log (ar_guide.io.poselog) of a pointer held on each point in turn.

    The camera sees the reference at a fixed pose; the pointer's tip rests on each point for
    ``hold_s`` (a number or one per point) while the hand rocks it by up to ``wobble_deg``
    about the tip, then travels in ``move_s`` along an arc lifted 30 mm off the points.
    Both poses get Gaussian noise (translation per axis, rotation about a random axis).  The
    pointer is LOST in the frames listed in ``lost_frames``.
    """
    points_reference = np.asarray(points_reference, dtype=np.float64)
    holds = np.broadcast_to(np.asarray(hold_s, dtype=np.float64), (len(points_reference),))
    camera_from_reference = make_transform(rotation_from_rotvec([2.6, 0.3, -0.2]), [20.0, -30.0, 450.0])
    base_rotation = rotation_from_rotvec([0.2, 1.1, 0.4])
    dt = 1.0 / fps

    def noisy(m):
        axis = rng.normal(size=3)
        angle = np.radians(rng.normal(0.0, rotation_noise_deg))
        r = rotation_from_rotvec(axis / np.linalg.norm(axis) * angle)
        out = m.copy()
        out[:3, :3] = r @ m[:3, :3]
        out[:3, 3] = m[:3, 3] + rng.normal(0.0, translation_noise_mm, 3)
        return out

    samples = []  # (t, tip_reference, rotation)
    t = 0.0
    holds_s = []
    for k, point in enumerate(points_reference):
        start = t
        n_hold = int(round(holds[k] * fps)) + 1
        phase = rng.uniform(0, 2 * np.pi)
        for i in range(n_hold):
            wobble = np.radians(wobble_deg) * np.array([np.sin(2.1 * t + phase), np.cos(1.3 * t + phase), 0.0])
            samples.append((t, point, rotation_from_rotvec(wobble) @ base_rotation))
            t += dt
        holds_s.append((start, t - dt))
        if k + 1 < len(points_reference):
            nxt = points_reference[k + 1]
            n_move = int(round(move_s * fps))
            for i in range(1, n_move):
                s = i / n_move
                lift = 30.0 * np.sin(np.pi * s) * np.array([0.0, 0.0, -1.0])
                samples.append((t, point + s * (nxt - point) + lift, base_rotation))
                t += dt
    with PoseLogWriter(path) as log:
        for frame, (time_s, tip_reference, rotation) in enumerate(samples):
            reference_from_pointer = make_transform(rotation, tip_reference - rotation @ tip_tool)
            log.write(frame, time_s, "reference", "OK", noisy(camera_from_reference), 0.2, 12)
            if frame in lost_frames:
                log.write(frame, time_s, pointer, "LOST", None, None, 0, "no markers")
            else:
                log.write(frame, time_s, pointer, "OK", noisy(camera_from_reference @ reference_from_pointer), 0.3, 6)
    return PoseLogTruth(points_reference, holds_s)
