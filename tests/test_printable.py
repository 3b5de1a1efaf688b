"""Printable boards (ar_guide.calibration.printable, ``ar-guide calibrate board``).

Every shipped board is written as PNG, SVG and PDF and read back independently of the writers:
the PNG's chunks and DPI are parsed here, and the board is detected in it with the project's
detector (ChArUco) or OpenCV's findChessboardCorners, at the spacing square_mm * dpi / 25.4; the
SVG is parsed with xml.etree; the PDF's cross-reference offsets, page size and rectangles are
checked, and the page is rasterised and detected when pypdfium2 is installed.
"""

from __future__ import annotations

import re
import struct
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from ar_guide.calibration import printable
from ar_guide.io import page as page_files
from ar_guide.calibration.boards import board_from_mapping, load_board
from ar_guide.cli import main
from ar_guide.constants import PrintLayout
from ar_guide.errors import InputError
from ar_guide.tracking import aruco

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ROOT / "calibration"
SETTINGS = PrintLayout()
DATE = "2024-05-17"

# Shipped board -> (paper to ask for, expected page, expected orientation, DPI for the detection test).
SHIPPED = {
    "charuco_a4": ("auto", "A4", "portrait", 150),
    "charuco_letter": ("letter", "US letter", "portrait", 150),
    "chessboard_a4": ("auto", "A4", "landscape", 150),
    "chessboard_letter": ("letter", "US letter", "landscape", 150),
    "opencv_tutorial_charuco": ("fit", "fit", "portrait", 100),
    "sksurgery_chessboard_6mm": ("auto", "A4", "portrait", 200),
    "sksurgery_chessboard_3mm": ("auto", "A4", "portrait", 300),
}


def board_path(name: str) -> Path:
    return BOARDS / f"{name}.yaml"


def layout(name: str, dpi=None, paper=None):
    board = load_board(board_path(name))
    return board, printable.layout_board(board, paper or SHIPPED[name][0], dpi=dpi, board_file=f"{name}.yaml",
                                         date=DATE)


def area(rects) -> float:
    rects = np.asarray(rects).reshape(-1, 4)
    return float(np.sum((rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])))


def sorted_rects(rects) -> np.ndarray:
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return rects[np.lexsort(rects.T[::-1])]


def board_rects_on_page(board, page) -> np.ndarray:
    """The board's own rectangles moved to the page: what every format must draw."""
    return page_files.merge_runs(board.black_rectangles_mm() + np.tile(page.board_origin_mm, 2))


# ----------------------------------------------------------------------------- independent readers


