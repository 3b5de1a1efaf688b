"""What moves: the hand-held camera, the occluding hand and the lighting, as functions of time.

The script is written for a nominal 10 s take (``SCRIPT_S``); a sequence of another duration plays
the same script proportionally faster or slower (``script time = t * SCRIPT_S / duration``), so
that a short test sequence has the same content.  Physiological hand tremor stays in real time.

Script (nominal seconds):

- 0.0-1.6 approach (board at about 620 mm, then 400 mm); 1.6-3.9 orbit, the viewing angle from
  the board normal rising to about 57 degrees;
- 4.2-5.9 the camera pans away by 75 degrees and back: the board is entirely out of view for
  about 0.9 s (fast pan: strong motion blur on the way out and in);
- 6.1-8.3 a hand reaches in above the board and covers part of it for about 1.5 s;
- 8.3-9.6 the camera backs off (board at about 760 mm: small), then approaches again.
The operator stands at the foot end, a little to the patient's right; image-up points away
from them.

Hand tremor: physiological tremor is 8-12 Hz with small amplitude, sway below 2 Hz is larger
(Elble and Koller, "Tremor", 1990); amplitudes here are of the order a hand-held webcam shows.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.geometry.transforms import look_at, make_transform, rotation_from_rotvec, transform_points

SCRIPT_S = 10.0

# Camera keyframes: script s, distance to the pivot (mm), elevation from anterior (deg),
# azimuth around the anterior axis (deg, 0 = patient's left, 90 = head, 270 = feet), roll (deg).
# The operator stands at the foot end, a little to the patient's right.
_CAMERA_KEYS = np.array([
    # s     d      elev   azim   roll
    [0.0, 680.0, 30.0, 250.0, 3.0],
    [1.6, 470.0, 20.0, 265.0, 0.0],
    [3.0, 420.0, 42.0, 235.0, 3.0],
    [3.9, 410.0, 55.0, 215.0, -3.0],
    [4.6, 440.0, 40.0, 228.0, 0.0],
    [5.6, 450.0, 30.0, 250.0, 2.0],
    [6.6, 430.0, 25.0, 268.0, 0.0],
    [7.5, 420.0, 30.0, 285.0, -2.0],
    [8.3, 560.0, 36.0, 295.0, 0.0],
    [9.0, 840.0, 40.0, 300.0, 3.0],
    [9.6, 830.0, 36.0, 296.0, 0.0],
    [10.0, 760.0, 32.0, 290.0, -1.0],
])
# Pan away (deg about the camera's vertical axis): rest, swing out, hold, swing back.
_PAN_KEYS = [(4.2, 0.0), (4.8, 75.0), (5.3, 75.0), (5.9, 0.0)]

# Hand keyframes in the board frame (mm; z < 0 is in front of the printed face): script s,
# palm centre x, y, z, yaw about the board normal (deg).  The hand reaches in from across the
# table (the patient's left, +x), fingers first.
_HAND_KEYS = np.array([
    [6.10, 470.0, 80.0, -260.0, 20.0],
    [6.60, 262.0, 70.0, -85.0, 5.0],
    [7.20, 252.0, 80.0, -78.0, 0.0],
    [7.80, 258.0, 72.0, -82.0, -4.0],
    [8.30, 480.0, 70.0, -260.0, -15.0],
])


def script_time(t, duration_s: float):
    """Script seconds of real time ``t`` (s) in a take of ``duration_s``."""
    return np.asarray(t, dtype=np.float64) * (SCRIPT_S / float(duration_s))


def cardinal_spline(times: np.ndarray, values: np.ndarray, t) -> np.ndarray:
    """Catmull-Rom-like C1 interpolation through keyframes at non-uniform ``times``.

    times : (K,) increasing; values : (K, D); t : scalar or (N,) -> (D,) or (N, D).  Outside the
    key range the end values hold.  Tangents: central differences over the neighbours' times.
    """
    times = np.asarray(times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    tt = np.clip(np.atleast_1d(np.asarray(t, dtype=np.float64)), times[0], times[-1])
    k = len(times)
    tangents = np.zeros_like(values)
    for i in range(k):
        lo, hi = max(i - 1, 0), min(i + 1, k - 1)
        tangents[i] = (values[hi] - values[lo]) / (times[hi] - times[lo])
    i = np.clip(np.searchsorted(times, tt, side="right") - 1, 0, k - 2)
    h = times[i + 1] - times[i]
    u = ((tt - times[i]) / h)[:, None]
    h00 = 2 * u ** 3 - 3 * u ** 2 + 1
    h10 = u ** 3 - 2 * u ** 2 + u
    h01 = -2 * u ** 3 + 3 * u ** 2
    h11 = u ** 3 - u ** 2
    out = (h00 * values[i] + h10 * h[:, None] * tangents[i] + h01 * values[i + 1]
           + h11 * h[:, None] * tangents[i + 1])
    return out[0] if np.ndim(t) == 0 else out


def eased_steps(keys, s) -> np.ndarray:
    """Piecewise smoothstep through (time, value) keys (zero velocity at each key)."""
    s = np.atleast_1d(np.asarray(s, dtype=np.float64))
    times = np.array([k[0] for k in keys])
    values = np.array([k[1] for k in keys])
    out = np.interp(s, times, values)
    i = np.clip(np.searchsorted(times, s, side="right") - 1, 0, len(times) - 2)
    u = np.clip((s - times[i]) / (times[i + 1] - times[i]), 0.0, 1.0)
    eased = values[i] + (values[i + 1] - values[i]) * (u * u * (3 - 2 * u))
    inside = (s >= times[0]) & (s <= times[-1])
    return np.where(inside, eased, out)


@dataclasses.dataclass(frozen=True)
class Wobble:
    """Sum of sinusoids: frequencies (Hz), amplitudes and phases per axis, (M, 3) each."""

    freqs_hz: np.ndarray
    amps: np.ndarray
    phases: np.ndarray

    @staticmethod
    def random(rng, bands) -> "Wobble":
        """``bands``: [(f_lo_hz, f_hi_hz, amplitude, count)]; each axis draws its own terms."""
        freqs, amps, phases = [], [], []
        for lo, hi, amp, count in bands:
            for _ in range(count):
                freqs.append(rng.uniform(lo, hi, 3))
                amps.append(amp * rng.uniform(0.6, 1.0, 3) / np.sqrt(count))
                phases.append(rng.uniform(0, 2 * np.pi, 3))
        return Wobble(np.array(freqs), np.array(amps), np.array(phases))

    def __call__(self, t) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        arg = 2 * np.pi * self.freqs_hz[None] * t[:, None, None] + self.phases[None]
        return np.sum(self.amps[None] * np.sin(arg), axis=1)


class CameraPath:
    """ct_from_camera(t) of the hand-held camera (OpenCV camera frame, mm)."""

    def __init__(self, pivot_ct: np.ndarray, duration_s: float, seed: int):
        self.pivot_ct = np.asarray(pivot_ct, dtype=np.float64)
        self.duration_s = float(duration_s)
        rng = np.random.default_rng([int(seed), 202])
        # Translation (mm): sway 0.2-1.5 Hz ~3 mm, tremor 8-12 Hz ~0.15 mm.
        self._shift = Wobble.random(rng, [(0.2, 1.5, 3.0, 3), (8.0, 12.0, 0.15, 2)])
        # Rotation (rad): sway ~0.4 deg, tremor ~0.05 deg.
        self._turn = Wobble.random(rng, [(0.2, 1.5, np.radians(0.4), 3), (8.0, 12.0, np.radians(0.05), 2)])

    def nominal(self, t) -> np.ndarray:
        """(N, 4, 4) ct_from_camera without tremor or sway."""
        s = np.atleast_1d(script_time(t, self.duration_s))
        keys = cardinal_spline(_CAMERA_KEYS[:, 0], _CAMERA_KEYS[:, 1:], s).reshape(-1, 4)
        pan = np.radians(eased_steps(_PAN_KEYS, s))
        out = np.empty((s.size, 4, 4))
        anterior = np.array([0.0, -1.0, 0.0])
        for i, (d, elev, azim, roll) in enumerate(keys):
            e, a = np.radians(elev), np.radians(azim)
            horizontal = np.array([np.cos(a), 0.0, np.sin(a)])  # CT x (left) and z (head)
            eye = self.pivot_ct + d * (np.sin(e) * horizontal + np.cos(e) * anterior)
            # The operator stands on the camera's side: image-up points away from them.
            up = -horizontal * np.cos(e) + anterior * np.sin(e)
            pose = look_at(eye, self.pivot_ct, up=up)
            turn = rotation_from_rotvec([0.0, 0.0, np.radians(roll)]) @ rotation_from_rotvec([0.0, pan[i], 0.0])
            out[i] = pose @ make_transform(turn, [0.0, 0.0, 0.0])
        return out

    def ct_from_camera(self, t) -> np.ndarray:
        """(4, 4) for scalar t, (N, 4, 4) for an array of times (s)."""
        t_arr = np.atleast_1d(np.asarray(t, dtype=np.float64))
        poses = self.nominal(t_arr)
        shift = self._shift(t_arr)
        turn = self._turn(t_arr)
        for i in range(t_arr.size):
            poses[i] = poses[i] @ make_transform(rotation_from_rotvec(turn[i]), shift[i])
        return poses[0] if np.ndim(t) == 0 else poses


class HandPath:
    """ct_from_hand(t): the occluding hand (hand frame: x along the fingers, z out of the back)."""

    def __init__(self, ct_from_reference: np.ndarray, duration_s: float, seed: int):
        self.ct_from_reference = np.asarray(ct_from_reference, dtype=np.float64)
        self.duration_s = float(duration_s)
        rng = np.random.default_rng([int(seed), 303])
        self._shift = Wobble.random(rng, [(0.3, 1.5, 4.0, 3), (8.0, 12.0, 0.2, 2)])

    def ct_from_hand(self, t) -> np.ndarray:
        t_arr = np.atleast_1d(np.asarray(t, dtype=np.float64))
        s = script_time(t_arr, self.duration_s)
        keys = cardinal_spline(_HAND_KEYS[:, 0], _HAND_KEYS[:, 1:], s).reshape(-1, 4)
        shift = self._shift(t_arr)
        out = np.empty((t_arr.size, 4, 4))
        for i, (x, y, z, yaw) in enumerate(keys):
            # Palm facing the board (hand -z along +z_ref), fingers pointing along -x_ref.
            base = np.column_stack([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]])
            rot = rotation_from_rotvec([0.0, 0.0, np.radians(yaw)]) @ base
            rot = rot @ rotation_from_rotvec([0.0, np.radians(-12.0), 0.0])  # fingertips lower
            out[i] = self.ct_from_reference @ make_transform(rot, np.array([x, y, z]) + shift[i])
        return out[0] if np.ndim(t) == 0 else out

    def present(self, t) -> np.ndarray:
        """Whether the hand is in the scene at all (it is parked far away otherwise)."""
        s = script_time(t, self.duration_s)
        return (s >= _HAND_KEYS[0, 0]) & (s <= _HAND_KEYS[-1, 0])


@dataclasses.dataclass(frozen=True)
class LightState:
    """lamp_ct : (3,) mm; lamp_power : irradiance scale at 1 m; gain : exposure gain (1 = nominal);
    white_balance : (3,) RGB multipliers (colour-temperature drift)."""

    lamp_ct: np.ndarray
    lamp_power: float
    gain: float
    white_balance: np.ndarray


class Lighting:
    """The operating lamp (repositioned twice), auto-exposure hunting and white-balance drift."""

    def __init__(self, centre_ct: np.ndarray, duration_s: float, seed: int):
        self.centre_ct = np.asarray(centre_ct, dtype=np.float64)
        self.duration_s = float(duration_s)
        rng = np.random.default_rng([int(seed), 404])
        self._phases = rng.uniform(0, 2 * np.pi, 4)

    def at(self, t: float) -> LightState:
        s = float(script_time(t, self.duration_s))
        move = eased_steps([(0.0, 0.0), (2.0, 0.0), (4.5, 1.0), (7.5, 1.0), (9.5, 0.3)], s)[0]
        lamp = self.centre_ct + np.array([-450.0 + 800.0 * move, -1100.0 + 150.0 * move, -250.0 + 350.0 * move])
        ph = self._phases
        gain = 1.0 + 0.08 * np.sin(2 * np.pi * s / 6.5 + ph[0]) + 0.04 * np.sin(2 * np.pi * s / 2.3 + ph[1])
        temp = 0.05 * np.sin(2 * np.pi * s / 9.0 + ph[2]) + 0.015 * np.sin(2 * np.pi * s / 3.1 + ph[3])
        wb = np.array([1.0 + temp, 1.0, 1.0 - 1.2 * temp])
        return LightState(lamp, 1.0, float(gain), wb)


def board_viewing_geometry(camera_from_reference: np.ndarray, board_size_mm: tuple[float, float]):
    """(viewing angle from the board normal in degrees, distance to the board centre in mm)."""
    centre = np.array([board_size_mm[0] / 2, board_size_mm[1] / 2, 0.0])
    centre_cam = transform_points(camera_from_reference, centre[None])[0]
    normal_cam = -camera_from_reference[:3, 2]  # the printed face looks along -z_ref
    to_camera = -centre_cam / np.linalg.norm(centre_cam)
    angle = np.degrees(np.arccos(np.clip(float(normal_cam @ to_camera), -1.0, 1.0)))
    return float(angle), float(np.linalg.norm(centre_cam))
