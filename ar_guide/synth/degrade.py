"""From the rendered light to the camera's 8-bit frame: lens, sensor and image processing.

Order, as in a camera: distortion (remap of the pinhole canvas), optical blur, vignetting,
exposure gain and white balance, sensor noise (signal-dependent shot noise plus read noise, the
Poisson-Gaussian model of Foi et al., "Practical Poissonian-Gaussian noise modeling and fitting
for single-image raw-data", IEEE TIP 2008), 12-bit quantisation and a gamma-2.2 tone curve to
8 bits.  Compression comes last, in the video writer (H.264).
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from ar_guide.synth.optics import Canvas, remap_to_image


@dataclasses.dataclass(frozen=True)
class SensorModel:
    """exposure : linear scale from scene radiance to sensor signal (1 = full scale) at gain 1;
    full_well_e : electrons at full scale (sets the shot noise); read_noise : std of the read
    noise, in full-scale units; optics_sigma_px : Gaussian approximation of the lens and
    demosaicing blur; vignetting_power : relative illumination cos(field angle)^power;
    gamma : display tone curve exponent."""

    exposure: float = 0.62
    full_well_e: float = 1800.0
    read_noise: float = 0.0015
    optics_sigma_px: float = 0.55
    vignetting_power: float = 2.5
    gamma: float = 2.2


class Developer:
    """Turns linear canvas renders into 8-bit BGR frames for one camera (maps computed once)."""

    def __init__(self, canvas: Canvas, sensor: SensorModel = SensorModel()):
        self.canvas = canvas
        self.sensor = sensor
        r2 = np.sum(np.square(canvas.normalized_xy.astype(np.float64)), axis=2)
        # cos(theta) = 1 / sqrt(1 + r^2) for the undistorted ray (x/z, y/z).
        self.vignetting = ((1.0 + r2) ** (-sensor.vignetting_power / 2.0)).astype(np.float32)
        self._noise_bank = None
        self._level_maps = {}
        levels = np.arange(4096, dtype=np.float64) / 4095.0
        self.tone_lut = np.clip(np.round(255.0 * levels ** (1.0 / sensor.gamma)), 0, 255).astype(np.uint8)

    def develop(self, canvas_linear: np.ndarray, gain: float, white_balance, rng: np.random.Generator | None,
                blur: bool = True) -> np.ndarray:
        """(Hc, Wc, 3) float32 linear RGB canvas -> (H, W, 3) uint8 BGR image.

        ``rng`` None gives a noise-free frame; ``blur`` False skips the optical blur.
        """
        return self.finish(self.distort(canvas_linear), gain, white_balance, rng, blur)

    def distort(self, canvas_linear: np.ndarray, level: int = 0) -> np.ndarray:
        """The lens: canvas (Hc, Wc, 3) -> new (H, W, 3) float32 image (bilinear remap).

        ``level`` 1: the canvas was rendered at half resolution (SceneRenderer.level_geometry).
        """
        if level == 0:
            return remap_to_image(canvas_linear, self.canvas)
        maps = self._level_maps.get(level)
        if maps is None:
            s = np.float32(0.5 ** level)
            maps = ((self.canvas.map_x + 0.5) * s - 0.5, (self.canvas.map_y + 0.5) * s - 0.5)
            self._level_maps[level] = maps
        return cv2.remap(canvas_linear, maps[0], maps[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def finish(self, image_linear: np.ndarray, gain: float, white_balance, rng: np.random.Generator | None,
               blur: bool = True) -> np.ndarray:
        """Optics blur, vignetting, gain, noise, tone curve: (H, W, 3) float32 (modified in place)
        -> (H, W, 3) uint8 BGR."""
        img = image_linear
        if blur and self.sensor.optics_sigma_px > 0:
            img = cv2.GaussianBlur(img, (0, 0), self.sensor.optics_sigma_px)
        scale = (self.sensor.exposure * float(gain)) * np.asarray(white_balance, np.float32)
        img *= self.vignetting[..., None]
        img *= scale[None, None, :]
        if rng is not None:
            # Poisson-Gaussian: variance = signal / full_well + read_noise^2 (signal clipped >= 0).
            var = np.maximum(img, 0.0) * np.float32(1.0 / self.sensor.full_well_e)
            var += np.float32(self.sensor.read_noise ** 2)
            img += np.sqrt(var) * self._noise(rng, img.shape)
        codes = np.clip(img * 4095.0 + 0.5, 0.0, 4095.0).astype(np.uint16)
        return np.ascontiguousarray(self.tone_lut[codes[..., ::-1]])

    #: Noise bank: this many full frames of N(0, 1), plus a margin for random crop offsets.
    _BANK_FRAMES = 4
    _BANK_MARGIN = 64

    def _noise(self, rng: np.random.Generator, shape) -> np.ndarray:
        """Unit Gaussian noise for one frame: a random crop of a random page of a bank drawn once
        (seeded), with a random sign.  Drawing 2.8 million fresh normals costs ~20 ms a frame;
        the crop is a view.  Frames are statistically independent for any use here (the crops of
        two frames overlap in the same page position with probability ~1/(4 * 64^2))."""
        h, w, c = shape
        m = self._BANK_MARGIN
        if self._noise_bank is None or self._noise_bank.shape[1:] != (h + m, w + m, c):
            bank_rng = np.random.default_rng(20240607)
            self._noise_bank = bank_rng.standard_normal((self._BANK_FRAMES, h + m, w + m, c), dtype=np.float32)
        page = int(rng.integers(self._BANK_FRAMES))
        dy, dx = (int(v) for v in rng.integers(0, m + 1, 2))
        crop = self._noise_bank[page, dy:dy + h, dx:dx + w]
        return crop if rng.random() < 0.5 else -crop
