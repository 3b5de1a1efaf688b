"""Writing a page of black rectangles and text at exact physical scale: PNG, SVG and PDF.

A :class:`Drawing` is rectangles and lines of text in page millimetres (origin at the page's
top-left corner, x right, y down).  The writers know nothing of what is drawn:

- PNG: rectangles rasterised with every edge rounded to the nearest pixel boundary; the DPI is
  stored in a pHYs chunk (PNG 1.2 specification, section 4.2.4.2), which OpenCV's imwrite does
  not write.  Written in bands of rows, so 2400 DPI pages need little memory.
- SVG: width and height in mm, a viewBox in mm, one ``<rect>`` per black rectangle.
- PDF: a minimal PDF written here (ISO 32000-1: one page, MediaBox in points, ``re f``
  rectangles, text in the standard Type 1 font Helvetica, a cross-reference table), with
  ``/PrintScaling /None`` so that viewers default to printing at actual size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ar_guide.constants import PrintLayout
from ar_guide.errors import InputError

FORMATS = ("png", "svg", "pdf")
MM_PER_INCH = 25.4
POINTS_PER_MM = 72.0 / MM_PER_INCH

# Advance widths of Helvetica, 1/1000 em, characters 32..126 in WinAnsiEncoding (Adobe's Core 14
# AFM file Helvetica.afm; 39 is quotesingle and 96 grave there, not StandardEncoding's quotes).
_HELVETICA_WIDTHS = (
    278, 278, 355, 556, 556, 889, 667, 191, 333, 333, 389, 584, 278, 333, 278, 278,
    556, 556, 556, 556, 556, 556, 556, 556, 556, 556, 278, 278, 584, 584, 584, 556,
    1015, 667, 667, 722, 722, 667, 611, 778, 722, 278, 500, 667, 556, 833, 722, 778,
    667, 778, 722, 667, 611, 722, 667, 944, 667, 667, 611, 278, 278, 278, 469, 556,
    333, 556, 556, 500, 556, 556, 278, 556, 556, 222, 222, 500, 222, 833, 556, 556,
    556, 556, 333, 500, 278, 556, 500, 722, 500, 500, 500, 334, 260, 334, 584,
)
#: Helvetica's cap height and descender, em (same AFM file); the top of the highest glyphs used
#: (parentheses, brackets: 0.73-0.75 em in Helvetica and Arial) is kept below ``ASCENT_EM``.
CAP_HEIGHT_EM = 0.718
DESCENDER_EM = 0.207
ASCENT_EM = 0.8


# ================================================================================ the drawing


@dataclasses.dataclass(frozen=True)
class Text:
    """One line of black text: baseline at ``y_mm``; ``x_mm`` is its left end (anchor "start")
    or its centre (anchor "middle"); ``size_mm`` is the font size (em), page mm.  ASCII only."""

    x_mm: float
    y_mm: float
    size_mm: float
    text: str
    anchor: str = "start"


@dataclasses.dataclass(frozen=True, eq=False)
class Drawing:
    """A page for the writers: black rectangles and black text on white paper.

    size_mm : (width, height) of the page, mm
    layers : ((name, rects), ...), rects (R, 4) float64 (x0, y0, x1, y1) in page mm, origin at the
        page's top-left corner, y down; names become SVG group ids and PDF marked-content tags
    texts : the lines of text
    title, description : document metadata (PNG tEXt, SVG title/desc, PDF Info)
    """

    size_mm: tuple[float, float]
    layers: tuple
    texts: tuple
    title: str = ""
    description: str = ""

    def layer(self, name: str) -> np.ndarray:
        """(R, 4) rectangles of the layer ``name``."""
        return dict(self.layers)[name]


def text_width_mm(text: str, size_mm: float) -> float:
    """Width (mm) of ``text`` set in Helvetica at ``size_mm``; characters outside ASCII count as '?'."""
    return size_mm * sum(_HELVETICA_WIDTHS[ord(c) - 32] if 32 <= ord(c) <= 126 else 556 for c in text) / 1000.0


def ascii_text(text: str) -> str:
    return "".join(c if 32 <= ord(c) <= 126 else "?" for c in text)


def merge_runs(rects: np.ndarray) -> np.ndarray:
    """(R, 4) rectangles with those of the same x span that touch vertically merged into one."""
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    if len(rects) == 0:
        return rects
    order = np.lexsort((rects[:, 1], rects[:, 2], rects[:, 0]))
    out = [list(rects[order[0]])]
    for x0, y0, x1, y1 in rects[order[1:]]:
        last = out[-1]
        if abs(last[0] - x0) < 1e-9 and abs(last[2] - x1) < 1e-9 and abs(last[3] - y0) < 1e-9:
            last[3] = y1
        else:
            out.append([x0, y0, x1, y1])
    return np.array(out, dtype=np.float64)


# ================================================================================ writing files


def output_format(path) -> str:
    """"png", "svg" or "pdf" from the file name; InputError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix[1:] not in FORMATS:
        got = f"{suffix!r}" if suffix else "no extension"
        raise InputError(f"unsupported output type ({got}); expected a file name ending in .png, .svg or .pdf",
                         path=path)
    return suffix[1:]


