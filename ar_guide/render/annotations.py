"""2-D annotations drawn with OpenCV onto a BGR uint8 frame: targets, planned paths (with their
depth cue), HUD, the pointer's bull's-eye inset, the LOST banner and the STALE marking.

Every shape is anti-aliased (``cv2.LINE_AA``) and placed with sub-pixel precision through the
``shift`` argument (coordinates in 1/16 px).  3-D geometry goes through the camera's full
distortion model (``CameraModel.project``), so annotations sit exactly on the rendered anatomy
(ar_guide.render.anatomy follows the same model).  Points the model cannot place are not drawn:
those at or behind ``near_mm`` and those whose undistorted ray lies outside the calibrated field
(where a polynomial distortion model can fold back into the image and draw something in the
wrong place).

A STALE annotation (pose older than the frame) is dashed, greyed and labelled "(stale)": a
stale pose is never drawn as if it were current (DESIGN.md, "Safety rules").
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import GuidanceSettings, RenderSettings
from ar_guide.geometry import projection
from ar_guide.geometry.guidance import PointerGuidance, level

STYLES = ("current", "stale")
SHIFT = 4                    # cv2 fixed-point bits: coordinates in 1/16 px
_ONE = 1 << SHIFT
FONT = cv2.FONT_HERSHEY_SIMPLEX
# Height of "H" at font scale 1 (cv2.getTextSize): 22 px with OpenCV 4's Hershey font, 27 px
# with OpenCV 5's; sizing by the smaller keeps text at least as tall as asked on both.
_FONT_HEIGHT_AT_SCALE_1 = 22.0
_OUTLINE_BGR = (0, 0, 0)
# How far beyond the image's undistorted footprint a ray may lie and still be drawn.
_FIELD_MARGIN = 1.15
_field_cache: OrderedDict = OrderedDict()


# -- geometry helpers --------------------------------------------------------------------------

def valid_field_radius(camera: CameraModel) -> float:
    """Largest undistorted normalised radius (x/z, y/z) at which points are drawn.

    It is 1.15 times the radius of the image's undistorted corners, but never beyond the
    first radius where the radial distortion stops increasing (where the model folds back).
    """
    key = (camera.camera_matrix.tobytes(), camera.distortion.tobytes(), camera.image_size)
    hit = _field_cache.get(key)
    if hit is not None:
        return hit
    if camera.image_size is not None:
        w, h = camera.image_size
        border = np.array([[-0.5, -0.5], [w - 0.5, -0.5], [-0.5, h - 0.5], [w - 0.5, h - 0.5],
                           [(w - 1) / 2, -0.5], [(w - 1) / 2, h - 0.5], [-0.5, (h - 1) / 2],
                           [w - 0.5, (h - 1) / 2]])
        xy = projection.pixels_to_normalized(border, camera.camera_matrix, camera.distortion)
        r_field = _FIELD_MARGIN * float(np.max(np.hypot(xy[:, 0], xy[:, 1])))
    else:
        r_field = 2.0
    # Radial fold: r_d(r) = r * radial(r) along a few directions; keep the rising part.
    r = np.linspace(0.0, max(r_field, 1e-6), 2001)[1:]
    r_fold = np.inf
    for angle in np.linspace(0.0, 2.0 * np.pi, 16, endpoint=False):
        xy = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
        xyd = projection.distort_normalized(xy, camera.distortion)
        rd = np.hypot(xyd[:, 0], xyd[:, 1])
        falling = np.nonzero(np.diff(rd) <= 0.0)[0]
        if falling.size:
            r_fold = min(r_fold, float(r[falling[0]]))
    value = float(min(r_field, r_fold))
    _field_cache[key] = value
    if len(_field_cache) > 8:
        _field_cache.popitem(last=False)
    return value


def project_drawable(camera: CameraModel, points_camera: np.ndarray,
                     settings: RenderSettings = RenderSettings()) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) camera-frame mm to (N, 2) px; also an (N,) bool mask of drawable points
    (in front of ``near_mm`` and inside the valid field of the distortion model)."""
    p = np.asarray(points_camera, dtype=np.float64).reshape(-1, 3)
    z = p[:, 2]
    ok = z > settings.near_mm
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.hypot(p[:, 0], p[:, 1]) / z
    ok &= r <= valid_field_radius(camera)
    uv = camera.project(np.where(ok[:, None], p, [0.0, 0.0, 1.0]))
    uv[~ok] = np.nan
    return uv, ok


def _fixed(uv) -> tuple[int, int]:
    return int(round(float(uv[0]) * _ONE)), int(round(float(uv[1]) * _ONE))


def _scale_for(frame: np.ndarray) -> float:
    """Pixel size of annotation strokes: 1 at 720 rows, proportional to the image height."""
    return max(frame.shape[0] / 720.0, 0.6)


