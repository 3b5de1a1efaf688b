"""Printable calibration boards at exact physical scale: a page layout, then PNG, SVG and PDF writers.

:func:`layout_board` places a board's printed pattern (:meth:`CalibrationBoard.black_rectangles_mm`)
on a page with its white quiet zone, and below it the margin text (what the board is, its exact
parameters as YAML, how to print it) and a 100 mm ruler, so that a print that was scaled is caught
before it spoils a calibration.  The result is a :class:`ar_guide.io.page.Drawing`, which the writers in
:mod:`ar_guide.io.page` turn into PNG, SVG or PDF at exact scale:
"""

from __future__ import annotations

import dataclasses
import datetime
import math

import numpy as np

from ar_guide.constants import PrintLayout
from ar_guide.errors import InputError
from ar_guide.io.page import (ASCENT_EM, CAP_HEIGHT_EM, DESCENDER_EM, MM_PER_INCH, Drawing, Text, ascii_text,
                              merge_runs, text_width_mm)

# ================================================================================ the layout


@dataclasses.dataclass(frozen=True, eq=False)
class BoardPage:
    """A board laid out on a page.

    drawing : what the writers draw; layers "board" (the pattern) and "ruler"
    paper : "A4", "US letter" or "fit"; orientation : "portrait" or "landscape"
    board_origin_mm : (2,) page position (mm) of the board frame's origin: a point (x, y) of the
        board frame (CalibrationBoard.corners_mm) is printed at board_origin_mm + (x, y)
    pattern_mm : (x0, y0, x1, y1) page mm of the printed pattern (quiet zone excluded)
    quiet_zone_mm : the white margin kept around the pattern, mm (at least this much)
    ruler_mm : (x0, y0, x1, y1) page mm of the ruler's base line, exactly 100 mm long
    dpi : the PNG resolution the layout was snapped to, else None (vector formats)
    """

    drawing: Drawing
    paper: str
    orientation: str
    board_origin_mm: np.ndarray
    pattern_mm: tuple[float, float, float, float]
    quiet_zone_mm: float
    ruler_mm: tuple[float, float, float, float]
    dpi: int | None = None

    def describe(self) -> str:
        w, h = self.drawing.size_mm
        name = "page" if self.paper == "fit" else self.paper
        return f"{name} {self.orientation} ({w:g} x {h:g} mm)"


def _paper_candidates(paper: str, settings: PrintLayout):
    sizes = {"a4": ("A4", settings.a4_mm), "letter": ("US letter", settings.letter_mm)}
    names = ("a4", "letter") if paper == "auto" else (paper,)
    out = []
    for key in names:
        label, (w, h) = sizes[key]
        out += [(label, "portrait", (w, h)), (label, "landscape", (h, w))]
    return out


