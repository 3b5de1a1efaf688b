"""The calibration report (``calibrate run --report DIR``): one HTML page a person can judge in
ten seconds, the numbers in JSON, and an annotated image of each view.

``report.html`` is self-contained (inline SVG charts drawn here, thumbnails as data URIs; no
plotting library): a verdict banner with the warnings on top, the parameters with their
standard deviations, the per-view error bar chart (dropped views marked), the coverage map of
the image (corners per cell), the residual vectors across the image (magnified, with the
scale), the board tilts, the distortion field, and the views.  ``report.json`` holds the same
numbers; ``views/NN_name.jpg`` show the detected corners (green) and the reprojected ones (red
crosses), with the residuals magnified.
"""

from __future__ import annotations

import base64
import datetime
import html
import math
import os
from pathlib import Path

import cv2
import numpy as np

from ar_guide import __version__
from ar_guide.calibration.coverage import coverage_summary, tilt_of_view
from ar_guide.calibration.quality import Finding, verdict
from ar_guide.calibration.solve import CalibrationResult, distortion_displacement_px, image_grid, outlier_limit
from ar_guide.constants import CalibrationSettings
from ar_guide.errors import InputError
from ar_guide.io.report import write_json

#: Colours of the verdicts and of the charts.
_VERDICT_COLOURS = {"good": "#1b7f3b", "usable": "#b8860b", "not trustworthy": "#b22222", "not written": "#b22222"}
_USED = "#3b6ea8"
_DROPPED = "#c0392b"
_THUMB_WIDTH_PX = 480
_VIEW_IMAGE_MAX_PX = 1280


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _nice_step(span: float, target_ticks: int = 5) -> float:
    raw = max(span, 1e-12) / target_ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * magnitude:
            return m * magnitude
    return 10 * magnitude


# ------------------------------------------------------------------------------------ charts


def svg_view_errors(names, errors_px, dropped_mask, limit_px: float | None, width: int = 760,
                    height: int = 240) -> str:
    """Bar chart of each view's RMS (px); dropped views red and hatched; the outlier limit and
    the warning level as lines."""
    n = len(errors_px)
    left, right, top, bottom = 48, 10, 14, 64
    pw, ph = width - left - right, height - top - bottom
    top_value = max([*errors_px, limit_px or 0.0, 0.1]) * 1.1
    step = _nice_step(top_value, 4)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
             '<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" '
             'patternTransform="rotate(45)"><rect width="6" height="6" fill="#f4c7c3"/>'
             f'<line x1="0" y1="0" x2="0" y2="6" stroke="{_DROPPED}" stroke-width="3"/></pattern></defs>']
    y = 0.0
    while y <= top_value + 1e-12:
        py = top + ph - y / top_value * ph
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}" stroke="#ddd"/>')
        parts.append(f'<text x="{left - 4}" y="{py + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += step
    parts.append(f'<text x="12" y="{top + ph / 2}" transform="rotate(-90 12 {top + ph / 2})" '
                 f'text-anchor="middle">RMS (px)</text>')
    slot = pw / max(n, 1)
    bar = max(min(slot * 0.75, 40), 1)
    for i, (name, e, d) in enumerate(zip(names, errors_px, dropped_mask)):
        x = left + i * slot + (slot - bar) / 2
        h = e / top_value * ph
        fill = "url(#hatch)" if d else _USED
        stroke = f' stroke="{_DROPPED}"' if d else ""
        label = f"{name}: {e:.3f} px{' (dropped)' if d else ''}"
        parts.append(f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{bar:.1f}" height="{h:.1f}" '
                     f'fill="{fill}"{stroke}><title>{_esc(label)}</title></rect>')
        if n <= 40:
            tx, ty = x + bar / 2, top + ph + 8
            parts.append(f'<text x="{tx:.1f}" y="{ty:.1f}" transform="rotate(50 {tx:.1f} {ty:.1f})" '
                         f'font-size="9">{_esc(_short(name))}</text>')
    if limit_px is not None and limit_px < top_value:
        py = top + ph - limit_px / top_value * ph
        parts.append(f'<line x1="{left}" y1="{py:.1f}" x2="{left + pw}" y2="{py:.1f}" stroke="{_DROPPED}" '
                     f'stroke-dasharray="5,3"/><text x="{left + pw - 2}" y="{py - 3:.1f}" text-anchor="end" '
                     f'fill="{_DROPPED}">outlier limit {limit_px:.2f} px</text>')
    parts.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#333"/></svg>')
    return "".join(parts)


def _short(name: str, length: int = 14) -> str:
    name = os.path.basename(str(name))
    return name if len(name) <= length else name[:length - 1] + "~"


def _image_frame(image_size, width: int):
    w, h = image_size
    scale = width / w
    return scale, int(round(h * scale))


def svg_coverage(counts, image_size, points_px=None, width: int = 360) -> str:
    """Heat map of corners per cell over the image (white: none), with every corner as a dot."""
    counts = np.asarray(counts)
    rows, cols = counts.shape
    scale, height = _image_frame(image_size, width)
    cw, ch = width / cols, height / rows
    top = max(int(counts.max()), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 18}" '
             f'viewBox="0 0 {width} {height + 18}" font-family="sans-serif" font-size="10">']
    for r in range(rows):
        for c in range(cols):
            v = int(counts[r, c])
            if v == 0:
                fill = "#ffffff"
            else:
                t = 0.25 + 0.75 * math.sqrt(v / top)
                fill = f"rgb({int(255 - 200 * t)},{int(255 - 120 * t)},{int(255 - 40 * t)})"
            parts.append(f'<rect x="{c * cw:.1f}" y="{r * ch:.1f}" width="{cw:.1f}" height="{ch:.1f}" fill="{fill}" '
                         f'stroke="#999" stroke-width="0.5"><title>{v} corners</title></rect>')
            if v == 0:
                parts.append(f'<text x="{(c + 0.5) * cw:.1f}" y="{(r + 0.5) * ch + 3:.1f}" text-anchor="middle" '
                             f'fill="{_DROPPED}">0</text>')
    if points_px is not None and len(points_px):
        p = np.asarray(points_px, dtype=np.float64)
        if len(p) > 6000:
            p = p[:: int(math.ceil(len(p) / 6000))]
        dots = "".join(f'<circle cx="{(u + 0.5) * scale:.1f}" cy="{(v + 0.5) * scale:.1f}" r="0.9"/>' for u, v in p)
        parts.append(f'<g fill="#222" fill-opacity="0.5">{dots}</g>')
    parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="none" stroke="#333"/>')
    parts.append(f'<text x="0" y="{height + 13}">{cols}x{rows} cells; darker = more corners; red 0 = none</text></svg>')
    return "".join(parts)