def _text_metrics(frame: np.ndarray, settings: RenderSettings) -> tuple[float, int]:
    """Font scale and stroke thickness for legible text at this image size."""
    height_px = max(settings.text_min_height_px, settings.text_height_fraction * frame.shape[0])
    font_scale = height_px / _FONT_HEIGHT_AT_SCALE_1
    thickness = max(1, int(round(font_scale * 1.6)))
    return font_scale, thickness


def _stale_colour(color_bgr) -> tuple[int, int, int]:
    grey = int(round(0.114 * color_bgr[0] + 0.587 * color_bgr[1] + 0.299 * color_bgr[2]))
    grey = max(grey, 140)  # stays visible on dark video
    return (grey, grey, grey)


def put_text(frame_bgr: np.ndarray, text: str, origin_px, color_bgr, font_scale: float,
             thickness: int) -> None:
    """Text with a dark outline, readable on any background; origin = baseline-left (px).

    The outline is the same text stamped at 8 offsets: OpenCV 5's putText reads thickness as a
    font weight (bold glyphs are wider), so a thicker underlay, the 4.x trick, misaligns.
    """
    x, y = int(round(origin_px[0])), int(round(origin_px[1]))
    o = max(1, int(round(font_scale * 0.9)))
    for dx, dy in ((-o, -o), (0, -o), (o, -o), (-o, 0), (o, 0), (-o, o), (0, o), (o, o)):
        cv2.putText(frame_bgr, text, (x + dx, y + dy), FONT, font_scale, _OUTLINE_BGR, thickness, cv2.LINE_AA)
    cv2.putText(frame_bgr, text, (x, y), FONT, font_scale, tuple(int(c) for c in color_bgr), thickness,
                cv2.LINE_AA)


def _check_style(style: str) -> None:
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def _dashed_circle(frame, centre_fx, radius_fx, color, thickness, dashes=16) -> None:
    step = 360.0 / dashes
    for k in range(dashes):
        start = k * step
        cv2.ellipse(frame, centre_fx, (radius_fx, radius_fx), 0.0, start, start + 0.55 * step, color,
                    thickness, cv2.LINE_AA, SHIFT)


def _dashed_polyline(frame, pts_fx: np.ndarray, color, thickness, dash_px: float) -> None:
    """Dashes of about dash_px along a polyline given in fixed point."""
    pts = pts_fx.astype(np.float64) / _ONE
    seg = np.diff(pts, axis=0)
    length = np.hypot(seg[:, 0], seg[:, 1])
    s = np.concatenate([[0.0], np.cumsum(length)])
    total = s[-1]
    if total <= 0:
        return
    starts = np.arange(0.0, total, 2.0 * dash_px)
    for a in starts:
        b = min(a + dash_px, total)
        ts = np.concatenate([[a], s[(s > a) & (s < b)], [b]])
        xs = np.interp(ts, s, pts[:, 0])
        ys = np.interp(ts, s, pts[:, 1])
        dash = np.round(np.column_stack([xs, ys]) * _ONE).astype(np.int32)
        cv2.polylines(frame, [dash], False, color, thickness, cv2.LINE_AA, SHIFT)


# -- targets and paths ---------------------------------------------------------------------------

