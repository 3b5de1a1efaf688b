"""Window-only drawings of the live app: key help, REC indicator, PAUSED tag, message band, the
camera-lost screen, and the HUD lines for frame rate and latency.

Everything draws in place on a BGR uint8 frame (the caller copies when the clean frame is still
needed, e.g. for a recording), in screen space, sized to the image height like the pipeline's HUD.
"""

from __future__ import annotations

import cv2
import numpy as np

from ar_guide.constants import LiveSettings, RenderSettings
from ar_guide.render import annotations

FONT = annotations.FONT
#: Colours (BGR).
WHITE = (240, 240, 240)
GREEN = (80, 220, 80)
AMBER = (0, 191, 255)
RED = (60, 60, 255)
REC_RED = (0, 0, 230)
# Height of "H" at font scale 1 (annotations.py: 22 px with OpenCV 4's Hershey font).
_H_AT_SCALE_1 = 22.0


def text_metrics(frame_bgr: np.ndarray, settings: RenderSettings = RenderSettings()) -> tuple[float, int]:
    """Font scale and stroke thickness of the HUD text at this image height (same rule as the HUD)."""
    height_px = max(settings.text_min_height_px, settings.text_height_fraction * frame_bgr.shape[0])
    scale = height_px / _H_AT_SCALE_1
    return scale, max(1, int(round(scale * 1.6)))