def png_chunks(data: bytes) -> list:
    """[(type, payload)] of a PNG, every chunk's CRC checked."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, payload = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + payload) & 0xFFFFFFFF, kind
        chunks.append((kind, payload))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    return chunks


def png_dpi(path) -> float:
    chunks = png_chunks(Path(path).read_bytes())
    kinds = [k for k, _ in chunks]
    assert kinds.index(b"pHYs") < kinds.index(b"IDAT")  # the PNG spec: pHYs before the image data
    x, y, unit = struct.unpack(">IIB", dict(chunks)[b"pHYs"])
    assert x == y and unit == 1  # square pixels, pixels per metre
    return x * 0.0254


def parse_pdf(data: bytes) -> dict:
    """Objects of a PDF found through its cross-reference table: {number: bytes from 'N 0 obj'}."""
    assert data.startswith(b"%PDF-1.")
    match = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    assert match, "no startxref"
    xref = int(match.group(1))
    assert data[xref:xref + 5] == b"xref\n"
    header_end = data.index(b"\n", xref + 5)
    first, count = (int(v) for v in data[xref + 5:header_end].split())
    assert first == 0
    table = data[header_end + 1:header_end + 1 + 20 * count]
    entries = [table[i * 20:(i + 1) * 20] for i in range(count)]
    assert entries[0] == b"0000000000 65535 f \n"
    objects = {}
    for number, entry in enumerate(entries[1:], start=1):
        assert len(entry) == 20 and entry.endswith(b" n \n"), entry
        offset = int(entry[:10])
        assert data[offset:].startswith(f"{number} 0 obj".encode()), (number, data[offset:offset + 20])
        objects[number] = data[offset:data.index(b"endobj", offset)]
    trailer = data[header_end + 1 + 20 * count:xref + len(data)]
    assert re.search(rb"/Size %d\b" % count, trailer) and b"/Root 1 0 R" in trailer
    return objects


def pdf_page(data: bytes):
    """(MediaBox [x0 y0 x1 y1] in points, content stream bytes)."""
    objects = parse_pdf(data)
    page = next(o for o in objects.values() if b"/Type /Page " in o or b"/Type /Page\n" in o)
    box = [float(v) for v in re.search(rb"/MediaBox \[([^\]]*)\]", page).group(1).split()]
    contents = int(re.search(rb"/Contents (\d+) 0 R", page).group(1))
    stream_obj = objects[contents]
    length = int(re.search(rb"/Length (\d+)", stream_obj).group(1))
    start = stream_obj.index(b"stream\n") + len(b"stream\n")
    stream = stream_obj[start:start + length]
    assert stream_obj[start + length:].startswith(b"endstream")
    return box, stream


def pdf_rects_mm(stream: bytes, tag: str, page_h_pt: float) -> np.ndarray:
    """The ``re`` rectangles of the marked-content group ``tag``, back in page mm (y down)."""
    block = re.search(rb"/" + tag.encode() + rb" BMC\n(.*?)\nf\nEMC", stream, re.S).group(1)
    values = np.array([[float(v) for v in line.split()[:4]] for line in block.split(b"\n")])
    assert all(line.endswith(b" re") for line in block.split(b"\n"))
    x, y, w, h = values.T
    mm = 25.4 / 72.0
    return np.column_stack([x, page_h_pt - y - h, x + w, page_h_pt - y]) * mm


def detect(board, gray):
    """(corner ids, (K, 2) px) found in ``gray``; ids index board.corners_mm."""
    if board.kind == "charuco":
        detections = aruco.MarkerDetector(board.body.dictionary).detect(gray)
        return aruco.CharucoInterpolator(board.body.board)(gray, detections)
    found, corners = cv2.findChessboardCorners(gray, board.inner_corners,
                                               flags=cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    assert found, "chessboard not found"
    corners = cv2.cornerSubPix(gray, corners, (5, 5), (-1, -1),
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)).reshape(-1, 2)
    return np.arange(len(corners)), corners


def check_detected_board(board, page, gray, dpi, position_tol_px):
    """The board is found; its mean corner spacing is square_mm * dpi / 25.4 within 0.5 %; each
    corner is where the layout put it (pixel centres: OpenCV's convention, hence -0.5), to
    ``position_tol_px`` along x and along y."""
    ids, corners = detect(board, gray)
    n = len(board.corners_mm)
    assert len(ids) == n, f"{len(ids)} of {n} corners found"
    k = dpi / 25.4
    expected = (board.corners_mm[ids, :2] + page.board_origin_mm) * k - 0.5
    if board.kind == "chessboard":  # findChessboardCorners may number from the other end
        if np.linalg.norm(corners[0] - expected[0]) > np.linalg.norm(corners[0] - expected[-1]):
            corners = corners[::-1]
    mm = board.corners_mm[ids, :2]
    i, j = np.nonzero(np.isclose(np.linalg.norm(mm[:, None] - mm[None], axis=2), board.square_mm)
                      & (np.arange(len(ids))[:, None] < np.arange(len(ids))[None]))
    spacing = np.linalg.norm(corners[i] - corners[j], axis=1)
    assert len(spacing) >= n
    assert np.mean(spacing) == pytest.approx(board.square_mm * k, rel=0.005)
    error = np.abs(corners - expected)
    assert np.max(error) < position_tol_px, np.max(error)
    return error


# ----------------------------------------------------------------------------- layout


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_board_layout(name):
    paper, expected_paper, orientation, _ = SHIPPED[name]
    board, page = layout(name)
    assert (page.paper, page.orientation) == (expected_paper, orientation)
    w, h = page.drawing.size_mm
    if expected_paper == "A4":
        assert sorted((w, h)) == [210, 297]
    elif expected_paper == "US letter":
        assert sorted((w, h)) == [215.9, 279.4]
    # The board's pattern, exactly, at the reported origin.
    np.testing.assert_allclose(sorted_rects(page.drawing.layer("board")),
                               sorted_rects(board_rects_on_page(board, page)), atol=1e-9)
    assert area(page.drawing.layer("board")) == pytest.approx(area(board.black_rectangles_mm()), rel=1e-12)
    x0, y0, x1, y1 = page.pattern_mm
    assert (x1 - x0, y1 - y0) == pytest.approx(board.size_mm)
    # The quiet zone (one square) is white paper inside the page, and ink keeps off the printer's margin.
    q = page.quiet_zone_mm
    assert q == board.square_mm
    assert x0 - q >= -1e-9 and y0 - q >= -1e-9 and x1 + q <= w + 1e-9 and y1 + q <= h + 1e-9
    margin = SETTINGS.printer_margin_mm
    for rx0, ry0, rx1, ry1 in page.drawing.layer("ruler"):
        assert rx0 >= margin and rx1 <= w - margin and ry1 <= h - margin
        assert rx1 <= x0 - q or rx0 >= x1 + q or ry1 <= y0 - q or ry0 >= y1 + q, "ruler in the quiet zone"
    for t in page.drawing.texts:
        width = page_files.text_width_mm(t.text, t.size_mm)
        left = t.x_mm - (width / 2 if t.anchor == "middle" else 0)
        top, bottom = t.y_mm - 0.75 * t.size_mm, t.y_mm + 0.21 * t.size_mm
        assert left >= margin - 1e-9 and left + width <= w - margin + 1e-9 and bottom <= h - margin, t
        assert top >= y1 + q, f"text in the quiet zone: {t}"


def test_auto_paper_and_fit():
    board = load_board(board_path("charuco_letter"))
    assert printable.layout_board(board, "auto", date=DATE).paper == "A4"  # A4 first
    fit = printable.layout_board(board, "fit", date=DATE)
    w, h = fit.drawing.size_mm
    assert w == int(w) and h == int(h) and fit.paper == "fit"
    # fit = the board, its quiet zone on three sides, the margin text and the printer's margin.
    x0, y0, x1, y1 = fit.pattern_mm
    assert w == np.ceil(127 + 2 * 25.4) and x0 == pytest.approx((w - 127) / 2) and y0 >= 25.4
    _, page = layout("opencv_tutorial_charuco")
    assert page.drawing.size_mm == (280.0, 396.0)  # fits A3 (297 x 420 mm)


def test_board_too_large_for_the_paper():
    board = load_board(board_path("opencv_tutorial_charuco"))
    with pytest.raises(InputError, match=(
            r"opencv_tutorial_charuco.yaml: the board does not fit A4 \(210 x 297 mm\) or US letter "
            r"\(215.9 x 279.4 mm\) "
            r"in either orientation: its pattern is 200 x 280 mm, with a 40 mm quiet zone and \d+ mm of margin text it "
            r"needs a 280 x 396 mm page; use --paper fit for a page of that size, e.g. on A3 \(297 x 420 mm\)")):
        printable.layout_board(board, "auto", date=DATE)
    with pytest.raises(InputError, match=r"does not fit US letter \(215.9 x 279.4 mm\) in either orientation"):
        printable.layout_board(board, "letter", date=DATE)
    chess = board_from_mapping({"type": "chessboard", "inner_corners": [9, 6], "square_mm": 25})
    with pytest.raises(InputError, match=r"pattern is 250 x 175 mm, with a 25 mm quiet zone .* "
                                         r"needs a 300 x 2\d\d mm page"):
        printable.layout_board(chess, "a4", date=DATE)


def test_margin_text():
    board, page = layout("charuco_a4")
    lines = [t.text for t in page.drawing.texts]
    assert lines[0] == "ChArUco 5x7 squares, 28/21 mm, DICT_5X5_100"
    assert ("Print at 100% (actual size), no scaling; check: the ruler below must measure 100 mm, and one square "
            "must measure 28 mm") in lines
    assert f"Board file: charuco_a4.yaml    Date: {DATE}    ar-guide 0.1.0" in lines
    assert "Vector drawing: every edge exact at any printer resolution" in lines
    # The parameters, as one line of YAML that loads back to the same board.
    snippet = next(line for line in lines if line.startswith("Board: {"))[len("Board: "):]
    assert board_from_mapping(yaml.safe_load(snippet)).parameters == board.parameters
    assert yaml.safe_load(snippet) == yaml.safe_load(board_path("charuco_a4").read_text())
    # Odd rows: the legacy switch does not matter, so it is not discussed.
    assert not any(line.startswith("legacy_pattern") for line in lines)
    numbers = [t.text for t in page.drawing.texts if t.anchor == "middle"]
    assert numbers == [str(v) for v in range(0, 101, 10)]


@pytest.mark.parametrize("legacy, expected", [
    (False, "legacy_pattern: false (OpenCV 4.6+ layout: top-left square black); a detector set otherwise finds "
            "no ChArUco corners"),
    (True, "legacy_pattern: true (OpenCV's layout before 4.6: a marker in the top-left square); a detector set "
           "otherwise finds no ChArUco corners"),
])
def test_margin_states_the_legacy_layout_for_even_rows(legacy, expected):
    board = board_from_mapping({"type": "charuco", "squares": [6, 8], "square_mm": 20, "marker_mm": 15,
                                "dictionary": "DICT_5X5_100", "legacy_pattern": legacy})
    page = printable.layout_board(board, date=DATE)
    assert expected in [t.text for t in page.drawing.texts]


@pytest.mark.parametrize("name, check", [
    ("sksurgery_chessboard_3mm", "10 squares in a row must measure 30 mm"),
    ("sksurgery_chessboard_6mm", "5 squares in a row must measure 30 mm"),
    ("chessboard_letter", "one square must measure 19.05 mm"),
])
def test_scale_check_of_small_squares_measures_a_row(name, check):
    _, page = layout(name)
    assert (f"Print at 100% (actual size), no scaling; check: the ruler below must measure 100 mm, and {check}"
            in [t.text for t in page.drawing.texts])


def test_grid_board_layout_and_marker_check():
    board = board_from_mapping({"type": "aruco_grid", "markers": [4, 5], "marker_mm": 30, "separation_mm": 6,
                                "dictionary": "DICT_4X4_50"})
    page = printable.layout_board(board, date=DATE, dpi=300)
    lines = [t.text for t in page.drawing.texts]
    assert page.quiet_zone_mm == 30  # one marker
    assert any(line.endswith("and one marker must measure 30 mm") for line in lines)
    assert any(line.startswith("PNG, 300 DPI: marker 30 mm = 354.33 px; edges rounded") for line in lines)


def test_long_board_file_name_is_shrunk_then_cut():
    board = load_board(board_path("charuco_a4"))
    page = printable.layout_board(board, "a4", board_file="x" * 400 + ".yaml", date=DATE)
    line = next(t for t in page.drawing.texts if t.text.startswith("Board file: "))
    assert line.text.endswith("...") and line.size_mm == SETTINGS.min_text_size_mm
    assert line.x_mm + page_files.text_width_mm(line.text, line.size_mm) <= 210 - SETTINGS.printer_margin_mm + 1e-9


@pytest.mark.parametrize("name, dpi, note", [
    ("chessboard_letter", 300, "PNG, 300 DPI: square 19.05 mm = 225 px, every edge on a whole pixel"),
    ("charuco_letter", 300, "PNG, 300 DPI: square 25.4 mm = 300 px, on whole pixels; marker edges rounded by up to "),
    ("charuco_a4", 300, "PNG, 300 DPI: square 28 mm = 330.71 px; edges rounded to whole pixels by up to 0.5"),
    # 254 DPI = 10 px/mm: squares 280 px, markers 3.5 mm (35 px) inside them, cells 21 / 7 = 3 mm (30 px).
    ("charuco_a4", 254, "PNG, 254 DPI: square 28 mm = 280 px, every edge on a whole pixel"),
])
def test_png_note_says_how_far_edges_are_rounded(name, dpi, note):
    _, page = layout(name, dpi=dpi)
    assert any(t.text.startswith(note) for t in page.drawing.texts), [t.text for t in page.drawing.texts]
    # Checked independently: where the note says "whole pixel", every edge is.
    k = dpi / 25.4
    edges = page.drawing.layer("board") * k
    offsets = np.abs(edges - np.rint(edges))
    if "every edge on a whole pixel" in note:
        assert np.max(offsets) < 1e-6
    else:
        assert 0.3 < np.max(offsets) <= 0.5


def test_ruler_geometry():
    rects, numbers = printable.ruler(10.0, 50.0)
    assert rects[:, 0].min() == 10.0 and rects[:, 2].max() == 110.0  # exactly 100 mm
    assert len(rects) == 1 + 101  # base line and a tick per mm
    ticks = rects[1:]
    heights = ticks[:, 3] - ticks[:, 1]
    assert list(heights[[0, 1, 5, 10, 55]]) == [4.5, 2.0, 3.0, 4.5, 3.0]
    centres = (ticks[1:-1, 0] + ticks[1:-1, 2]) / 2
    np.testing.assert_allclose(centres, 10.0 + np.arange(1, 100), atol=1e-12)
    assert [label for _, label in numbers] == [str(v) for v in range(0, 101, 10)]


def test_merge_runs():
    rects = np.array([[0, 0, 1, 1], [0, 1, 1, 2], [0, 3, 1, 4], [1, 0, 2, 1], [0, 2, 2, 3]], float)
    merged = page_files.merge_runs(rects)
    assert sorted_rects(merged).tolist() == [[0, 0, 1, 2], [0, 2, 2, 3], [0, 3, 1, 4], [1, 0, 2, 1]]
    assert area(merged) == area(rects)


# ----------------------------------------------------------------------------- PNG


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_png_of_shipped_board_is_detected_at_its_dpi(tmp_path, name):
    dpi = SHIPPED[name][3]
    board, page = layout(name, dpi=dpi)
    path = page_files.write(page.drawing, tmp_path / f"{name}.png", dpi=dpi)
    assert round(png_dpi(path), 6) == pytest.approx(dpi, abs=0.013)  # pixels per metre is an integer
    gray = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert gray.ndim == 2 and gray.dtype == np.uint8
    w_mm, h_mm = page.drawing.size_mm
    assert gray.shape == (round(h_mm * dpi / 25.4), round(w_mm * dpi / 25.4))
    # Edges are rounded by at most half a pixel; detection adds a few hundredths.
    check_detected_board(board, page, gray, dpi, position_tol_px=0.6)
    # The ruler's base line: 100 mm, to the pixel.
    assert abs(ruler_length_px(gray, page, dpi) - 100 * dpi / 25.4) <= 0.5
    # The quiet zone around the pattern is white: no text or ruler reaches into it.
    k = dpi / 25.4
    x0, y0, x1, y1 = page.pattern_mm
    q = page.quiet_zone_mm
    outer = [max(int(np.floor(v * k)), 0) for v in (x0 - q, y0 - q)] + [int(np.ceil(v * k)) for v in (x1 + q, y1 + q)]
    zone = gray[outer[1]:outer[3], outer[0]:outer[2]].copy()
    inner = [int(round(v * k)) for v in (x0, y0, x1, y1)]
    zone[inner[1] - outer[1]:inner[3] - outer[1], inner[0] - outer[0]:inner[2] - outer[0]] = 255
    assert zone.min() == 255


def ruler_length_px(gray, page, dpi) -> int:
    """Length (px) of the dark run on the ruler's base line (its label starts 3 mm after it)."""
    k = dpi / 25.4
    x0, y0, x1, _ = page.ruler_mm
    start = int(round(x0 * k))
    row = gray[int(round(y0 * k)), start - 5:int((x1 + 2) * k)] < 128
    dark = np.nonzero(row)[0]
    assert dark[0] == 5 and dark[-1] - dark[0] + 1 == len(dark)  # one run, from the ruler's start
    return len(dark)


def test_png_with_whole_pixel_squares_has_exact_corners(tmp_path):
    """3/4 inch squares at 300 DPI are 225 px: corners land exactly, the detector finds them to
    a few hundredths of a pixel."""
    board, page = layout("chessboard_letter", dpi=300)
    path = page_files.write(page.drawing, tmp_path / "b.png", dpi=300)
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    error = check_detected_board(board, page, gray, 300, position_tol_px=0.05)
    assert np.median(error) < 0.02


def test_png_writer_rasterises_exactly():
    """A generic drawing at 254 DPI (10 px/mm): edges on whole pixels, thin rectangles kept."""
    drawing = page_files.Drawing((10.0, 8.0), (("a", np.array([[1.0, 2.0, 3.0, 5.0], [5.0, 5.0, 5.04, 7.0]])),), ())
    pixels = page_files.raster_rects(drawing.layer("a"), 254, (100, 80))
    assert pixels.tolist() == [[10, 20, 30, 50], [50, 50, 51, 70]]
    # Both edges round to one boundary (50.6 and 50.9 px -> 51): the pixel holding the centre
    # line (50.75 px) is drawn, not the one after the boundary.
    assert page_files.raster_rects(np.array([[5.06, 1.0, 5.09, 2.0]]), 254, (100, 100)).tolist() == [[50, 10, 51, 20]]
    # 2.54 px/mm: edges round to the nearest pixel boundary.
    assert page_files.raster_rects(np.array([[1.0, 1.0, 2.0, 2.0]]), 64.516, (100, 100)).tolist() == [[3, 3, 5, 5]]


def test_png_bytes(tmp_path):
    drawing = page_files.Drawing((10.0, 8.0), (("a", np.array([[1.0, 2.0, 3.0, 5.0]])),),
                                (page_files.Text(1.0, 7.5, 2.0, "Hi"),), title="T", description="D")
    path = page_files.write_png(drawing, tmp_path / "a.png", 254)
    chunks = png_chunks(path.read_bytes())
    ihdr = struct.unpack(">IIBBBBB", chunks[0][1])
    assert ihdr == (100, 80, 8, 0, 0, 0, 0)
    assert png_dpi(path) == pytest.approx(254.0, abs=1e-3)
    texts = dict(payload.split(b"\0", 1) for kind, payload in chunks if kind == b"tEXt")
    assert texts[b"Title"] == b"T" and texts[b"Description"] == b"D"
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert np.all(image[20:50, 10:30] == 0)
    assert np.count_nonzero(image[:60] == 0) == 600  # nothing else above the text
    assert np.count_nonzero(image[60:] < 128) > 10  # the text


@pytest.mark.parametrize("dpi", [72, 2400])
def test_png_dpi_limits(tmp_path, dpi):
    board = load_board(board_path("sksurgery_chessboard_3mm"))
    page = printable.layout_board(board, "fit", dpi=dpi, date=DATE)
    path = page_files.write(page.drawing, tmp_path / "b.png", dpi=dpi)
    assert png_dpi(path) == pytest.approx(dpi, abs=0.013)
    assert page_files.read_png_dpi(path) == pytest.approx(dpi, abs=0.013)
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    # Ruler: base line 100 mm long; each of the 101 ticks is visible (1 px at least at 72 DPI).
    k = dpi / 25.4
    x0, y0, x1, _ = page.ruler_mm
    assert abs(ruler_length_px(gray, page, dpi) - 100 * k) <= 0.5
    # (At 72 DPI the 100 mm base line is 283 px, 283.46 rounded down; the last tick, 0.2 mm wide
    # at 99.8-100 mm, is drawn in the pixel that holds its centre, the 284th.)
    tick_row = gray[int(round(y0 * k)) - 1, int(round(x0 * k)):int(round(x1 * k)) + 1]
    runs = np.count_nonzero(np.diff((tick_row < 128).astype(int)) == 1) + int(tick_row[0] < 128)
    assert runs == 101


# ----------------------------------------------------------------------------- SVG


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_svg_of_shipped_board(tmp_path, name):
    board, page = layout(name)
    path = page_files.write(page.drawing, tmp_path / f"{name}.svg")
    root = ET.parse(path).getroot()
    ns = {"svg": "http://www.w3.org/2000/svg"}
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    w, h = page.drawing.size_mm
    assert root.get("width") == f"{w:g}mm" and root.get("height") == f"{h:g}mm"
    assert [float(v) for v in root.get("viewBox").split()] == [0, 0, w, h]

    def group_rects(group_id):
        group = root.find(f"svg:g[@id='{group_id}']", ns)
        assert group.get("fill") == "#000000"
        return np.array([[float(r.get(a)) for a in ("x", "y", "width", "height")]
                         for r in group.findall("svg:rect", ns)])

    xywh = group_rects("board")
    rects = np.column_stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]])
    assert area(rects) == pytest.approx(area(board.black_rectangles_mm()), rel=1e-6)
    np.testing.assert_allclose(sorted_rects(rects), sorted_rects(board_rects_on_page(board, page)), atol=1e-5)
    ruler = group_rects("ruler")
    assert (ruler[:, 0] + ruler[:, 2]).max() - ruler[:, 0].min() == pytest.approx(100.0, abs=1e-5)
    texts = [t.text for t in root.findall("svg:g[@id='text']/svg:text", ns)]
    assert board.describe() in texts and any(t.startswith("Print at 100% (actual size)") for t in texts)