def check_dpi(dpi, settings: PrintLayout = PrintLayout()) -> int:
    """``dpi`` as an int if within [min_dpi, max_dpi]; InputError otherwise."""
    if (isinstance(dpi, bool) or not isinstance(dpi, (int, np.integer))
            or not settings.min_dpi <= dpi <= settings.max_dpi):
        raise InputError(f"--dpi: expected {settings.min_dpi} to {settings.max_dpi} dots per inch, got {dpi!r}")
    return int(dpi)


def check_writable(path) -> Path:
    """InputError if ``path`` cannot be a file: it is a folder, or a parent is a file."""
    path = Path(path)
    if path.is_dir():
        raise InputError("cannot write the board: this is a folder; give a file name", path=path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise InputError(f"cannot write the board: {parent} is not a folder", path=path)
    return path


@contextlib.contextmanager
def _atomic(path: Path):
    """A binary file that replaces ``path`` only once completely written; InputError on OSError."""
    check_writable(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            yield f
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write the board: {exc.strerror or exc}", path=path) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write(drawing: Drawing, path, dpi: int | None = None, settings: PrintLayout = PrintLayout()) -> Path:
    """Write ``drawing`` as PNG (at ``dpi``), SVG or PDF, chosen by the file name."""
    fmt = output_format(path)
    if fmt == "png":
        return write_png(drawing, path, check_dpi(dpi if dpi is not None else 300, settings), settings)
    return write_svg(drawing, path) if fmt == "svg" else write_pdf(drawing, path)


# -------------------------------------------------------------------------------- PNG


#: Cap height of OpenCV's FONT_HERSHEY_SIMPLEX per unit of fontScale, px (measured: 'H' at scale
#: 3 is 61 px tall).
_HERSHEY_CAP_PX = 20.4


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _text_stamp(text: Text, px_per_mm: float):
    """(left px, top px, (h, w) uint8 image) of a line of text, drawn with OpenCV's Hershey font
    at Helvetica's cap height and no wider than the same text in Helvetica."""
    import cv2

    font = cv2.FONT_HERSHEY_SIMPLEX
    cap_px = CAP_HEIGHT_EM * text.size_mm * px_per_mm
    scale = cap_px / _HERSHEY_CAP_PX
    thickness = max(1, int(round(cap_px / 9.0)))
    (w, h), base = cv2.getTextSize(text.text, font, scale, thickness)
    allowed = text_width_mm(text.text, text.size_mm) * px_per_mm
    if w > allowed > 0:
        scale *= allowed / w
        (w, h), base = cv2.getTextSize(text.text, font, scale, thickness)
    pad = thickness + 2
    stamp = np.full((h + base + 2 * pad, w + 2 * pad), 255, np.uint8)
    cv2.putText(stamp, text.text, (pad, pad + h), font, scale, 0, thickness, cv2.LINE_AA)
    left = text.x_mm * px_per_mm - (w / 2.0 if text.anchor == "middle" else 0.0)
    return int(round(left)) - pad, int(round(text.y_mm * px_per_mm)) - h - pad, stamp


def raster_rects(rects_mm: np.ndarray, dpi: float, size_px: tuple[int, int]) -> np.ndarray:
    """(R, 4) int64 pixel ranges [x0, x1) x [y0, y1) of page-mm rectangles at ``dpi``: every edge
    rounded to the nearest pixel boundary; a rectangle thinner than that keeps the one pixel
    holding its centre line; clipped to the image (w, h)."""
    exact = np.asarray(rects_mm, dtype=np.float64).reshape(-1, 4) * (dpi / MM_PER_INCH)
    r = np.rint(exact).astype(np.int64)
    for lo, hi in ((0, 2), (1, 3)):
        thin = r[:, hi] <= r[:, lo]
        r[thin, lo] = np.floor((exact[thin, lo] + exact[thin, hi]) / 2.0).astype(np.int64)
        r[thin, hi] = r[thin, lo] + 1
    r[:, [0, 2]] = np.clip(r[:, [0, 2]], 0, size_px[0])
    r[:, [1, 3]] = np.clip(r[:, [1, 3]], 0, size_px[1])
    return r


def write_png(drawing: Drawing, path, dpi: int, settings: PrintLayout = PrintLayout()) -> Path:
    """Greyscale 8-bit PNG of ``drawing`` at ``dpi``, the DPI stored in a pHYs chunk."""
    path = Path(path)
    k = dpi / MM_PER_INCH
    width, height = (int(round(v * k)) for v in drawing.size_mm)
    if width * height > settings.max_png_pixels:
        raise InputError(f"a {width} x {height} px PNG is too large ({width * height / 1e9:.2f} gigapixels); "
                         f"use a lower --dpi, or SVG or PDF", path=path)
    rects = raster_rects(np.concatenate([r for _, r in drawing.layers]), dpi, (width, height))
    stamps = [_text_stamp(t, k) for t in drawing.texts]
    pixels_per_metre = int(round(dpi / (MM_PER_INCH / 1000.0)))
    header = [
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)),
        _png_chunk(b"pHYs", struct.pack(">IIB", pixels_per_metre, pixels_per_metre, 1)),
    ]
    for key, value in (("Title", drawing.title), ("Description", drawing.description), ("Software", "ar-guide")):
        if value:
            header.append(_png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + ascii_text(value).encode("latin-1")))
    band = max(1, min(height, (1 << 24) // max(width, 1)))
    with _atomic(path) as f:
        f.write(b"".join(header))
        compressor = zlib.compressobj(6)
        for r0 in range(0, height, band):
            r1 = min(r0 + band, height)
            rows = np.full((r1 - r0, width + 1), 255, np.uint8)
            rows[:, 0] = 0  # filter type None for every scanline
            for x0, y0, x1, y1 in rects[(rects[:, 1] < r1) & (rects[:, 3] > r0)]:
                rows[max(y0, r0) - r0:min(y1, r1) - r0, 1 + x0:1 + x1] = 0
            for left, top, stamp in stamps:
                _paste(rows, stamp, left, top - r0)
            data = compressor.compress(rows.tobytes())
            if data:
                f.write(_png_chunk(b"IDAT", data))
        f.write(_png_chunk(b"IDAT", compressor.flush()))
        f.write(_png_chunk(b"IEND", b""))
    return path


def _paste(rows: np.ndarray, stamp: np.ndarray, left: int, top: int) -> None:
    """Darken ``rows`` (a band with a filter-byte column first) with ``stamp`` at (left, top)."""
    h, w = stamp.shape
    y0, y1 = max(top, 0), min(top + h, rows.shape[0])
    x0, x1 = max(left, 0), min(left + w, rows.shape[1] - 1)
    if y0 < y1 and x0 < x1:
        region = rows[y0:y1, 1 + x0:1 + x1]
        np.minimum(region, stamp[y0 - top:y1 - top, x0 - left:x1 - left], out=region)


def read_png_dpi(path) -> float | None:
    """The DPI stored in a PNG's pHYs chunk (metre units), else None."""
    data = Path(path).read_bytes()
    pos = 8
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        if kind == b"pHYs":
            x, _y, unit = struct.unpack(">IIB", data[pos + 8:pos + 17])
            return x * MM_PER_INCH / 1000.0 if unit == 1 else None
        if kind == b"IDAT":
            return None
        pos += 12 + length
    return None


# -------------------------------------------------------------------------------- SVG


def _num(value: float) -> str:
    text = f"{value:.5f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def write_svg(drawing: Drawing, path) -> Path:
    """SVG of ``drawing``: width and height in mm, viewBox in mm (1 user unit = 1 mm)."""
    w, h = drawing.size_mm
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="{_num(w)}mm" height="{_num(h)}mm" '
           f'viewBox="0 0 {_num(w)} {_num(h)}">',
           f"<title>{_xml(drawing.title)}</title>", f"<desc>{_xml(drawing.description)}</desc>",
           f'<rect x="0" y="0" width="{_num(w)}" height="{_num(h)}" fill="#ffffff"/>']
    for name, rects in drawing.layers:
        # crispEdges: no anti-aliased seams where two rectangles of a marker touch.
        out.append(f'<g id="{_xml(name)}" fill="#000000" shape-rendering="crispEdges">')
        out += [f'<rect x="{_num(x0)}" y="{_num(y0)}" width="{_num(x1 - x0)}" height="{_num(y1 - y0)}"/>'
                for x0, y0, x1, y1 in rects]
        out.append("</g>")
    out.append('<g id="text" fill="#000000" font-family="Helvetica, Arial, sans-serif">')
    for t in drawing.texts:
        anchor = ' text-anchor="middle"' if t.anchor == "middle" else ""
        out.append(f'<text x="{_num(t.x_mm)}" y="{_num(t.y_mm)}" font-size="{_num(t.size_mm)}"{anchor}>'
                   f"{_xml(ascii_text(t.text))}</text>")
    out += ["</g>", "</svg>", ""]
    path = Path(path)
    with _atomic(path) as f:
        f.write("\n".join(out).encode("utf-8"))
    return path


# -------------------------------------------------------------------------------- PDF


def _pdf_string(text: str) -> str:
    return "(" + ascii_text(text).replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def _pt(value_mm: float) -> str:
    text = f"{value_mm * POINTS_PER_MM:.4f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def pdf_content(drawing: Drawing) -> str:
    """The page's content stream: per layer a marked-content group of ``x y w h re`` rectangles
    filled black (PDF points, origin at the page's bottom-left, y up), then the text in /F1."""
    h = drawing.size_mm[1]
    ops = ["0 g"]
    for name, rects in drawing.layers:
        ops.append(f"/{name} BMC")
        ops += [f"{_pt(x0)} {_pt(h - y1)} {_pt(x1 - x0)} {_pt(y1 - y0)} re" for x0, y0, x1, y1 in rects]
        ops += ["f", "EMC"]
    for t in drawing.texts:
        x = t.x_mm - (text_width_mm(t.text, t.size_mm) / 2.0 if t.anchor == "middle" else 0.0)
        ops.append(f"BT /F1 {_pt(t.size_mm)} Tf {_pt(x)} {_pt(h - t.y_mm)} Td {_pdf_string(t.text)} Tj ET")
    return "\n".join(ops) + "\n"


def write_pdf(drawing: Drawing, path, date: datetime.datetime | None = None) -> Path:
    """A one-page PDF of ``drawing`` (ISO 32000-1): MediaBox in points (mm * 72 / 25.4), Helvetica
    text, an uncompressed content stream, a cross-reference table with the objects' byte offsets."""
    w, h = drawing.size_mm
    content = pdf_content(drawing).encode("latin-1")
    stamp = (date or datetime.datetime.now()).strftime("D:%Y%m%d%H%M%S")
    objects = [
        "<< /Type /Catalog /Pages 2 0 R /ViewerPreferences << /PrintScaling /None >> >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {_pt(w)} {_pt(h)}] "
        f"/Resources << /Font << /F1 4 0 R >> /ProcSet [/PDF /Text] >> /Contents 5 0 R >>",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        None,  # the content stream
        f"<< /Title {_pdf_string(drawing.title)} /Subject {_pdf_string(drawing.description)} "
        f"/Producer (ar-guide) /CreationDate ({stamp}) >>",
    ]
    out = bytearray(b"%PDF-1.6\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        if body is None:
            out += (f"{number} 0 obj\n<< /Length {len(content)} >>\nstream\n").encode("latin-1")
            out += content + b"endstream\nendobj\n"
        else:
            out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("latin-1")
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode("latin-1")
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\n"
            f"startxref\n{xref}\n%%EOF\n").encode("latin-1")
    path = Path(path)
    with _atomic(path) as f:
        f.write(bytes(out))
    return path
