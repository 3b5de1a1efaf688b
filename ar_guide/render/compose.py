"""Compositing a premultiplied RGBA overlay onto a BGR video frame.

``out = frame * (1 - a) + rgb`` per pixel, in uint8: ``round(frame * (255 - a) / 255) + rgb``,
saturated at 255 (Porter and Duff 1984, "over" with premultiplied colour).  Only the bounding
box of the overlay's non-zero alpha is touched, so a small overlay costs little.

A STALE overlay (the pose is older than the current frame: DESIGN.md, "Safety rules") is drawn
desaturated, dimmed and hatched with diagonal stripes of reduced opacity, so that it can never
be mistaken for a current one; :func:`ar_guide.render.annotations.draw_stale_marking` adds the
frame border and label.
"""

from __future__ import annotations

import cv2
import numpy as np

from ar_guide.constants import RenderSettings

STYLES = ("current", "stale")
_hatch_cache: dict = {}


def overlay_bbox(overlay_rgba: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, w, h) of the overlay's non-zero alpha; w = h = 0 when it is empty."""
    alpha = cv2.extractChannel(overlay_rgba, 3)
    return tuple(int(v) for v in cv2.boundingRect(alpha))


def hatch_pattern(width: int, height: int, settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """(H, W, 3) uint8 factor (0..255) of diagonal stripes: 255 on a stripe, less between.

    Stripes run at 45 degrees with period ``stale_hatch_period_px``, half of it opaque.
    """
    key = (width, height, settings.stale_hatch_period_px, settings.stale_hatch_alpha)
    pattern = _hatch_cache.get(key)
    if pattern is None:
        period = max(2, int(settings.stale_hatch_period_px))
        y, x = np.mgrid[0:height, 0:width]
        on = ((x + y) % period) < (period // 2)
        low = int(round(255 * settings.stale_hatch_alpha))
        factor = np.where(on, 255, low).astype(np.uint8)
        pattern = np.repeat(factor[:, :, None], 3, axis=2)
        pattern.setflags(write=False)
        if len(_hatch_cache) > 8:
            _hatch_cache.clear()
        _hatch_cache[key] = pattern
    return pattern


def compose_premultiplied(frame_bgr: np.ndarray, overlay_rgba: np.ndarray, out: np.ndarray | None = None,
                          style: str = "current", settings: RenderSettings = RenderSettings()) -> np.ndarray:
    """Blend a premultiplied RGBA overlay over a BGR frame.

    frame_bgr : (H, W, 3) uint8 BGR
    overlay_rgba : (H, W, 4) uint8 RGBA, premultiplied alpha (as AnatomyRenderer.render gives)
    out : (H, W, 3) uint8 destination; may be ``frame_bgr`` itself (in place); default a new array
    style : "current", or "stale" (desaturated, dimmed, hatched: never looks current)
    Returns ``out``.
    """
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if frame_bgr.dtype != np.uint8 or frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3:
        raise ValueError(f"frame_bgr must be (H, W, 3) uint8, got {frame_bgr.shape} {frame_bgr.dtype}")
    h, w = frame_bgr.shape[:2]
    if overlay_rgba.dtype != np.uint8 or overlay_rgba.shape != (h, w, 4):
        raise ValueError(f"overlay_rgba must be ({h}, {w}, 4) uint8 like the frame, got "
                         f"{overlay_rgba.shape} {overlay_rgba.dtype}")
    if out is None:
        out = frame_bgr.copy()
    elif out is not frame_bgr:
        if out.shape != frame_bgr.shape or out.dtype != np.uint8:
            raise ValueError(f"out must be {frame_bgr.shape} uint8, got {out.shape} {out.dtype}")
        np.copyto(out, frame_bgr)
    x, y, bw, bh = overlay_bbox(overlay_rgba)
    if bw == 0 or bh == 0:
        return out
    sub = overlay_rgba[y:y + bh, x:x + bw]
    colour = cv2.cvtColor(sub, cv2.COLOR_RGBA2BGR)
    alpha = cv2.extractChannel(sub, 3)
    if style == "stale":
        colour, alpha = _stale_look(colour, alpha, x, y, w, h, settings)
    inverse = cv2.bitwise_not(alpha)  # 255 - a
    inverse3 = cv2.merge([inverse, inverse, inverse])
    # cv2.multiply rounds to nearest: exactly round(frame * (255 - a) / 255) for all 256 x 256
    # pairs (tests/test_compose.py checks them all).  cv2.add saturates at 255.
    kept = cv2.multiply(frame_bgr[y:y + bh, x:x + bw], inverse3, scale=1.0 / 255.0)
    cv2.add(kept, colour, dst=out[y:y + bh, x:x + bw])
    return out


def _stale_look(colour, alpha, x, y, w, h, settings: RenderSettings):
    """Desaturate, dim and hatch a premultiplied BGR + alpha patch at (x, y) of a WxH image."""
    grey = cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY)
    grey3 = cv2.merge([grey, grey, grey])
    s = float(np.clip(settings.stale_saturation, 0.0, 1.0))
    if s > 0.0:
        grey3 = cv2.addWeighted(colour, s, grey3, 1.0 - s, 0.0)
    grey3 = cv2.convertScaleAbs(grey3, alpha=float(settings.stale_brightness))
    hatch = hatch_pattern(w, h, settings)[y:y + colour.shape[0], x:x + colour.shape[1]]
    # Scale colour and alpha alike: the result stays premultiplied.
    grey3 = cv2.multiply(grey3, hatch, scale=1.0 / 255.0)
    alpha = cv2.multiply(alpha, hatch[:, :, 0], scale=1.0 / 255.0)
    return grey3, alpha