def draw_help(frame_bgr: np.ndarray, rows: list[tuple[str, str, str]]) -> None:
    """The key help: a darkened panel in the middle with one row per key: label, what it does, and
    its current state in brackets ("on", "off", "80 %" ...; "" for none).  Shrunk to fit the image."""
    h, w = frame_bgr.shape[:2]
    title = "keys (h closes this help)"
    texts = [d + (f"  [{s}]" if s else "") for _, d, s in rows]
    scale, thick = text_metrics(frame_bgr)

    def layout(scale: float, thick: int):
        key_w = max(cv2.getTextSize(k, FONT, scale, thick)[0][0] for k, _, _ in rows)
        text_w = max(cv2.getTextSize(t, FONT, scale, thick)[0][0] for t in texts + [title])
        (_, th), base = cv2.getTextSize("Hg", FONT, scale, thick)
        line_h = int(round((th + base) * 1.35))
        gap, pad = int(round(th * 1.2)), int(round(th * 0.8))
        return key_w, gap, pad, line_h, base, pad + key_w + gap + text_w + pad, 2 * pad + line_h * (len(rows) + 1)

    key_w, gap, pad, line_h, base, width, height = layout(scale, thick)
    fit = min(1.0, 0.98 * w / width, 0.98 * h / height)
    if fit < 1.0:   # small image: shrink the text until the panel fits
        scale *= fit
        thick = max(1, int(round(thick * fit)))
        key_w, gap, pad, line_h, base, width, height = layout(scale, thick)
    x0 = max(0, (w - width) // 2)
    y0 = max(0, (h - height) // 2)
    annotations.darken_box(frame_bgr, x0, y0, x0 + width, y0 + height, keep=0.25)
    cv2.rectangle(frame_bgr, (x0, y0), (min(w - 1, x0 + width), min(h - 1, y0 + height)), WHITE, 1)
    y = y0 + pad + line_h - base
    annotations.put_text(frame_bgr, title, (x0 + pad, y), WHITE, scale, thick)
    for (key, _, _), text in zip(rows, texts):
        y += line_h
        annotations.put_text(frame_bgr, key, (x0 + pad, y), AMBER, scale, thick)
        annotations.put_text(frame_bgr, text, (x0 + pad + key_w + gap, y), WHITE, scale, thick)


def format_elapsed(seconds: float) -> str:
    """"01:05" for 65 s, "1:00:05" beyond an hour."""
    s = max(0, int(seconds))
    hours, rest = divmod(s, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def draw_recording_indicator(frame_bgr: np.ndarray, elapsed_s: float, failed: bool = False) -> None:
    """A red dot and "REC 01:05" at the top right ("REC FAILED" in amber when the recorder stopped)."""
    w = frame_bgr.shape[1]
    scale, thick = text_metrics(frame_bgr)
    text = "REC FAILED" if failed else f"REC {format_elapsed(elapsed_s)}"
    colour = AMBER if failed else REC_RED
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(4, th // 2)
    radius = max(4, int(round(th * 0.55)))
    x1 = w - pad
    x0 = x1 - tw - 3 * radius - pad
    annotations.darken_box(frame_bgr, x0 - pad, 0, w, th + base + 2 * pad, keep=0.4)
    cy = pad + th // 2 + base // 2
    cv2.circle(frame_bgr, (x0 + radius, cy), radius, colour, -1, cv2.LINE_AA)
    annotations.put_text(frame_bgr, text, (x0 + 3 * radius, pad + th), colour if failed else WHITE, scale, thick)


def draw_tag(frame_bgr: np.ndarray, text: str, colour=AMBER) -> None:
    """A tag at the top centre (e.g. "PAUSED - space resumes"), dark text on ``colour``."""
    w = frame_bgr.shape[1]
    scale, thick = text_metrics(frame_bgr)
    scale *= 1.3
    thick = max(2, thick)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    pad = max(4, th // 2)
    x0 = max(0, (w - tw) // 2 - pad)
    cv2.rectangle(frame_bgr, (x0, 0), (min(w - 1, x0 + tw + 2 * pad), th + base + 2 * pad), colour, -1)
    cv2.putText(frame_bgr, text, (x0 + pad, pad + th), FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)


def draw_message_band(frame_bgr: np.ndarray, text: str, colour=WHITE, row: int = 0) -> None:
    """A line of text on a darkened band at the bottom (``row`` 0 is the lowest), framed in ``colour``:
    confirmations ("screenshot saved ...") and standing warnings ("recording stopped: ...")."""
    h, w = frame_bgr.shape[:2]
    scale, thick = text_metrics(frame_bgr)
    (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    if tw > w - 16:
        scale *= (w - 16) / tw
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
    band = th + base + 12
    y1 = h - row * band
    y0 = y1 - band
    if y0 < 0:
        return
    annotations.darken_box(frame_bgr, 0, y0, w, y1, keep=0.3)
    cv2.rectangle(frame_bgr, (0, y0), (w - 1, y1 - 1), colour, 2)
    annotations.put_text(frame_bgr, text, (8, y1 - base - 6), colour, scale, thick)


def camera_lost_image(width: int, height: int, text: str, detail: str = "") -> np.ndarray:
    """(H, W, 3) uint8: a dark grey screen with the red banner ``text`` and a ``detail`` line under it.

    No video and no overlay: the last image of a lost camera is not shown, so that nothing frozen
    can pass for current (DESIGN.md, "Safety rules")."""
    image = np.full((int(height), int(width), 3), 40, np.uint8)
    annotations.draw_banner(image, text, RED)
    if detail:
        draw_message_band(image, detail, WHITE, row=1)
    return image


def live_hud_lines(fps: float | None, latency_ms: float | None, skipped_frames: int,
                   hidden: list[str] = (), opacity_scale: float = 1.0,
                   settings: LiveSettings = LiveSettings()) -> list[tuple[str, tuple[int, int, int]]]:
    """The live app's HUD lines, appended under the pipeline's.

    fps : frames shown per second over the last window (None before there are two)
    latency_ms : median capture-to-display latency over the same window (None before the first)
    skipped_frames : camera frames the pipeline never saw (the newest frame wins)
    hidden : layers switched off (named in amber: something the user cannot see is absent)
    """
    fps_text = f"{fps:.1f} fps" if fps is not None else "-- fps"
    if latency_ms is None:
        lat_text, colour = "latency --", WHITE
    else:
        lat_text = f"latency {latency_ms:.0f} ms"
        colour = AMBER if latency_ms > settings.latency_warn_ms else WHITE
    lines = [(f"{fps_text}  {lat_text} (capture to display)  skipped {skipped_frames}", colour)]
    notes = []
    if hidden:
        notes.append("hidden: " + ", ".join(hidden))
    if opacity_scale < 1.0 and "anatomy" not in hidden:
        notes.append(f"anatomy opacity {opacity_scale * 100:.0f} %")
    if notes:
        lines.append(("  ".join(notes), AMBER))
    return lines