def svg_residuals(views_points, residuals, image_size, width: int = 360) -> str:
    """Residual vectors (detected minus reprojected) at each corner, magnified; the scale bar
    shows how long 1 px (or the chosen unit) of residual is drawn."""
    scale, height = _image_frame(image_size, width)
    def stacked(arrays):
        arrays = [np.asarray(a, np.float64).reshape(-1, 2) for a in arrays]
        return np.concatenate(arrays) if arrays else np.zeros((0, 2))

    pts = stacked(views_points)
    res = stacked(residuals)
    norms = np.linalg.norm(res, axis=1) if len(res) else np.zeros(0)
    p95 = float(np.percentile(norms, 95)) if len(norms) else 1.0
    # Magnify so that the 95th percentile residual is drawn 4% of the chart width long.
    unit = _nice_step(max(p95, 1e-3), 1)
    magnify = 0.04 * width / max(p95, 1e-6) / scale
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 22}" '
             f'viewBox="0 0 {width} {height + 22}" font-family="sans-serif" font-size="10">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#333"/>']
    lines = []
    step = max(1, int(math.ceil(len(pts) / 5000)))
    for (u, v), (du, dv), n in zip(pts[::step], res[::step], norms[::step]):
        x0, y0 = (u + 0.5) * scale, (v + 0.5) * scale
        x1, y1 = x0 + du * magnify * scale, y0 + dv * magnify * scale
        colour = _DROPPED if n > 3 * p95 else _USED
        lines.append(f'<line x1="{x0:.1f}" y1="{y0:.1f}" x2="{x1:.1f}" y2="{y1:.1f}" stroke="{colour}"/>')
    parts.append(f'<g stroke-width="1">{"".join(lines)}</g>')
    bar = unit * magnify * scale
    parts.append(f'<line x1="4" y1="{height + 12}" x2="{4 + bar:.1f}" y2="{height + 12}" stroke="#000" '
                 f'stroke-width="2"/>')
    parts.append(f'<text x="{8 + bar:.1f}" y="{height + 16}">= {unit:g} px residual (magnified {magnify:.0f}x); '
                 f'red: &gt; 3x the 95th percentile ({p95:.2f} px)</text></svg>')
    return "".join(parts)