def layout_board(board, paper: str = "auto", dpi: int | None = None, board_file: str | None = None,
                 date: str | None = None, settings: PrintLayout = PrintLayout()) -> BoardPage:
    """Lay out ``board`` (a CalibrationBoard) on a page.

    paper : "auto" (A4, then US letter, each portrait then landscape: the first the board and its
        margin fit), "a4", "letter", or "fit" (a page just large enough, whole mm)
    dpi : the PNG resolution, or None for SVG and PDF; with a DPI the pattern and the ruler
        start on whole pixels and the margin says how far the DPI forces edges off whole pixels
    board_file : the board file's name, printed in the margin; date : ISO date (default today)

    InputError (naming the board file) if the board does not fit the chosen paper.
    """
    if paper not in ("auto", "a4", "letter", "fit"):
        raise ValueError(f"paper must be auto, a4, letter or fit, got {paper!r}")
    date = date or datetime.date.today().isoformat()
    x0, y0, x1, y1 = board.extent_mm
    pattern_w, pattern_h = x1 - x0, y1 - y0
    unit = board.square_mm if board.kind in ("charuco", "chessboard") else float(board.parameters["marker_mm"])
    quiet = settings.quiet_zone_squares * unit
    margin = settings.printer_margin_mm
    side = max(quiet, margin)  # ink stays off the printer's margin; the quiet zone may lie in it

    lines = _margin_lines(board, board_file, date, dpi)
    footer_h, text_w = _footer_size(lines, settings)
    need_w = max(pattern_w + 2 * side, text_w + 2 * margin)
    need_h = side + pattern_h + quiet + footer_h + margin

    if paper == "fit":
        page_w, page_h = float(math.ceil(need_w - 1e-9)), float(math.ceil(need_h - 1e-9))
        label, orientation = "fit", ("portrait" if page_w <= page_h else "landscape")
    else:
        for label, orientation, (page_w, page_h) in _paper_candidates(paper, settings):
            if need_w <= page_w + 1e-9 and need_h <= page_h + 1e-9:
                break
        else:
            raise InputError(_does_not_fit(paper, pattern_w, pattern_h, quiet, footer_h, need_w, need_h, settings),
                             path=board.source)

    # Centre the block (pattern, quiet zone, margin text) on the page.
    pattern_x = (page_w - pattern_w) / 2.0
    pattern_y = side + (page_h - need_h) / 2.0
    footer_x = max((page_w - max(text_w, pattern_w)) / 2.0, margin)
    if dpi is not None:
        pattern_x, pattern_y = _snap(pattern_x, dpi), _snap(pattern_y, dpi)
        footer_x = _snap(footer_x, dpi)
    footer_y = pattern_y + pattern_h + quiet
    origin = np.array([pattern_x - x0, pattern_y - y0])
    origin.setflags(write=False)

    rects = board.black_rectangles_mm().copy()
    rects[:, [0, 2]] += origin[0]
    rects[:, [1, 3]] += origin[1]
    if dpi is not None:
        lines[-1] = (lines[-1][0], _raster_note(board, rects, origin, dpi))
    texts, ruler_rects, ruler_base = _footer(lines, footer_x, footer_y, page_w - margin - footer_x, dpi, settings)

    drawing = Drawing((page_w, page_h), (("board", merge_runs(rects)), ("ruler", ruler_rects)), tuple(texts),
                      title=f"Calibration board: {board.describe()}",
                      description=f"{_yaml_flow(board.parameters)}; print at 100% (actual size), no scaling")
    return BoardPage(drawing, label, orientation, origin, (pattern_x, pattern_y, pattern_x + pattern_w,
                     pattern_y + pattern_h), quiet, ruler_base, dpi)


def _snap(value_mm: float, dpi: int) -> float:
    """``value_mm`` moved to the nearest pixel boundary at ``dpi``."""
    return float(np.rint(value_mm * dpi / MM_PER_INCH) * MM_PER_INCH / dpi)


def _does_not_fit(paper, pattern_w, pattern_h, quiet, footer_h, need_w, need_h, settings) -> str:
    papers = {"a4": f"A4 ({_mm(settings.a4_mm)} mm)", "letter": f"US letter ({_mm(settings.letter_mm)} mm)"}
    where = " or ".join(papers[p] for p in (("a4", "letter") if paper == "auto" else (paper,)))
    w, h = math.ceil(need_w - 1e-9), math.ceil(need_h - 1e-9)
    a3 = ", e.g. on A3 (297 x 420 mm)" if (w <= 297 and h <= 420) or (w <= 420 and h <= 297) else ""
    return (f"the board does not fit {where} in either orientation: its pattern is {pattern_w:g} x {pattern_h:g} mm, "
            f"with a {quiet:g} mm quiet zone and {footer_h:.0f} mm of margin text it needs a {w} x {h} mm page; "
            f"use --paper fit for a page of that size{a3}, or a board with smaller squares")


def _mm(size) -> str:
    return f"{size[0]:g} x {size[1]:g}"