def target_radius_px(camera: CameraModel, target_camera: np.ndarray, radius_mm: float,
                     settings: RenderSettings = RenderSettings()) -> float:
    """Image radius (px) of a sphere of radius_mm at target_camera, clipped to sane sizes.

    The mean distance from the projected centre of 8 projected points on the sphere's rim
    (perpendicular to the viewing ray), so local distortion is included; about f * r / z.
    """
    c = np.asarray(target_camera, dtype=np.float64).reshape(3)
    ray = c / np.linalg.norm(c)
    a = np.cross(ray, [0.0, 1.0, 0.0])
    if np.linalg.norm(a) < 1e-9:
        a = np.cross(ray, [1.0, 0.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(ray, a)
    t = np.linspace(0.0, 2.0 * np.pi, 8, endpoint=False)
    rim = c + radius_mm * (np.cos(t)[:, None] * a + np.sin(t)[:, None] * b)
    uv, ok = project_drawable(camera, np.vstack([c, rim]), settings)
    if ok.all():
        radius = float(np.mean(np.hypot(*(uv[1:] - uv[0]).T)))
    else:
        radius = math.sqrt(camera.fx * camera.fy) * radius_mm / max(c[2], settings.near_mm)
    return float(np.clip(radius, settings.target_min_radius_px, settings.target_max_radius_px))


def draw_target(frame_bgr: np.ndarray, camera: CameraModel, target_camera: np.ndarray, radius_mm: float,
                label: str, color_bgr, style: str = "current",
                settings: RenderSettings = RenderSettings(), detail: str = "") -> bool:
    """A target sphere: ring of its projected radius, centre cross and label.

    target_camera : (3,) float, mm, OpenCV camera frame
    detail : a second line under the label (e.g. its depth: "68 mm from camera")
    Returns False (and draws nothing) when the target cannot be placed in this image.
    """
    _check_style(style)
    uv, ok = project_drawable(camera, np.asarray(target_camera, dtype=np.float64).reshape(1, 3), settings)
    if not ok[0]:
        return False
    h, w = frame_bgr.shape[:2]
    radius = target_radius_px(camera, target_camera, radius_mm, settings)
    u, v = uv[0]
    if u < -radius or v < -radius or u > w + radius or v > h + radius:
        return False
    px = _scale_for(frame_bgr)
    thick = max(1, int(round(2 * px)))
    colour = tuple(int(c) for c in color_bgr) if style == "current" else _stale_colour(color_bgr)
    centre = _fixed(uv[0])
    r_fx = int(round(radius * _ONE))
    if style == "current":
        cv2.circle(frame_bgr, centre, r_fx, _OUTLINE_BGR, thick + 2, cv2.LINE_AA, SHIFT)
        cv2.circle(frame_bgr, centre, r_fx, colour, thick, cv2.LINE_AA, SHIFT)
    else:
        _dashed_circle(frame_bgr, centre, r_fx, _OUTLINE_BGR, thick + 2)
        _dashed_circle(frame_bgr, centre, r_fx, colour, thick)
    arm = min(radius * 0.5, 12.0 * px) * _ONE
    for d in ((1, 0), (0, 1)):
        p0 = (int(centre[0] - d[0] * arm), int(centre[1] - d[1] * arm))
        p1 = (int(centre[0] + d[0] * arm), int(centre[1] + d[1] * arm))
        cv2.line(frame_bgr, p0, p1, _OUTLINE_BGR, thick + 2, cv2.LINE_AA, SHIFT)
        cv2.line(frame_bgr, p0, p1, colour, thick, cv2.LINE_AA, SHIFT)
    if label:
        text = label if style == "current" else f"{label} (stale)"
        font_scale, t = _text_metrics(frame_bgr, settings)
        put_text(frame_bgr, text, (u + radius + 4 * px, v + 0.35 * font_scale * _FONT_HEIGHT_AT_SCALE_1),
                 colour, font_scale, t)
    if detail:
        font_scale, t = _text_metrics(frame_bgr, settings)
        line = 1.5 * font_scale * _FONT_HEIGHT_AT_SCALE_1
        put_text(frame_bgr, detail, (u + radius + 4 * px, v + 0.35 * font_scale * _FONT_HEIGHT_AT_SCALE_1
                                     + (line if label else 0.0)), colour, font_scale, t)
    return True


def _path_parameters(samples: int, segments) -> tuple[np.ndarray, np.ndarray]:
    """Sample parameters along a path (0 entry .. 1 target) with every segment boundary among
    them, and for each interval between consecutive samples whether it lies inside anatomy."""
    s = np.linspace(0.0, 1.0, max(2, int(samples)) + 1)
    if not segments:
        return s, np.zeros(len(s) - 1, dtype=bool)
    spans = [(float(g.t0), float(g.t1), bool(g.inside)) if hasattr(g, "t0") else
             (float(g[0]), float(g[1]), bool(g[2])) for g in segments]
    cuts = [x for a, b, _ in spans for x in (a, b) if 0.0 < x < 1.0]
    s = np.unique(np.concatenate([s, cuts]))
    mid = 0.5 * (s[:-1] + s[1:])
    inside = np.zeros(len(mid), dtype=bool)
    for a, b, flag in spans:
        if flag:
            inside |= (mid >= a) & (mid <= b)
    return s, inside


def draw_path(frame_bgr: np.ndarray, camera: CameraModel, entry_camera: np.ndarray, target_camera: np.ndarray,
              diameter_mm: float, label: str, color_bgr, style: str = "current",
              settings: RenderSettings = RenderSettings(), segments=None) -> bool:
    """A planned straight path from entry to target, bent by the lens as the camera sees it.

    entry_camera, target_camera : (3,) float, mm, OpenCV camera frame
    diameter_mm : tool diameter; the stroke is its projected width, clipped to 2..16 px
    segments : depth cue, optional: (t0, t1, inside) triples or ``guidance.PathSegment``s along
        the path (t: 0 at the entry, 1 at the target).  Parts inside the anatomy are dashed,
        parts outside solid, so that the path does not seem to float on the skin (Kersten-Oertel
        et al. 2014, FIELD-NOTES.md).  A stale path is dashed and grey throughout.
    The segment is sampled densely (settings.path_samples, plus every segment boundary) and each
    sample projected with distortion; samples that cannot be placed (behind the camera, outside
    the calibrated field) split the drawn line.  Entry: open ring; target: filled dot.  Returns
    False if nothing drawn.
    """
    _check_style(style)
    e = np.asarray(entry_camera, dtype=np.float64).reshape(3)
    t = np.asarray(target_camera, dtype=np.float64).reshape(3)
    s, inside = _path_parameters(settings.path_samples, segments)
    s = s[:, None]
    pts = e + s * (t - e)
    uv, ok = project_drawable(camera, pts, settings)
    if not ok.any():
        return False
    px = _scale_for(frame_bgr)
    f = math.sqrt(camera.fx * camera.fy)
    z = np.clip(pts[ok, 2], settings.near_mm, None)
    thick = int(np.clip(round(float(np.median(f * diameter_mm / z))), 2, 16))
    colour = tuple(int(c) for c in color_bgr) if style == "current" else _stale_colour(color_bgr)
    fixed = np.round(np.nan_to_num(uv) * _ONE).astype(np.int32)
    # Runs of consecutive drawable intervals of one kind (inside or outside the anatomy).
    drawable = ok[:-1] & ok[1:]
    kind = np.where(drawable, inside.astype(np.int8), -1)
    bounds = np.concatenate([[0], np.flatnonzero(np.diff(kind)) + 1, [len(kind)]])
    # Round caps of (thick + 2) px close gaps shorter than that: inside dashes grow with the stroke.
    dash = 10.0 * px if style == "stale" else max(10.0 * px, 2.0 * thick + 2.0)
    runs = [(fixed[a:b + 1], style == "current" and not kind[a])
            for a, b in zip(bounds[:-1], bounds[1:]) if kind[a] >= 0]
    # All outlines first: a run's outline must not cut into its neighbour's stroke.
    for ink, width in ((_OUTLINE_BGR, thick + 2), (colour, thick)):
        for run, solid in runs:
            if solid:
                cv2.polylines(frame_bgr, [run], False, ink, width, cv2.LINE_AA, SHIFT)
            else:
                _dashed_polyline(frame_bgr, run, ink, width, dash)
    marker = max(thick + 3, int(round(6 * px)))
    if ok[0]:
        cv2.circle(frame_bgr, tuple(fixed[0]), marker * _ONE, _OUTLINE_BGR, 3, cv2.LINE_AA, SHIFT)
        cv2.circle(frame_bgr, tuple(fixed[0]), marker * _ONE, colour, 2, cv2.LINE_AA, SHIFT)
    if ok[-1]:
        cv2.circle(frame_bgr, tuple(fixed[-1]), (marker + 1) * _ONE, _OUTLINE_BGR, -1, cv2.LINE_AA, SHIFT)
        cv2.circle(frame_bgr, tuple(fixed[-1]), marker * _ONE, colour, -1, cv2.LINE_AA, SHIFT)
    if label:
        anchor = uv[np.flatnonzero(ok)[0]]
        text = label if style == "current" else f"{label} (stale)"
        font_scale, tt = _text_metrics(frame_bgr, settings)
        put_text(frame_bgr, text, (anchor[0] + marker + 4 * px, anchor[1] - marker - 2 * px), colour,
                 font_scale, tt)
    return True


def draw_tool_axis(frame_bgr: np.ndarray, camera: CameraModel, start_camera: np.ndarray, tip_camera: np.ndarray,
                   color_bgr=(255, 255, 0), settings: RenderSettings = RenderSettings()) -> bool:
    """A tracked tool's axis: the segment from its markers to its tip (the shaft), bent by the lens.

    start_camera, tip_camera : (3,) float, mm, OpenCV camera frame (e.g. the markers' centre and
    the tip).  Sampled and projected like :func:`draw_path`; samples that cannot be placed split
    the line.  Drawn only for a current pose.  Returns False if nothing was drawn.
    """
    a = np.asarray(start_camera, dtype=np.float64).reshape(3)
    b = np.asarray(tip_camera, dtype=np.float64).reshape(3)
    s = np.linspace(0.0, 1.0, max(2, int(settings.path_samples)) + 1)[:, None]
    uv, ok = project_drawable(camera, a + s * (b - a), settings)
    if not ok.any():
        return False
    thick = max(1, int(round(2 * _scale_for(frame_bgr))))
    fixed = np.round(np.nan_to_num(uv) * _ONE).astype(np.int32)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], ok.astype(np.int8), [0]])))
    runs = [fixed[i:j] for i, j in zip(edges[::2], edges[1::2]) if j - i >= 2]
    for run in runs:
        cv2.polylines(frame_bgr, [run], False, _OUTLINE_BGR, thick + 2, cv2.LINE_AA, SHIFT)
        cv2.polylines(frame_bgr, [run], False, tuple(int(c) for c in color_bgr), thick, cv2.LINE_AA, SHIFT)
    return bool(runs)