def svg_tilts(tilts_deg, dropped_tilts_deg=(), limit_deg: float = 20.0, size: int = 260) -> str:
    """Scatter of the views' tilts (x: tilt about the vertical axis, y: about the horizontal
    axis, deg), rings at 15, 30, 45, 60 deg; the dashed ring is the 'tilted' limit."""
    c = size / 2
    r_max = 60.0
    s = (size / 2 - 16) / r_max
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 16}" '
             f'viewBox="0 0 {size} {size + 16}" font-family="sans-serif" font-size="10">']
    for ring in (15, 30, 45, 60):
        parts.append(f'<circle cx="{c}" cy="{c}" r="{ring * s:.1f}" fill="none" stroke="#ccc"/>')
        parts.append(f'<text x="{c + ring * s * 0.707 + 2:.1f}" y="{c - ring * s * 0.707:.1f}" '
                     f'fill="#888">{ring}</text>')
    parts.append(f'<circle cx="{c}" cy="{c}" r="{limit_deg * s:.1f}" fill="none" stroke="{_DROPPED}" '
                 f'stroke-dasharray="4,3"/>')
    parts.append(f'<line x1="{c}" y1="8" x2="{c}" y2="{size - 8}" stroke="#999"/>'
                 f'<line x1="8" y1="{c}" x2="{size - 8}" y2="{c}" stroke="#999"/>')
    parts.append(f'<text x="{c}" y="10" text-anchor="middle">top away</text>')
    parts.append(f'<text x="{c}" y="{size - 1}" text-anchor="middle">bottom away</text>')
    parts.append(f'<text x="2" y="{c - 4}">left away</text>'
                 f'<text x="{size - 2}" y="{c - 4}" text-anchor="end">right away</text>')
    for (tx, ty), colour in [(t, _USED) for t in tilts_deg] + [(t, _DROPPED) for t in dropped_tilts_deg]:
        # Screen x: right away = tilt_y negative; screen y: top away = tilt_x negative.
        x = c - np.clip(ty, -r_max, r_max) * s
        y = c + np.clip(tx, -r_max, r_max) * s
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}" fill-opacity="0.75">'
                     f'<title>tilt x {tx:.1f}, y {ty:.1f} deg</title></circle>')
    parts.append(f'<text x="0" y="{size + 13}">board tilt (deg); dashed: {limit_deg:g} deg</text></svg>')
    return "".join(parts)


def svg_distortion(camera, grid=(17, 10), width: int = 360) -> str:
    """Distortion displacement vectors over the image (to scale: the arrows end where a pixel
    lands), coloured by magnitude."""
    scale, height = _image_frame(camera.image_size, width)
    uv = image_grid(camera.image_size, grid)
    d = distortion_displacement_px(camera, uv)
    n = np.linalg.norm(d, axis=1)
    top = max(float(n.max()), 1e-6)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 18}" '
             f'viewBox="0 0 {width} {height + 18}" font-family="sans-serif" font-size="10">',
             f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff" stroke="#333"/>']
    for (u, v), (du, dv), m in zip(uv, d, n):
        x1, y1 = (u - du + 0.5) * scale, (v - dv + 0.5) * scale
        x0, y0 = (u + 0.5) * scale, (v + 0.5) * scale
        t = m / top
        colour = f"rgb({int(60 + 180 * t)},{int(90 * (1 - t))},{int(200 * (1 - t))})"
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x0:.1f}" y2="{y0:.1f}" stroke="{colour}"/>'
                     f'<circle cx="{x0:.1f}" cy="{y0:.1f}" r="1.2" fill="{colour}"/>')
    parts.append(f'<text x="0" y="{height + 13}">lens distortion: undistorted to distorted position, to scale; '
                 f'largest {top:.1f} px</text></svg>')
    return "".join(parts)


# ------------------------------------------------------------------------------------ views