# ----------------------------------------------------------------------------- PDF


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_pdf_of_shipped_board(tmp_path, name):
    board, page = layout(name)
    path = page_files.write(page.drawing, tmp_path / f"{name}.pdf")
    data = path.read_bytes()
    box, stream = pdf_page(data)
    w, h = page.drawing.size_mm
    assert box[:2] == [0, 0]
    assert box[2] == pytest.approx(w * 72 / 25.4, abs=1e-4) and box[3] == pytest.approx(h * 72 / 25.4, abs=1e-4)
    rects = pdf_rects_mm(stream, "board", box[3])
    np.testing.assert_allclose(sorted_rects(rects), sorted_rects(board_rects_on_page(board, page)), atol=1e-4)
    # Coordinates are written to 1e-4 pt (0.035 um).
    assert area(rects) == pytest.approx(area(board.black_rectangles_mm()), rel=1e-5)
    ruler = pdf_rects_mm(stream, "ruler", box[3])
    assert ruler[:, 2].max() - ruler[:, 0].min() == pytest.approx(100.0, abs=1e-4)
    assert b"/BaseFont /Helvetica" in data and b"/PrintScaling /None" in data
    assert f"({board.describe()}) Tj".encode() in stream


def test_pdf_escapes_text(tmp_path):
    drawing = page_files.Drawing((50.0, 20.0), (), (page_files.Text(5, 10, 3, r"a (b) \c"),), title="x (y)")
    data = page_files.write_pdf(drawing, tmp_path / "t.pdf").read_bytes()
    _, stream = pdf_page(data)
    assert rb"(a \(b\) \\c) Tj" in stream and rb"/Title (x \(y\))" in data