def draw_tool_tip(frame_bgr: np.ndarray, camera: CameraModel, tip_camera: np.ndarray, label: str,
                  color_bgr=(255, 255, 0), settings: RenderSettings = RenderSettings()) -> bool:
    """A tracked tool's tip: a ringed dot with its name (drawn only for a current pose).

    tip_camera : (3,) float, mm, OpenCV camera frame.  Returns False if it cannot be placed.
    """
    uv, ok = project_drawable(camera, np.asarray(tip_camera, dtype=np.float64).reshape(1, 3), settings)
    if not ok[0]:
        return False
    h, w = frame_bgr.shape[:2]
    u, v = uv[0]
    if not (0.0 <= u <= w - 1 and 0.0 <= v <= h - 1):
        return False
    px = _scale_for(frame_bgr)
    centre = _fixed(uv[0])
    r = int(round(5 * px * _ONE))
    colour = tuple(int(c) for c in color_bgr)
    cv2.circle(frame_bgr, centre, r + _ONE, _OUTLINE_BGR, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(frame_bgr, centre, r, colour, -1, cv2.LINE_AA, SHIFT)
    cv2.circle(frame_bgr, centre, r // 3, _OUTLINE_BGR, -1, cv2.LINE_AA, SHIFT)
    if label:
        font_scale, t = _text_metrics(frame_bgr, settings)
        put_text(frame_bgr, label, (u + 8 * px, v - 8 * px), colour, font_scale, t)
    return True


# -- screen-space elements -------------------------------------------------------------------------

def darken_box(frame_bgr: np.ndarray, x0: int, y0: int, x1: int, y1: int, keep: float = 0.35) -> None:
    h, w = frame_bgr.shape[:2]
    x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if x1 > x0 and y1 > y0:
        roi = frame_bgr[y0:y1, x0:x1]
        cv2.convertScaleAbs(roi, dst=roi, alpha=keep)


def _hud_layout(frame_bgr: np.ndarray, lines, settings: RenderSettings):
    """Font scale, thickness, padding, text sizes, line height and panel size of the HUD.  The text
    shrinks when its widest line would not fit the image (small frames, long lines)."""
    font_scale, thick = _text_metrics(frame_bgr, settings)
    frame_w = frame_bgr.shape[1]
    for _ in range(4):   # text width is nearly proportional to the scale: one or two rounds suffice
        pad = int(round(0.5 * font_scale * _FONT_HEIGHT_AT_SCALE_1))
        sizes = [cv2.getTextSize(text, FONT, font_scale, thick) for text, _ in lines]
        width = max(sz[0][0] for sz in sizes) + 2 * pad
        if width <= frame_w:
            break
        font_scale *= 0.99 * frame_w / width
        thick = max(1, min(thick, int(round(font_scale * 1.6))))
    line_h = max(sz[0][1] + sz[1] for sz in sizes) + pad // 2
    return font_scale, thick, pad, sizes, line_h, width, line_h * len(lines) + pad


def hud_box(frame_bgr: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]],
            settings: RenderSettings = RenderSettings()) -> tuple[int, int, int, int]:
    """The box (x0, y0, x1, y1) px that :func:`draw_hud` covers with these lines (x1, y1 exclusive)."""
    if not lines:
        return 0, 0, 0, 0
    *_, width, height = _hud_layout(frame_bgr, lines, settings)
    return 0, 0, width, height