def annotate_view(image: np.ndarray, view, projected_px=None, magnify: float = 10.0) -> np.ndarray:
    """BGR copy of ``image`` (the view's image at any scale) with the detected corners (green
    circles) and, if given, the reprojected corners ((K, 2) px of the full image; red crosses)
    and the residuals magnified ``magnify`` times (yellow lines from the detected corner)."""
    out = image.copy() if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = out.shape[:2]
    sx = w / view.image_size[0]
    sy = h / view.image_size[1]
    shift = 4
    one = 1 << shift

    def fixed(u, v):  # full-image pixel -> fixed-point pixel of ``out`` (OpenCV pixel centres)
        return (int(round(((u + 0.5) * sx - 0.5) * one)), int(round(((v + 0.5) * sy - 0.5) * one)))

    radius = max(3, int(round(4 * max(w, h) / 1280)))
    for i, (u, v) in enumerate(np.asarray(view.image_points_px, dtype=np.float64)):
        p = fixed(u, v)
        cv2.circle(out, p, radius * one, (0, 200, 0), 1, cv2.LINE_AA, shift)
        if projected_px is not None:
            pu, pv = projected_px[i]
            cv2.line(out, p, fixed(u + (u - pu) * magnify, v + (v - pv) * magnify), (0, 220, 255), 1,
                     cv2.LINE_AA, shift)
            q = fixed(pu, pv)
            cv2.drawMarker(out, (q[0] >> shift, q[1] >> shift), (0, 0, 255), cv2.MARKER_CROSS, radius + 2, 1)
    return out