@pytest.mark.parametrize("name", ["charuco_a4", "chessboard_a4", "sksurgery_chessboard_6mm"])
def test_pdf_rasterised_is_detected(tmp_path, name):
    """A real PDF renderer (PDFium) draws the page; the board is found at the right scale."""
    pdfium = pytest.importorskip("pypdfium2", reason="pypdfium2 not installed: the PDF is not rasterised "
                                                     "(its structure and rectangles are checked above)")
    board, page = layout(name)
    path = page_files.write(page.drawing, tmp_path / f"{name}.pdf")
    dpi = 200
    document = pdfium.PdfDocument(str(path))
    rgb = document[0].render(scale=dpi / 72.0).to_numpy()
    document.close()
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    w, h = page.drawing.size_mm
    assert abs(gray.shape[1] - w * dpi / 25.4) <= 1 and abs(gray.shape[0] - h * dpi / 25.4) <= 1
    # Anti-aliased, unsnapped edges: corners within a few tenths of a pixel.
    check_detected_board(board, page, gray, dpi, position_tol_px=0.6)


# ----------------------------------------------------------------------------- bad input


def test_output_format_errors():
    assert page_files.output_format("a/B.PDF") == "pdf"
    with pytest.raises(InputError, match=r"^board.jpg: unsupported output type \('.jpg'\); expected a file name "
                                         r"ending in .png, .svg or .pdf$"):
        page_files.output_format("board.jpg")
    with pytest.raises(InputError, match=r"unsupported output type \(no extension\)"):
        page_files.output_format("board")


