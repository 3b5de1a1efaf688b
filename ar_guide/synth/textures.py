"""Procedural textures (sRGB uint8, (H, W, 3) RGB): skin, drape, floor, wall, the printed board.

Only smooth noise and soft spots are used away from the board, never straight-edged dark
shapes, so that nothing outside the board can pass for an ArUco marker.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Base colours (sRGB 0..1).
SKIN_RGB = (0.86, 0.70, 0.60)
HAND_RGB = (0.84, 0.64, 0.53)
DRAPE_RGB = (0.22, 0.42, 0.52)
FLOOR_RGB = (0.50, 0.52, 0.50)
WALL_RGB = (0.80, 0.81, 0.78)
#: Skin marker ink (gentian violet) for the planned entry point.
INK_RGB = (0.33, 0.18, 0.42)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell_px: float,
                 periodic: bool = False) -> np.ndarray:
    """(H, W) float32 noise, zero mean, unit-ish std, with features about ``cell_px`` wide.

    Bicubic interpolation of a random grid.  ``periodic``: the noise tiles seamlessly (for
    repeated textures); the cell size is then rounded so that whole cells fit.
    """
    h, w = shape
    if periodic:
        gh, gw = max(2, int(round(h / cell_px))), max(2, int(round(w / cell_px)))
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        pad = 3
        wrapped = np.pad(grid, pad, mode="wrap")
        sy, sx = h / gh, w / gw
        big = cv2.resize(wrapped, (int(round(wrapped.shape[1] * sx)), int(round(wrapped.shape[0] * sy))),
                         interpolation=cv2.INTER_CUBIC)
        oy, ox = int(round(pad * sy)), int(round(pad * sx))
        return np.ascontiguousarray(big[oy:oy + h, ox:ox + w])
    gh = max(2, int(np.ceil(h / cell_px)) + 3)
    gw = max(2, int(np.ceil(w / cell_px)) + 3)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    big = cv2.resize(grid, (int(gw * cell_px), int(gh * cell_px)), interpolation=cv2.INTER_CUBIC)
    off = int(cell_px)
    return big[off:off + h, off:off + w]


def fractal_noise(rng, shape, cells_px=(256, 64, 16, 4), weights=(1.0, 0.5, 0.25, 0.12),
                  periodic: bool = False) -> np.ndarray:
    """Sum of octaves of :func:`smooth_noise`, normalised to unit std."""
    total = np.zeros(shape, np.float32)
    for cell, wgt in zip(cells_px, weights):
        total += wgt * smooth_noise(rng, shape, cell, periodic)
    return total / np.sqrt(np.sum(np.square(weights)))


def _to_uint8(rgb: np.ndarray) -> np.ndarray:
    return np.clip(rgb * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _tinted(base_rgb, modulation: np.ndarray, colour_modulation: np.ndarray | None = None) -> np.ndarray:
    rgb = np.asarray(base_rgb, np.float32)[None, None, :] * modulation[..., None]
    if colour_modulation is not None:
        rgb = rgb + colour_modulation
    return rgb


def skin_texture(rng, size=(2048, 1536)) -> np.ndarray:
    """Silicone-skin colour with mottling, faint blotches and fine pores."""
    w, h = size
    mottle = fractal_noise(rng, (h, w), (300, 90, 30), (1.0, 0.6, 0.3))
    pores = smooth_noise(rng, (h, w), 2.0)
    redness = smooth_noise(rng, (h, w), 160.0)
    lum = 1.0 + 0.045 * mottle + 0.018 * pores
    rgb = _tinted(SKIN_RGB, lum)
    rgb[..., 0] += 0.025 * redness
    rgb[..., 2] -= 0.015 * redness
    # A few soft, low-contrast spots (freckles), round and blurred.
    spots = np.zeros((h, w), np.float32)
    for _ in range(int(w * h / 60000)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        cv2.circle(spots, (int(x), int(y)), int(rng.uniform(2, 5)), float(rng.uniform(0.3, 1.0)), -1)
    spots = cv2.GaussianBlur(spots, (0, 0), 2.0)
    rgb *= (1.0 - 0.10 * spots)[..., None]
    return _to_uint8(rgb)


def draw_ink_cross(texture: np.ndarray, uv: tuple[float, float], px_per_mm: tuple[float, float],
                   arm_mm: float = 7.0, width_mm: float = 1.4) -> None:
    """Mark a skin entry point: a small violet cross (in place), soft-edged like marker ink."""
    h, w = texture.shape[:2]
    cx, cy = uv[0] * w, uv[1] * h
    mask = np.zeros((h, w), np.float32)
    ax, ay = arm_mm * px_per_mm[0], arm_mm * px_per_mm[1]
    thickness = max(1, int(round(width_mm * 0.5 * (px_per_mm[0] + px_per_mm[1]))))
    shift = 4  # sub-pixel precision of cv2.line (1/16 px)
    s = 1 << shift
    cv2.line(mask, (int((cx - ax) * s), int((cy - ay) * s)), (int((cx + ax) * s), int((cy + ay) * s)),
             1.0, thickness, cv2.LINE_AA, shift)
    cv2.line(mask, (int((cx - ax) * s), int((cy + ay) * s)), (int((cx + ax) * s), int((cy - ay) * s)),
             1.0, thickness, cv2.LINE_AA, shift)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.8)[..., None] * 0.85
    ink = np.asarray(INK_RGB, np.float32) * 255.0
    texture[:] = np.clip(texture * (1.0 - mask) + ink * mask, 0, 255).astype(np.uint8)


def drape_texture(rng, size=(1024, 1024)) -> np.ndarray:
    """Surgical drape: blue-green non-woven fabric, fine fibrous noise (tiles seamlessly)."""
    w, h = size
    lum = (1.0 + 0.05 * fractal_noise(rng, (h, w), (256, 32), (1.0, 0.5), periodic=True)
           + 0.04 * smooth_noise(rng, (h, w), 2.0, periodic=True))
    return _to_uint8(_tinted(DRAPE_RGB, lum))


def floor_texture(rng, size=(1024, 1024)) -> np.ndarray:
    """Speckled grey vinyl floor (tiles seamlessly)."""
    w, h = size
    lum = (1.0 + 0.06 * fractal_noise(rng, (h, w), (256, 64), (1.0, 0.4), periodic=True)
           + 0.05 * smooth_noise(rng, (h, w), 2.0, periodic=True))
    return _to_uint8(_tinted(FLOOR_RGB, lum))


def wall_texture(rng, size=(512, 512)) -> np.ndarray:
    """Painted wall: almost uniform, very low-frequency shading."""
    w, h = size
    lum = 1.0 + 0.04 * fractal_noise(rng, (h, w), (256, 64), (1.0, 0.3))
    return _to_uint8(_tinted(WALL_RGB, lum))


def plain_texture(rgb=(1.0, 1.0, 1.0)) -> np.ndarray:
    """A 4 x 4 single-colour texture, for materials that take their colour from the tint."""
    return _to_uint8(np.broadcast_to(np.asarray(rgb, np.float32), (4, 4, 3)).copy())


def board_print_texture(board, board_size_mm: tuple[float, float], margin_mm: float,
                        px_per_mm: float = 8.0) -> np.ndarray:
    """The printed face: the board image from :func:`ar_guide.tracking.aruco.board_image` with a
    white margin, as RGB.  Its corners are the plate's outline (uv 0..1 across the whole image).

    ``px_per_mm`` must make a whole number of pixels per square (the board image is exact then).
    """
    from ar_guide.tracking.aruco import board_image

    w_mm, h_mm = board_size_mm
    bw, bh = int(round(w_mm * px_per_mm)), int(round(h_mm * px_per_mm))
    squares = board.getChessboardSize()
    if bw % squares[0] or bh % squares[1]:
        raise ValueError("board texture: px_per_mm must give whole pixels per square")
    gray = board_image(board, (bw, bh), margin_px=0)
    m = int(round(margin_mm * px_per_mm))
    page = np.full((bh + 2 * m, bw + 2 * m), 255, np.uint8)
    page[m:m + bh, m:m + bw] = gray
    # Laser-printed black is not pure black, matte paper not pure white.
    page = (page.astype(np.float32) / 255.0) * (0.90 - 0.07) + 0.07
    return _to_uint8(np.repeat(page[..., None], 3, axis=2))