def _jpeg(image: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise InputError("could not encode a report image")
    return data.tobytes()


def _resize_to_width(image: np.ndarray, width: int) -> np.ndarray:
    h, w = image.shape[:2]
    if w <= width:
        return image
    return cv2.resize(image, (width, int(round(h * width / w))), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------------ data


def report_data(result: CalibrationResult | None, board, image_size, found: list[Finding], views_offered,
                failures=(), written: str | None = None, source: str = "",
                settings: CalibrationSettings = CalibrationSettings(), timings_s: dict | None = None) -> dict:
    """The numbers of the report (what report.json holds)."""
    data = {
        "ar_guide_version": __version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
        "board": {"description": board.describe(), "parameters": board.parameters, "file": board.source},
        "image_size": list(image_size),
        "verdict": verdict(found) if written is not None or result is None else "not written",
        "warnings": [{"code": f.code, "serious": f.serious, "message": f.message} for f in found],
        "written": written,
        "not_used": [{"source": s, "reason": r} for s, r in failures],
        "timings_s": timings_s or {},
    }
    if result is None:
        return data
    cam = result.camera
    offered = len(views_offered) if not isinstance(views_offered, int) else views_offered
    cov = coverage_summary(result.views, image_size, rotations=[p[:3, :3] for p in result.camera_from_board],
                           settings=settings)
    data.update({
        "model": result.options.describe(),
        "options": {f: getattr(result.options, f) for f in ("fix_aspect", "zero_tangent", "rational", "fix_k3")},
        "rms_px": result.rms_px,
        "views_offered": offered,
        "views_used": len(result.views),
        "views_dropped": len(result.dropped),
        "camera_matrix": cam.camera_matrix,
        "distortion_coefficients": dict(zip(result.options.distortion_names, cam.distortion)),
        "std": result.std,
        "fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy,
        "per_view": [
            {"source": v.source, "rms_px": float(e), "corners": len(v), "markers": v.markers_found,
             "tilt_deg": t, "used": True}
            for v, e, t in zip(result.views, result.per_view_rms_px, cov["tilts_deg"])
        ] + [
            {"source": v.source, "rms_px": float(e), "corners": len(v), "markers": v.markers_found,
             "tilt_deg": tilt_of_view(v, cam.camera_matrix), "used": False, "reason": why}
            for v, e, why in result.dropped
        ],
        "coverage": cov,
        "solve_history": [{"views": n, "rms_px": r} for n, r in result.history],
        "solve_time_s": result.solve_time_s,
    })
    return data


# ------------------------------------------------------------------------------------ page


def write_report(directory: str | os.PathLike, result: CalibrationResult | None, board, image_size,
                 found: list[Finding], views_offered, failures=(), images: dict | None = None,
                 written: str | None = None, source: str = "",
                 settings: CalibrationSettings = CalibrationSettings(), timings_s: dict | None = None) -> Path:
    """Write report.html, report.json and views/*.jpg into ``directory``; returns the HTML path.

    result : the solved calibration, or None if solving failed (the page then shows why)
    found : quality findings (:func:`ar_guide.calibration.quality.findings`)
    views_offered : the detected views given to the solver
    failures : (source, reason) of images or frames not used (no usable view, blurred, not needed)
    images : view source -> image (BGR or grey, any scale) for the annotated views; optional
    written : the calibration file written, or None if it was not written
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "views").mkdir(exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the report folder: {exc.strerror or exc}", path=directory) from None
    data = report_data(result, board, image_size, found, views_offered, failures, written, source, settings,
                       timings_s)
    thumbs = _write_views(directory, result, images or {})
    page = _page(data, result, board, image_size, found, thumbs, settings)
    path = directory / "report.html"
    try:
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot write the report: {exc.strerror or exc}", path=path) from None
    write_json(directory / "report.json", data)
    return path


def _write_views(directory: Path, result, images: dict) -> list[tuple[str, str, bool, float]]:
    """Annotated images of the views; returns (source, data URI of a thumbnail, used, rms)."""
    if result is None or not images:
        return []
    out = []
    entries = [(v, e, True, p) for v, e, p in zip(result.views, result.per_view_rms_px, result.camera_from_board)]
    entries += [(v, e, False, None) for v, e, _ in result.dropped]
    for index, (view, err, used, pose) in enumerate(entries):
        image = images.get(view.source)
        if image is None:
            continue
        projected = None
        if pose is not None:
            pts = view.object_points_mm.astype(np.float64) @ pose[:3, :3].T + pose[:3, 3]
            projected = result.camera.project(pts)
        big = _resize_to_width(image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR),
                               _VIEW_IMAGE_MAX_PX)
        annotated = annotate_view(big, view, projected)
        stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in Path(view.source).stem)[:40] or "view"
        name = f"{index:02d}_{stem}.jpg"
        target = directory / "views" / name
        try:
            target.write_bytes(_jpeg(annotated))
        except OSError as exc:
            raise InputError(f"cannot write the report: {exc.strerror or exc}", path=target) from None
        thumb = _jpeg(_resize_to_width(annotated, _THUMB_WIDTH_PX), 75)
        out.append((view.source, "data:image/jpeg;base64," + base64.b64encode(thumb).decode("ascii"), used,
                    float(err), f"views/{name}"))
    return out


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin:0 0 8px} h2{font-size:16px;margin:24px 0 6px;border-bottom:1px solid #ddd}
.banner{color:#fff;padding:12px 16px;border-radius:6px;font-size:18px;margin:8px 0}
.warn{background:#fff6e0;border-left:5px solid #b8860b;padding:6px 10px;margin:4px 0}
.serious{background:#fdecea;border-left:5px solid #b22222}
table{border-collapse:collapse} td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}
td:first-child,th:first-child{text-align:left}
.charts{display:flex;flex-wrap:wrap;gap:24px} .chart{flex:0 0 auto} .note{color:#666;font-size:12px}
.views{display:flex;flex-wrap:wrap;gap:8px} .views figure{margin:0;width:240px}
.views img{width:240px} .views figcaption{font-size:11px} .dropped{outline:3px solid #c0392b}
"""


def _page(data, result, board, image_size, found, thumbs, settings) -> str:
    state = data["verdict"]
    colour = _VERDICT_COLOURS.get(state, "#555")
    headline = {"good": "GOOD: no problems found",
                "usable": "USABLE WITH CARE: see the warnings",
                "not trustworthy": "NOT TRUSTWORTHY: fix the problems below and calibrate again",
                "not written": "NOT WRITTEN: no calibration file was written"}[state]
    out = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>Camera calibration report</title>",
           f"<style>{_CSS}</style></head><body>",
           "<h1>Camera calibration report</h1>",
           f"<div class='banner' style='background:{colour}'>{_esc(headline)}"]
    if result is not None:
        out.append(f" &mdash; RMS {result.rms_px:.3f} px, {len(result.views)} views"
                   f"{f', {len(result.dropped)} dropped' if result.dropped else ''}")
    out.append("</div>")
    for f in found:
        out.append(f"<div class='warn{' serious' if f.serious else ''}'>{'&#9888; ' if f.serious else ''}"
                   f"{_esc(f.message)}</div>")
    out.append(f"<p class='note'>{_esc(board.describe())}; images {image_size[0]}x{image_size[1]}; "
               f"source {_esc(data['source'])}; written: {_esc(data['written'] or 'no')}; "
               f"ar_guide {__version__}, {data['date']}</p>")
    if result is None:
        out.append(_failures_html(data))
        out.append("</body></html>")
        return "".join(out)
    cam = result.camera
    out.append("<h2>Camera model</h2><table><tr><th>parameter</th><th>value</th><th>std. dev.</th>"
               "<th>relative</th></tr>")
    rows = [("fx", cam.fx), ("fy", cam.fy), ("cx", cam.cx), ("cy", cam.cy)]
    rows += list(zip(result.options.distortion_names, cam.distortion))
    for name, value in rows:
        sd = result.std.get(name)
        rel = f"{sd / abs(value):.2%}" if sd is not None and name in ("fx", "fy") else ""
        sd_text = f"{sd:.4g}" if sd is not None else "fixed"
        out.append(f"<tr><td>{name}</td><td>{value:.6g}</td><td>{sd_text}</td><td>{rel}</td></tr>")
    out.append(f"</table><p class='note'>{_esc(result.options.describe())}; solved in "
               f"{result.solve_time_s:.2f} s ({len(result.history)} solve{'s' if len(result.history) != 1 else ''}"
               f": {', '.join(f'{n} views {r:.3f} px' for n, r in result.history)})</p>")

    names = [v.source for v in result.views] + [v.source for v, _, _ in result.dropped]
    errors = list(result.per_view_rms_px) + [e for _, e, _ in result.dropped]
    mask = [False] * len(result.views) + [True] * len(result.dropped)
    limit = outlier_limit(result.per_view_rms_px, settings) if len(result.views) else None
    out.append("<h2>Reprojection error per view</h2>")
    out.append(svg_view_errors(names, errors, mask, limit))
    if result.dropped:
        out.append("<ul>" + "".join(f"<li>dropped {_esc(v.source)}: {_esc(why)}</li>" for v, _, why in result.dropped)
                   + "</ul>")

    cov = data["coverage"]
    dropped_tilts = [tilt_of_view(v, cam.camera_matrix) for v, _, _ in result.dropped]
    out.append("<div class='charts'>")
    out.append("<div class='chart'><h2>Image coverage</h2>"
               + svg_coverage(cov["counts"], image_size, np.concatenate([v.image_points_px for v in result.views]))
               + f"<p class='note'>{cov['covered_fraction']:.0%} of cells reached"
               + (f"; missing: {_esc(', '.join(cov['regions_missing']))}" if cov["regions_missing"] else "")
               + "</p></div>")
    out.append("<div class='chart'><h2>Residuals across the image</h2>"
               + svg_residuals([v.image_points_px for v in result.views], result.residuals_px, image_size)
               + "</div>")
    out.append("<div class='chart'><h2>Board tilts</h2>" + svg_tilts(cov["tilts_deg"], dropped_tilts, settings.tilt_deg)
               + f"<p class='note'>{cov['tilted_x_views']} views tilted about the horizontal axis, "
               f"{cov['tilted_y_views']} about the vertical axis (beyond {settings.tilt_deg:g} deg)</p></div>")
    out.append("<div class='chart'><h2>Distortion</h2>" + svg_distortion(cam) + "</div>")
    out.append("</div>")
    out.append(_failures_html(data))
    if thumbs:
        out.append("<h2>Views</h2><p class='note'>green circles: detected corners; red crosses: reprojected; "
                   "yellow: residual magnified 10x. Click for the full image.</p><div class='views'>")
        for source, uri, used, err, link in thumbs:
            out.append(f"<figure{'' if used else ' class=dropped'}><a href='{_esc(link)}'><img src='{uri}' "
                       f"alt='{_esc(source)}'></a><figcaption>{_esc(_short(source, 30))}: {err:.3f} px"
                       f"{'' if used else ' (dropped)'}</figcaption></figure>")
        out.append("</div>")
    out.append("</body></html>")
    return "".join(out)


def _failures_html(data) -> str:
    fails = data["not_used"]
    if not fails:
        return ""
    items = "".join(f"<li>{_esc(f['source'])}: {_esc(f['reason'])}</li>" for f in fails[:200])
    more = f"<li>... and {len(fails) - 200} more</li>" if len(fails) > 200 else ""
    return f"<h2>Images or frames not used ({len(fails)})</h2><ul>{items}{more}</ul>"