def _margin_lines(board, board_file, date, dpi) -> list:
    """[(size key, text)]: the margin text, the last line a placeholder for the format note."""
    from ar_guide import __version__

    p = board.parameters
    unit, size = ("square", board.square_mm) if board.kind != "aruco_grid" else ("marker", float(p["marker_mm"]))
    lines = [("title", board.describe()), ("text", f"Board: {_yaml_flow(p)}")]
    if board.kind == "charuco" and p["squares"][1] % 2 == 0:
        if p.get("legacy_pattern"):
            layout = "legacy_pattern: true (OpenCV's layout before 4.6: a marker in the top-left square)"
        else:
            layout = "legacy_pattern: false (OpenCV 4.6+ layout: top-left square black)"
        lines.append(("text", f"{layout}; a detector set otherwise finds no ChArUco corners"))
    check = f"one {unit} must measure {size:g} mm"
    if board.kind != "aruco_grid" and size < 10.0:
        # A few mm cannot be read off a ruler to better than a few percent: measure a row.
        count = min(int(math.ceil(30.0 / size)), int(round(board.size_mm[0] / size)))
        check = f"{count} squares in a row must measure {count * size:g} mm"
    lines.append(("text", f"Print at 100% (actual size), no scaling; check: the ruler below must measure 100 mm, "
                          f"and {check}"))
    lines.append(("file", f"Board file: {board_file or '(none)'}    Date: {date}    ar-guide {__version__}"))
    # The format note: its width is left out of the page size (the same for every format); a
    # PNG's note is filled in once the pattern is placed (see _raster_note).  The file line is
    # left out too (a long name is shrunk or cut rather than widening the page).
    lines.append(("note", "Vector drawing: every edge exact at any printer resolution" if dpi is None else "PNG"))
    return lines


def _raster_note(board, rects_page_mm, origin, dpi) -> str:
    """How far the DPI forces the pattern's edges off whole pixels (the PNG margin line)."""
    k = dpi / MM_PER_INCH
    edges = np.concatenate([np.unique(rects_page_mm[:, [0, 2]]), np.unique(rects_page_mm[:, [1, 3]])]) * k
    worst = float(np.max(np.abs(np.rint(edges) - edges))) if edges.size else 0.0
    if board.kind == "aruco_grid":
        unit_mm, name = float(board.parameters["marker_mm"]), "marker"
        unit_worst = worst
    else:
        unit_mm, name = board.square_mm, "square"
        x0, y0, x1, y1 = board.extent_mm
        xs = origin[0] + x0 + np.arange(int(round((x1 - x0) / unit_mm)) + 1) * unit_mm
        ys = origin[1] + y0 + np.arange(int(round((y1 - y0) / unit_mm)) + 1) * unit_mm
        unit_edges = np.concatenate([xs, ys]) * k
        unit_worst = float(np.max(np.abs(np.rint(unit_edges) - unit_edges)))
    px = unit_mm * k
    size = f"{px:.0f}" if abs(px - round(px)) < 1e-6 else f"{px:.2f}"
    head = f"PNG, {dpi} DPI: {name} {unit_mm:g} mm = {size} px"
    if worst < 1e-6:
        return head + ", every edge on a whole pixel"
    if unit_worst < 1e-6:
        return head + f", on whole pixels; marker edges rounded by up to {worst:.2f} px ({worst / k:.3f} mm)"
    return head + f"; edges rounded to whole pixels by up to {worst:.2f} px ({worst / k:.3f} mm)"


def _yaml_flow(parameters: dict) -> str:
    """The board parameters as one line of YAML (flow mapping), 'type' first."""
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return str(int(v)) if v.is_integer() else repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return str(v)

    keys = ["type"] + [k for k in parameters if k != "type"]
    return "{" + ", ".join(f"{k}: {value(parameters[k])}" for k in keys if k in parameters) + "}"


def _line_size(key: str, settings: PrintLayout) -> float:
    return settings.title_size_mm if key == "title" else settings.text_size_mm