@pytest.mark.parametrize("dpi", [71, 2401, 0, -300])
def test_dpi_out_of_range(dpi):
    with pytest.raises(InputError, match=rf"^--dpi: expected 72 to 2400 dots per inch, got {dpi}$"):
        page_files.check_dpi(dpi)


def test_unwritable_output(tmp_path):
    with pytest.raises(InputError, match=r"cannot write the board: this is a folder; give a file name"):
        page_files.check_writable(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(InputError, match=r"b.png: cannot write the board: .*file.txt is not a folder"):
        page_files.check_writable(tmp_path / "file.txt" / "sub" / "b.png")
    drawing = page_files.Drawing((10.0, 10.0), (), ())
    with pytest.raises(InputError, match=r"cannot write the board: .*file.txt is not a folder"):
        page_files.write(drawing, tmp_path / "file.txt" / "b.svg")
    # A missing folder is created; no temporary file is left behind.
    page_files.write(drawing, tmp_path / "new" / "b.pdf")
    assert [p.name for p in (tmp_path / "new").iterdir()] == ["b.pdf"]


def test_png_too_large(tmp_path):
    drawing = page_files.Drawing((2000.0, 2000.0), (), ())
    with pytest.raises(InputError, match=r"big.png: a 188976 x 188976 px PNG is too large \(35.71 gigapixels\); "
                                         r"use a lower --dpi, or SVG or PDF"):
        page_files.write_png(drawing, tmp_path / "big.png", 2400)
    assert not (tmp_path / "big.png").exists()


# ----------------------------------------------------------------------------- command line


def run_cli(capsys, *args):
    code = main(["calibrate", "board", *[str(a) for a in args]])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(err: str, expected: str):
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.fullmatch(r"ar-guide: error: " + expected, lines[0]), lines[0]


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_cli_writes_board(tmp_path, capsys, suffix):
    out = tmp_path / f"board.{suffix}"
    code, stdout, err = run_cli(capsys, "--board", board_path("charuco_letter"), "--paper", "letter", "--output", out,
                                "--dpi", 100)
    assert code == 0 and err == ""
    at = " at 100 DPI" if suffix == "png" else ""
    assert stdout == (f"wrote {out}: ChArUco 5x7 squares, 25.4/19.05 mm, DICT_5X5_100 on US letter portrait "
                      f"(215.9 x 279.4 mm){at}; print at 100% (actual size) and check that the ruler measures 100 mm\n")
    assert out.stat().st_size > 1000
    if suffix == "png":
        assert png_dpi(out) == pytest.approx(100, abs=0.013)


@pytest.mark.parametrize("args, expected", [
    (["--output", "{tmp}/b.jpg"], r"\S*b.jpg: unsupported output type \('.jpg'\); expected a file name ending in "
                                  r".png, .svg or .pdf"),
    (["--output", "{tmp}/b.png", "--dpi", "50"], r"--dpi: expected 72 to 2400 dots per inch, got 50"),
    (["--output", "{tmp}/b.pdf", "--dpi", "3000"], r"--dpi: expected 72 to 2400 dots per inch, got 3000"),
    (["--output", "{tmp}/folder.png"], r"\S+folder.png: cannot write the board: this is a folder; give a file name"),
    (["--output", "{tmp}/plain.txt/b.png"], r"\S*b.png: cannot write the board: \S*plain.txt is not a folder"),
    (["--output", "{tmp}/b.png", "--paper", "a4", "--board", "{tutorial}"],
     r"\S*opencv_tutorial_charuco.yaml: the board does not fit A4 \(210 x 297 mm\) in either orientation: .*"),
    (["--output", "{tmp}/b.png", "--board", "{tmp}/bad.yaml"],
     r"\S*bad.yaml: 'marker_mm': must be smaller than square_mm \(20\), got 25"),
    (["--output", "{tmp}/b.png", "--board", "{tmp}/missing.yaml"], r"\S*missing.yaml: board file not found"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, args, expected):
    (tmp_path / "plain.txt").write_text("x")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "bad.yaml").write_text("type: charuco\nsquares: [5, 7]\nsquare_mm: 20\nmarker_mm: 25\n"
                                       "dictionary: DICT_5X5_100\n")
    args = [a.format(tmp=tmp_path, tutorial=board_path("opencv_tutorial_charuco")) for a in args]
    if "--board" not in args:
        args += ["--board", str(board_path("charuco_a4"))]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 2 and stdout == ""
    assert_one_line_error(err, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "folder.png", "plain.txt"]  # nothing written
    assert list((tmp_path / "folder.png").iterdir()) == []


def test_cli_unknown_paper_is_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(capsys, "--board", board_path("charuco_a4"), "--output", tmp_path / "b.pdf", "--paper", "a3")
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "argument --paper: invalid choice: 'a3'" in err and "Traceback" not in err