def draw_hud(frame_bgr: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]],
             settings: RenderSettings = RenderSettings()) -> None:
    """Status lines at the top left, each in its colour, on a darkened panel (any background)."""
    if not lines:
        return
    font_scale, thick, pad, sizes, line_h, width, height = _hud_layout(frame_bgr, lines, settings)
    darken_box(frame_bgr, 0, 0, width, height)
    y = pad // 2
    for (text, colour), ((_, th), base) in zip(lines, sizes):
        y += line_h
        put_text(frame_bgr, text, (pad, y - base - pad // 4), colour, font_scale, thick)


def draw_banner(frame_bgr: np.ndarray, text: str, color_bgr=(0, 0, 255),
                settings: RenderSettings = RenderSettings()) -> None:
    """A centred, unmistakable message (e.g. "REFERENCE LOST - overlay hidden"): a full-width
    band in ``color_bgr`` with large contrasting text, and a thick frame border in the colour."""
    h, w = frame_bgr.shape[:2]
    font_scale, thick = _text_metrics(frame_bgr, settings)
    font_scale *= 1.8
    thick = max(2, int(round(thick * 1.6)))
    (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    if tw > 0.94 * w:  # long text: shrink to fit the width
        shrink = 0.94 * w / tw
        font_scale *= shrink
        thick = max(1, int(round(thick * shrink)))
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
    band = th + base + int(th)
    y0 = (h - band) // 2
    colour = tuple(int(c) for c in color_bgr)
    cv2.rectangle(frame_bgr, (0, y0), (w - 1, y0 + band), colour, -1)
    border = max(4, int(round(0.012 * min(w, h))))
    for bx0, by0, bx1, by1 in ((0, 0, w, border), (0, h - border, w, h), (0, 0, border, h), (w - border, 0, w, h)):
        frame_bgr[by0:by1, bx0:bx1] = colour
    luminance = 0.114 * colour[0] + 0.587 * colour[1] + 0.299 * colour[2]
    ink = (0, 0, 0) if luminance > 140 else (255, 255, 255)
    org = ((w - tw) // 2, y0 + (band + th) // 2 - base // 2)
    cv2.putText(frame_bgr, text, org, FONT, font_scale, ink, thick, cv2.LINE_AA)


_hazard_cache: OrderedDict = OrderedDict()


def _hazard_pattern(w: int, h: int, border: int, colour) -> np.ndarray:
    """(H, W, 3) uint8 diagonal stripes (colour/black, period 4 x border), cached per size."""
    key = (w, h, border, tuple(colour))
    pattern = _hazard_cache.get(key)
    if pattern is None:
        period = 4 * border
        y, x = np.mgrid[0:h, 0:w]
        on = ((x + y) % period) < period // 2
        pattern = np.zeros((h, w, 3), np.uint8)
        pattern[on] = colour
        pattern.setflags(write=False)
        _hazard_cache[key] = pattern
        if len(_hazard_cache) > 4:
            _hazard_cache.popitem(last=False)
    return pattern


def draw_stale_marking(frame_bgr: np.ndarray, text: str, settings: RenderSettings = RenderSettings()) -> None:
    """Mark a frame whose overlay is STALE: a hazard-striped (amber/black) border and the text
    on an amber tab at the bottom centre (clear of the HUD at the top left)."""
    h, w = frame_bgr.shape[:2]
    border = max(6, int(round(0.018 * min(w, h))))
    amber = (0, 191, 255)
    hazard = _hazard_pattern(w, h, border, amber)
    frame_bgr[:border] = hazard[:border]
    frame_bgr[h - border:] = hazard[h - border:]
    frame_bgr[:, :border] = hazard[:, :border]
    frame_bgr[:, w - border:] = hazard[:, w - border:]
    if text:
        font_scale, thick = _text_metrics(frame_bgr, settings)
        (tw, th), base = cv2.getTextSize(text, FONT, font_scale, thick)
        pad = max(4, th // 2)
        x0 = max(0, (w - tw) // 2 - pad)
        x1 = min(w - 1, x0 + tw + 2 * pad)
        y0 = max(0, h - border - th - base - 2 * pad)
        cv2.rectangle(frame_bgr, (x0, y0), (x1, h - 1), amber, -1)
        cv2.putText(frame_bgr, text, (x0 + pad, y0 + pad + th), FONT, font_scale, (0, 0, 0), thick,
                    cv2.LINE_AA)


# -- the pointer's bull's-eye ----------------------------------------------------------------------

#: Colour of a guidance figure by class (geometry.guidance.level): within tolerance (green), a
#: correction needed (yellow), off (red); BGR.
LEVEL_COLOURS_BGR = ((80, 220, 80), (0, 220, 255), (60, 60, 255))
_RING_BGR = (200, 200, 200)
_RING_IDLE_BGR = (110, 110, 110)


@dataclasses.dataclass(frozen=True)
class InsetLayout:
    """Where :func:`draw_bullseye` drew: box (x0, y0, x1, y1) px (x1, y1 exclusive), the rings'
    centre (u, v) px and the scale (px per mm of lateral offset; "up" is towards -v)."""

    box: tuple[int, int, int, int]
    centre_px: tuple[float, float]
    px_per_mm: float

    def to_px(self, offset_mm) -> np.ndarray:
        """(2,) image position (px) of a (right, up) offset in mm, unclamped."""
        return np.array([self.centre_px[0] + self.px_per_mm * offset_mm[0],
                         self.centre_px[1] - self.px_per_mm * offset_mm[1]])


def _inset_place(frame_shape, width: int, height: int, avoid_uv_px, avoid_radius_px: float,
                 avoid_boxes=()) -> tuple[int, int]:
    """Top-left corner of an inset of this size, in a corner of the image: the first of
    bottom-right, top-right, bottom-left, top-left whose box (grown by ``avoid_radius_px``) holds
    none of ``avoid_uv_px`` and overlaps none of ``avoid_boxes``; when none is free, the one
    covering the fewest points (a covered point weighs more than an overlapped box)."""
    h, w = frame_shape[:2]
    margin = int(round(max(6.0, 0.03 * min(w, h))))  # clear of the STALE hazard border
    x_right, y_bottom = max(0, w - margin - width), max(0, h - margin - height)
    corners = ((x_right, y_bottom), (x_right, margin), (margin, y_bottom), (margin, margin))
    points = np.asarray(avoid_uv_px if avoid_uv_px is not None else np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    points = points[np.all(np.isfinite(points), axis=1)]
    r = avoid_radius_px
    costs = []
    for x0, y0 in corners:
        covered = int(np.count_nonzero((points[:, 0] >= x0 - r) & (points[:, 0] <= x0 + width + r)
                                       & (points[:, 1] >= y0 - r) & (points[:, 1] <= y0 + height + r)))
        overlaps = sum(1 for bx0, by0, bx1, by1 in avoid_boxes
                       if bx0 < x0 + width and x0 < bx1 and by0 < y0 + height and y0 < by1)
        costs.append((len(avoid_boxes) + 1) * covered + overlaps)
    return corners[int(np.argmin(costs))]


def _clamped(centre, vector_px, limit_px: float) -> tuple[np.ndarray, bool]:
    """centre + vector, pulled back onto a circle of limit_px when beyond it; and whether it was."""
    length = float(np.hypot(vector_px[0], vector_px[1]))
    if length > limit_px:
        return centre + vector_px * (limit_px / length), True
    return centre + vector_px, False


def _plain_text(frame_bgr, text, origin_px, color_bgr, font_scale, thickness) -> None:
    """Text without the outline, for panels already darkened (a ninth of put_text's cost)."""
    cv2.putText(frame_bgr, text, (int(round(origin_px[0])), int(round(origin_px[1]))), FONT, font_scale,
                tuple(int(c) for c in color_bgr), thickness, cv2.LINE_AA)


def draw_bullseye(frame_bgr: np.ndarray, guidance: PointerGuidance | None, lines, labels: dict | None = None,
                  avoid_uv_px=None, avoid_radius_px: float = 0.0, avoid_boxes=(),
                  settings: RenderSettings = RenderSettings(),
                  guidance_settings: GuidanceSettings = GuidanceSettings()) -> InsetLayout:
    """The pointer's bull's-eye: an inset in a corner of the image, looking down the planned path.

    Rings at ``guidance_settings.rings_mm`` of lateral offset around the path; the tip's offset
    (``guidance.offset_mm``, right/up) as a filled dot coloured by its class (green under
    lateral_ok_mm, yellow under lateral_warn_mm, red beyond), clamped to the edge as an arrow when
    off the scale; the tool's axis extended to the target's depth (``guidance.axis_offset_mm``) as
    a ring joined to the dot, coloured by the angle's class.  ``guidance`` None: grey rings, no dot
    (the tool or the reference is not current; ``lines`` say so).  Never shown from a stale pose:
    the caller passes None then.

    lines : (text, BGR) readouts drawn under the rings
    labels : letters at the right, left, up and down edges (``PathBasis.labels()``), or None
    avoid_uv_px : (K, 2) image points the inset must not cover (the active target, the tip), px,
        with a margin of ``avoid_radius_px``
    avoid_boxes : (x0, y0, x1, y1) boxes it should not overlap (the HUD); covering a point is worse
    Returns the layout (box, centre, scale) it was drawn with.
    """
    gs = guidance_settings
    h = frame_bgr.shape[0]
    px = _scale_for(frame_bgr)
    side = int(round(max(gs.inset_min_px, gs.inset_fraction * h)))
    font_scale, thick = _text_metrics(frame_bgr, settings)
    font_scale *= 0.9
    sizes = [cv2.getTextSize(text, FONT, font_scale, thick) for text, _ in lines]
    line_h = int(round(1.45 * font_scale * _FONT_HEIGHT_AT_SCALE_1))
    pad = int(round(0.4 * line_h))
    width = max([side] + [sz[0][0] + 2 * pad for sz in sizes])
    height = side + line_h * len(lines) + (pad if lines else 0)
    x0, y0 = _inset_place(frame_bgr.shape, width, height, avoid_uv_px, avoid_radius_px, avoid_boxes)
    darken_box(frame_bgr, x0, y0, x0 + width, y0 + height, keep=0.3)

    centre = np.array([x0 + width / 2.0, y0 + side / 2.0])
    radius = side / 2.0 - pad
    mm_to_px = radius / (gs.rings_mm[-1] * gs.inset_range_factor)
    ring_colour = _RING_BGR if guidance is not None else _RING_IDLE_BGR
    c_fx = _fixed(centre)
    line_w = max(1, int(round(px)))
    for sign in (-1, 1):
        for axis in (np.array([1.0, 0.0]), np.array([0.0, 1.0])):
            end = _fixed(centre + sign * radius * axis)
            cv2.line(frame_bgr, c_fx, end, _RING_IDLE_BGR, line_w, cv2.LINE_AA, SHIFT)
    for ring in gs.rings_mm:
        cv2.circle(frame_bgr, c_fx, int(round(ring * mm_to_px * _ONE)), ring_colour, line_w, cv2.LINE_AA, SHIFT)
    small = 0.7 * font_scale
    small_t = max(1, thick - 1)
    outer = gs.rings_mm[-1] * mm_to_px
    ring_text = f"{gs.rings_mm[-1]:g} mm"
    (tw, th), _ = cv2.getTextSize(ring_text, FONT, small, small_t)
    _plain_text(frame_bgr, ring_text, (centre[0] + 0.8 * outer - tw / 2, centre[1] + 0.8 * outer + th),
                ring_colour, small, small_t)
    if labels:
        (lw, lh), _ = cv2.getTextSize("M", FONT, small, small_t)
        edge = radius - 0.2 * lw
        spots = {"right": (centre[0] + edge - lw, centre[1] - 0.3 * lh),
                 "left": (centre[0] - edge, centre[1] - 0.3 * lh),
                 "up": (centre[0] + 0.3 * lw, centre[1] - edge + lh),
                 "down": (centre[0] + 0.3 * lw, centre[1] + edge)}
        for key, origin in spots.items():
            if labels.get(key):
                _plain_text(frame_bgr, labels[key], origin, ring_colour, small, small_t)

    if guidance is not None:
        dot_r = max(3.0, 0.045 * side)
        limit = radius - dot_r
        tip_level = level(guidance.lateral_mm, gs.lateral_ok_mm, gs.lateral_warn_mm)
        angle_level = level(guidance.angle_deg, gs.angle_ok_deg, gs.angle_warn_deg)
        # Image rows grow downwards: "up" offsets are negative v.
        tip_px, tip_clamped = _clamped(centre, mm_to_px * np.array([guidance.offset_mm[0], -guidance.offset_mm[1]]),
                                       limit)
        if guidance.axis_offset_mm is not None:
            axis_px, _ = _clamped(centre, mm_to_px * np.array([guidance.axis_offset_mm[0],
                                                               -guidance.axis_offset_mm[1]]), limit)
            axis_colour = LEVEL_COLOURS_BGR[angle_level]
            cv2.line(frame_bgr, _fixed(tip_px), _fixed(axis_px), axis_colour, line_w, cv2.LINE_AA, SHIFT)
            cv2.circle(frame_bgr, _fixed(axis_px), int(round(dot_r * _ONE)), _OUTLINE_BGR, line_w + 3, cv2.LINE_AA,
                       SHIFT)
            cv2.circle(frame_bgr, _fixed(axis_px), int(round(dot_r * _ONE)), axis_colour, line_w + 1, cv2.LINE_AA,
                       SHIFT)
        tip_colour = LEVEL_COLOURS_BGR[tip_level]
        if tip_clamped:
            # Off the scale: an arrow at the edge pointing the way the tip is off.
            out = (tip_px - centre) / max(float(np.linalg.norm(tip_px - centre)), 1e-9)
            across = np.array([-out[1], out[0]])
            tri = np.array([tip_px + 1.6 * dot_r * out, tip_px + dot_r * across, tip_px - dot_r * across])
            tri_fx = np.round(tri * _ONE).astype(np.int32)
            cv2.fillConvexPoly(frame_bgr, tri_fx, tip_colour, cv2.LINE_AA, SHIFT)
            cv2.polylines(frame_bgr, [tri_fx], True, _OUTLINE_BGR, line_w, cv2.LINE_AA, SHIFT)
        else:
            cv2.circle(frame_bgr, _fixed(tip_px), int(round((dot_r + 1) * _ONE)), _OUTLINE_BGR, -1, cv2.LINE_AA, SHIFT)
            cv2.circle(frame_bgr, _fixed(tip_px), int(round(dot_r * _ONE)), tip_colour, -1, cv2.LINE_AA, SHIFT)

    y = y0 + side
    for (text, colour), ((_, th), base) in zip(lines, sizes):
        y += line_h
        _plain_text(frame_bgr, text, (x0 + pad, y - base), colour, font_scale, thick)
    return InsetLayout((x0, y0, x0 + width, y0 + height), (float(centre[0]), float(centre[1])), float(mm_to_px))