def _footer_size(lines, settings: PrintLayout) -> tuple[float, float]:
    """(height, natural width) of the margin text and ruler block, mm."""
    _, bottom = _text_baselines(lines, 0.0, settings)
    label_w = settings.ruler_gap_mm + text_width_mm("100 mm", settings.text_size_mm)
    width = max([text_width_mm(t, _line_size(k, settings)) for k, t in lines if k not in ("note", "file")]
                + [settings.ruler_length_mm + label_w])
    return _ruler_top(bottom, settings)[1] + settings.ruler_base_width_mm, width


def _text_baselines(lines, top, settings: PrintLayout):
    baselines, y = [], top
    for i, (key, _) in enumerate(lines):
        size = _line_size(key, settings)
        y += ASCENT_EM * size if i == 0 else settings.line_pitch * size
        baselines.append(y)
    return baselines, y + DESCENDER_EM * _line_size(lines[-1][0], settings)


def _ruler_top(text_bottom, settings: PrintLayout):
    """(baseline of the ruler's numbers, top of its base line) below text ending at text_bottom."""
    numbers = text_bottom + settings.ruler_gap_mm + CAP_HEIGHT_EM * settings.ruler_number_size_mm
    return numbers, numbers + 0.8 + max(settings.ruler_ticks_mm)


def _fitted(text: str, size: float, width: float, settings: PrintLayout) -> tuple[str, float]:
    """Shrink ``text`` to ``width`` (down to min_text_size_mm), then cut it with '...'."""
    natural = text_width_mm(text, size)
    if natural <= width:
        return text, size
    size = max(size * width / natural, settings.min_text_size_mm)
    while text and text_width_mm(text + "...", size) > width:
        text = text[:-1]
    return text + "...", size


def _footer(lines, x, top, width, dpi, settings: PrintLayout):
    """Texts, ruler rectangles (R, 4) and the ruler's base line (x0, y0, x1, y1), page mm."""
    texts = []
    baselines, bottom = _text_baselines(lines, top, settings)
    for (key, line), baseline in zip(lines, baselines):
        text, size = _fitted(ascii_text(line), _line_size(key, settings), width, settings)
        texts.append(Text(x, baseline, size, text))
    numbers_y, base_y = _ruler_top(bottom, settings)
    if dpi is not None:
        base_y = _snap(base_y, dpi)
    rects, numbers = ruler(x, base_y, settings)
    texts += [Text(cx, numbers_y, settings.ruler_number_size_mm, label, "middle") for cx, label in numbers]
    end = x + settings.ruler_length_mm
    label_y = base_y + settings.ruler_base_width_mm - DESCENDER_EM * settings.text_size_mm
    texts.append(Text(end + settings.ruler_gap_mm, label_y, settings.text_size_mm, f"{settings.ruler_length_mm:g} mm"))
    return texts, rects, (x, base_y, end, base_y + settings.ruler_base_width_mm)


def ruler(x_mm: float, y_mm: float, settings: PrintLayout = PrintLayout()):
    """A ruler whose base line's top edge starts at (x_mm, y_mm), page mm.

    Returns (rects (R, 4) page mm, [(x of a number's centre, its text)]).  The base line and the
    outer edges of the end ticks span exactly ``ruler_length_mm``; ticks every mm (centred on it,
    the end ticks inside the length), longer every 5 and 10 mm, numbered every 10 mm.
    """
    length, width = settings.ruler_length_mm, settings.ruler_tick_width_mm
    short, mid, long = settings.ruler_ticks_mm
    rects = [(x_mm, y_mm, x_mm + length, y_mm + settings.ruler_base_width_mm)]
    numbers = []
    for k in range(int(round(length)) + 1):
        tick = long if k % 10 == 0 else mid if k % 5 == 0 else short
        left = min(max(x_mm + k - width / 2.0, x_mm), x_mm + length - width)
        rects.append((left, y_mm - tick, left + width, y_mm))
        if k % 10 == 0:
            numbers.append((x_mm + k, str(k)))
    return np.array(rects, dtype=np.float64), numbers


