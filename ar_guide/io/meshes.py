"""Triangle meshes from STL, OBJ, PLY, VTK legacy (.vtk) and VTK XML PolyData (.vtp) files.

A :class:`Mesh` is positions and triangles only: colours, normals and texture coordinates in the
file are ignored (the scene file gives colour and opacity; the renderer computes normals).

- PLY and STL are parsed by trimesh's format loaders (``trimesh.exchange``).  We take their raw
  arrays and never build a ``trimesh.Trimesh``: the Trimesh constructor merges vertices and drops
  faces unless told ``process=False``, and its texture handling splits vertices along UV seams
  (and needs Pillow).  STL stores three private vertices per triangle by design, so exactly equal
  positions are merged for STL only (bit-identical float32 values; no tolerance).
- OBJ is parsed here: trimesh splits vertices wherever ``f v//vn`` gives per-face normals (the
  spine meshes would triple their vertex count and lose their shared edges).
- VTK legacy files (``# vtk DataFile Version 2.0 ... 5.1``, ASCII or big-endian BINARY,
  ``DATASET POLYDATA``) and ``.vtp`` files (ascii, inline base64, appended raw or base64; zlib or
  lzma compression) are parsed here; trimesh reads neither.  Formats: "VTK File Formats", VTK
  User's Guide 11th ed., ch. 19, and https://docs.vtk.org/en/latest/design_documents/VTKFileFormats.html

Polygons are triangulated as fans from their first vertex; triangle strips alternate their
winding as VTK does (vtkTriangleStrip::DecomposeStrip) and lose their degenerate triangles.
"""

from __future__ import annotations

import base64
import dataclasses
import lzma
import os
import re
import zlib
from pathlib import Path

import numpy as np

from ar_guide.errors import InputError

MESH_SUFFIXES = (".stl", ".obj", ".ply", ".vtk", ".vtp")


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
    """A triangle mesh.

    vertices : (N, 3) float64, mm, in the frame of the file (CT for anatomy)
    faces : (M, 3) int32, indices into ``vertices``, with the winding of the file (in the
        file's order, except PLY files mixing polygon sizes, which trimesh reorders)
    source : the file it came from
    """

    vertices: np.ndarray
    faces: np.ndarray
    source: str | None = None

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) float64: minimum and maximum corner of the vertices, mm."""
        return np.stack([self.vertices.min(axis=0), self.vertices.max(axis=0)])


def load_mesh(path: str | os.PathLike, scale: float = 1.0) -> Mesh:
    """Read a triangle mesh; ``scale`` multiplies the vertices (1000 for a file in metres).

    Raises InputError naming the file when it is missing, unreadable, of an unknown type, holds
    no triangles, holds NaN or infinite coordinates, or has faces that index missing vertices.
    """
    path = Path(path)
    if not isinstance(scale, (int, float)) or isinstance(scale, bool) or not np.isfinite(scale) \
            or scale <= 0:
        raise InputError(f"mesh scale must be a positive number, got {scale!r}", path=path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise InputError(f"unsupported mesh type {path.suffix!r}; expected one of "
                         f"{', '.join(MESH_SUFFIXES)}", path=path)
    if not path.is_file():
        raise InputError("mesh file not found", path=path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read mesh: {exc.strerror}", path=path) from None
    if not data.strip():
        raise InputError("mesh file is empty", path=path)
    try:
        if suffix == ".vtk":
            vertices, faces = _read_vtk_legacy(data)
        elif suffix == ".vtp":
            vertices, faces = _read_vtp(data)
        elif suffix == ".obj":
            vertices, faces = _read_obj(data)
        else:
            vertices, faces = _read_with_trimesh(data, suffix)
    except _FormatError as exc:
        raise InputError(f"not a readable {suffix[1:].upper()} mesh: {exc}", path=path) from None
    return _checked_mesh(vertices, faces, scale, path)


class _FormatError(Exception):
    """A file does not follow its format; becomes an InputError naming the file."""


def _checked_mesh(vertices, faces, scale: float, path: Path) -> Mesh:
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(faces).reshape(-1, 3)
    if len(faces) == 0:
        raise InputError("mesh has no triangles", path=path)
    if not np.all(np.isfinite(vertices)):
        bad = int(np.count_nonzero(~np.all(np.isfinite(vertices), axis=1)))
        raise InputError(f"mesh has {bad} vertices with NaN or infinite coordinates", path=path)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise InputError(f"faces index vertices outside 0..{len(vertices) - 1} "
                         f"(found {int(faces.min())}..{int(faces.max())})", path=path)
    vertices = vertices * float(scale) if scale != 1.0 else vertices
    vertices = np.ascontiguousarray(vertices)
    faces = np.ascontiguousarray(faces, dtype=np.int32)
    vertices.setflags(write=False)
    faces.setflags(write=False)
    return Mesh(vertices, faces, str(path))


# ----------------------------------------------------------------------------------------------
# Polygons and strips to triangles


def _fan_triangles(counts: np.ndarray, connectivity: np.ndarray) -> np.ndarray:
    """Triangulate polygons given as sizes ``counts`` (C,) and concatenated vertex ids.

    Polygon i with vertices v0..v(n-1) gives (v0, vk, vk+1) for k = 1..n-2.
    """
    counts = np.asarray(counts, dtype=np.int64)
    connectivity = np.asarray(connectivity, dtype=np.int64)
    if counts.size == 0:
        return np.zeros((0, 3), np.int64)
    if counts.min() < 3:
        raise _FormatError(f"a polygon has {int(counts.min())} vertices (at least 3 needed)")
    if int(counts.sum()) != connectivity.size:
        raise _FormatError("polygon sizes do not add up to the connectivity length")
    if np.all(counts == 3):
        return connectivity.reshape(-1, 3)
    starts = np.cumsum(counts) - counts
    n_tri = counts - 2
    cell = np.repeat(np.arange(counts.size), n_tri)
    k = np.arange(int(n_tri.sum())) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri) + 1
    s = starts[cell]
    return np.stack([connectivity[s], connectivity[s + k], connectivity[s + k + 1]], axis=1)


def _strip_triangles(counts: np.ndarray, connectivity: np.ndarray) -> np.ndarray:
    """Triangulate triangle strips; odd triangles swap their first two vertices (as VTK)."""
    counts = np.asarray(counts, dtype=np.int64)
    connectivity = np.asarray(connectivity, dtype=np.int64)
    if counts.size == 0:
        return np.zeros((0, 3), np.int64)
    if counts.min() < 3:
        raise _FormatError(f"a triangle strip has {int(counts.min())} vertices (at least 3 needed)")
    if int(counts.sum()) != connectivity.size:
        raise _FormatError("strip sizes do not add up to the connectivity length")
    starts = np.cumsum(counts) - counts
    n_tri = counts - 2
    cell = np.repeat(np.arange(counts.size), n_tri)
    j = np.arange(int(n_tri.sum())) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    i0 = starts[cell] + j
    odd = (j % 2) == 1
    a = np.where(odd, connectivity[i0 + 1], connectivity[i0])
    b = np.where(odd, connectivity[i0], connectivity[i0 + 1])
    tri = np.stack([a, b, connectivity[i0 + 2]], axis=1)
    degenerate = (tri[:, 0] == tri[:, 1]) | (tri[:, 1] == tri[:, 2]) | (tri[:, 0] == tri[:, 2])
    return tri[~degenerate]


# ----------------------------------------------------------------------------------------------
# STL and PLY through trimesh's format loaders


def _read_with_trimesh(data: bytes, suffix: str):
    import io

    from trimesh.exchange import ply, stl

    try:
        if suffix == ".stl":
            # A file that is neither binary nor ASCII STL makes trimesh fail in many ways.
            loaded = stl.load_stl(io.BytesIO(data))
        else:
            # fix_texture=False: do not split vertices along UV seams; skip_materials: no Pillow.
            loaded = ply.load_ply(io.BytesIO(data), fix_texture=False, skip_materials=True)
    except Exception as exc:  # noqa: BLE001 - third-party parser: any failure is a bad file
        raise _FormatError(f"{type(exc).__name__}: {exc}".strip().rstrip(":")) from None
    vertices = loaded.get("vertices")
    faces = loaded.get("faces")
    if vertices is None or len(vertices) == 0:
        raise _FormatError("no vertices")
    vertices = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    if faces is None or len(faces) == 0:
        return vertices, np.zeros((0, 3), np.int64)
    faces = _polygon_list_to_triangles(faces)
    if suffix == ".stl":
        vertices, faces = _merge_identical_vertices(vertices, faces)
    return vertices, faces


def _polygon_list_to_triangles(faces) -> np.ndarray:
    arr = np.asarray(faces, dtype=object) if _is_ragged(faces) else np.asarray(faces)
    if arr.dtype != object:
        arr = arr.astype(np.int64).reshape(len(arr), -1)
        counts = np.full(len(arr), arr.shape[1])
        return _fan_triangles(counts, arr.ravel())
    polys = [np.asarray(p, dtype=np.int64).ravel() for p in arr]
    counts = np.array([p.size for p in polys])
    return _fan_triangles(counts, np.concatenate(polys))


def _is_ragged(faces) -> bool:
    if isinstance(faces, np.ndarray):
        return faces.dtype == object
    lengths = {len(f) for f in faces}
    return len(lengths) > 1


def _merge_identical_vertices(vertices: np.ndarray, faces: np.ndarray):
    """Merge bit-identical positions, keeping the first occurrence's order (STL only)."""
    unique, first, inverse = np.unique(vertices, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return unique[order], rank[inverse.ravel()][faces]


# ----------------------------------------------------------------------------------------------
# OBJ


def _read_obj(data: bytes):
    """Wavefront OBJ: ``v x y z [w|r g b]`` and ``f a b c ...`` with a, a/t, a/t/n, a//n, or
    negative (relative) indices.  Other statements (vt, vn, l, o, g, usemtl ...) are ignored."""
    text = data.decode("utf-8", errors="replace")
    vertices: list[str] = []
    counts: list[int] = []
    ids: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("v "):
            parts = line.split()
            if len(parts) < 4:
                raise _FormatError(f"line {number}: a vertex needs x y z")
            vertices.extend(parts[1:4])
        elif line.startswith("f "):
            parts = line.split()[1:]
            if len(parts) < 3:
                raise _FormatError(f"line {number}: a face needs at least 3 vertices")
            n_before = len(vertices) // 3
            try:
                for p in parts:
                    i = int(p.split("/", 1)[0])
                    ids.append(i - 1 if i > 0 else n_before + i)
            except ValueError:
                raise _FormatError(f"line {number}: malformed face {line[:60]!r}") from None
            counts.append(len(parts))
    if not vertices:
        raise _FormatError("no vertices ('v' lines)")
    try:
        v = np.array(vertices, dtype=np.float64).reshape(-1, 3)
    except ValueError:
        raise _FormatError("malformed vertex coordinates") from None
    return v, _fan_triangles(np.array(counts, dtype=np.int64), np.array(ids, dtype=np.int64))


# ----------------------------------------------------------------------------------------------
# VTK legacy


_VTK_TYPES = {
    "unsigned_char": "u1", "char": "i1", "unsigned_short": "u2", "short": "i2",
    "unsigned_int": "u4", "int": "i4", "unsigned_long": "u8", "long": "i8",
    "float": "f4", "double": "f8", "vtktypeint64": "i8", "vtktypeuint64": "u8",
    "vtkidtype": "i8",
}
_CELL_SECTIONS = ("VERTICES", "LINES", "POLYGONS", "TRIANGLE_STRIPS")


class _LegacyCursor:
    """Walks a legacy VTK file: keyword lines, then ASCII numbers or big-endian binary arrays."""

    def __init__(self, data: bytes, binary: bool, pos: int):
        self.data = data
        self.binary = binary
        self.pos = pos

    def raw_line(self) -> str | None:
        if self.pos >= len(self.data):
            return None
        end = self.data.find(b"\n", self.pos)
        if end < 0:
            end = len(self.data)
        line = self.data[self.pos:end]
        self.pos = end + 1
        return line.decode("latin-1").strip()

    def line(self) -> str | None:
        """Next non-empty line, or None at the end of the file."""
        while True:
            line = self.raw_line()
            if line is None or line:
                return line

    def peek_word(self) -> str:
        m = re.compile(rb"\s*(\S+)").match(self.data, self.pos)
        return m.group(1).decode("latin-1") if m else ""

    def numbers(self, count: int, type_name: str, what: str) -> np.ndarray:
        code = _VTK_TYPES.get(type_name.lower())
        if code is None:
            raise _FormatError(f"{what}: unsupported data type {type_name!r}")
        if count < 0:
            raise _FormatError(f"{what}: negative count {count}")
        if self.binary:
            dtype = np.dtype(">" + code)
            end = self.pos + count * dtype.itemsize
            if end > len(self.data):
                raise _FormatError(f"{what}: file ends early (truncated?)")
            arr = np.frombuffer(self.data, dtype=dtype, count=count, offset=self.pos)
            self.pos = end
            if self.pos < len(self.data) and self.data[self.pos:self.pos + 1] == b"\n":
                self.pos += 1
            return arr.astype(dtype.newbyteorder("="))
        tokens: list[bytes] = []
        while len(tokens) < count:
            if self.pos >= len(self.data):
                raise _FormatError(f"{what}: file ends early, expected {count} numbers")
            end = self.data.find(b"\n", self.pos)
            end = len(self.data) if end < 0 else end
            line_tokens = self.data[self.pos:end].split()
            need = count - len(tokens)
            if len(line_tokens) > need:
                # The array ends inside this line: stop right after its last number.
                matches = list(re.finditer(rb"\S+", self.data[self.pos:end]))
                tokens.extend(line_tokens[:need])
                self.pos += matches[need - 1].end()
                break
            tokens.extend(line_tokens)
            self.pos = end + 1
        try:
            return np.array([t.decode("latin-1") for t in tokens], dtype=np.float64 if code[0] == "f"
                            else np.int64)
        except ValueError:
            raise _FormatError(f"{what}: expected {count} numbers") from None

    def skip_metadata(self) -> None:
        """A METADATA block runs until the next empty line."""
        while True:
            line = self.raw_line()
            if line is None or not line:
                return


def _int(token: str, what: str) -> int:
    try:
        return int(token)
    except ValueError:
        raise _FormatError(f"{what}: expected an integer, got {token!r}") from None


def _read_vtk_legacy(data: bytes):
    if not data.startswith(b"# vtk DataFile"):
        raise _FormatError("missing the '# vtk DataFile Version' header")
    cur = _LegacyCursor(data, binary=False, pos=0)
    cur.raw_line()  # version
    cur.raw_line()  # title
    mode = (cur.line() or "").upper()
    if mode not in ("ASCII", "BINARY"):
        raise _FormatError(f"line 3 must be ASCII or BINARY, got {mode[:20]!r}")
    cur.binary = mode == "BINARY"
    dataset = (cur.line() or "").split()
    if len(dataset) != 2 or dataset[0].upper() != "DATASET":
        raise _FormatError("expected 'DATASET POLYDATA'")
    if dataset[1].upper() != "POLYDATA":
        raise _FormatError(f"only POLYDATA is supported, got {dataset[1]}")

    points = None
    polys: list[np.ndarray] = []
    while True:
        line = cur.line()
        if line is None:
            break
        words = line.split()
        key = words[0].upper()
        if key in ("POINT_DATA", "CELL_DATA"):
            break  # attributes follow; geometry is complete
        if key == "METADATA":
            cur.skip_metadata()
        elif key == "FIELD":
            _skip_field(cur, words)
        elif key == "POINTS":
            if len(words) != 3:
                raise _FormatError("expected 'POINTS n type'")
            n = _int(words[1], "POINTS")
            points = cur.numbers(3 * n, words[2], "POINTS").astype(np.float64).reshape(n, 3)
        elif key in _CELL_SECTIONS:
            if len(words) != 3:
                raise _FormatError(f"expected '{key} n size'")
            counts, conn = _read_legacy_cells(cur, key, _int(words[1], key), _int(words[2], key))
            if key == "POLYGONS":
                polys.append(_fan_triangles(counts, conn))
            elif key == "TRIANGLE_STRIPS":
                polys.append(_strip_triangles(counts, conn))
        else:
            raise _FormatError(f"unexpected section {words[0][:30]!r}")
    if points is None:
        raise _FormatError("no POINTS section")
    faces = np.concatenate(polys) if polys else np.zeros((0, 3), np.int64)
    return points, faces


def _read_legacy_cells(cur: _LegacyCursor, key: str, n: int, size: int):
    """Cell array of a legacy file: returns (sizes (C,), connectivity (sum of sizes,))."""
    if cur.peek_word().upper() == "OFFSETS":
        # Version 5.x: OFFSETS (n = number of offsets = cells + 1) then CONNECTIVITY (size ids).
        words = cur.line().split()
        offsets = cur.numbers(n, words[1] if len(words) > 1 else "", f"{key} OFFSETS")
        words = (cur.line() or "").split()
        if not words or words[0].upper() != "CONNECTIVITY":
            raise _FormatError(f"{key}: expected CONNECTIVITY after OFFSETS")
        conn = cur.numbers(size, words[1] if len(words) > 1 else "", f"{key} CONNECTIVITY")
        offsets = offsets.astype(np.int64)
        if n == 0:
            return np.zeros(0, np.int64), conn.astype(np.int64)
        if offsets[0] != 0 or offsets[-1] != size or np.any(np.diff(offsets) < 0):
            raise _FormatError(f"{key}: OFFSETS do not match CONNECTIVITY")
        return np.diff(offsets), conn.astype(np.int64)
    # Versions 2-4: 'n size' then size integers: for each cell its size and its point ids.
    arr = cur.numbers(size, "int", key).astype(np.int64)
    if n * 4 == size and np.all(arr[::4] == 3):
        return np.full(n, 3), arr.reshape(n, 4)[:, 1:].ravel()
    counts = np.empty(n, np.int64)
    keep = np.ones(size, bool)
    i = 0
    for c in range(n):
        if i >= size:
            raise _FormatError(f"{key}: {n} cells do not fit in {size} numbers")
        counts[c] = arr[i]
        keep[i] = False
        i += 1 + int(arr[i])
    if i != size:
        raise _FormatError(f"{key}: cell sizes do not add up to {size}")
    return counts, arr[keep]


def _skip_field(cur: _LegacyCursor, words: list[str]) -> None:
    """FIELD name n: n arrays, each 'name components tuples type' then the numbers."""
    if len(words) != 3:
        raise _FormatError("expected 'FIELD name n'")
    for _ in range(_int(words[2], "FIELD")):
        line = cur.line()
        if line is None:
            raise _FormatError("FIELD: file ends early")
        parts = line.split()
        if len(parts) != 4:
            raise _FormatError(f"FIELD: malformed array header {line[:40]!r}")
        if parts[3].lower() == "string":
            raise _FormatError("FIELD arrays of strings are not supported")
        cur.numbers(_int(parts[1], "FIELD") * _int(parts[2], "FIELD"), parts[3], "FIELD")
        if cur.peek_word().upper() == "METADATA":
            cur.line()
            cur.skip_metadata()


# ----------------------------------------------------------------------------------------------
# VTK XML PolyData (.vtp)


_XML_TYPES = {
    "Int8": "i1", "UInt8": "u1", "Int16": "i2", "UInt16": "u2", "Int32": "i4", "UInt32": "u4",
    "Int64": "i8", "UInt64": "u8", "Float32": "f4", "Float64": "f8",
}


@dataclasses.dataclass
class _XmlContext:
    byte_order: str  # "<" or ">"
    header: np.dtype
    decompress: object  # callable(bytes) -> bytes, or None
    appended: bytes | None  # raw bytes after the '_' marker
    appended_base64: bool


def _read_vtp(data: bytes):
    import xml.etree.ElementTree as ET

    appended = None
    appended_base64 = False
    start = data.find(b"<AppendedData")
    if start >= 0:
        tag_end = data.find(b">", start)
        marker = data.find(b"_", tag_end)
        if tag_end < 0 or marker < 0:
            raise _FormatError("malformed AppendedData section")
        encoding = re.search(rb'encoding\s*=\s*"([^"]*)"', data[start:tag_end])
        appended_base64 = bool(encoding) and encoding.group(1) == b"base64"
        appended = data[marker + 1:]
        if appended_base64:
            appended = appended.split(b"<", 1)[0]
            appended = re.sub(rb"\s+", b"", appended)
        # The raw section is not XML: parse the part before it, closed by hand.
        data = data[:start] + b"</VTKFile>"
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise _FormatError(f"not valid XML ({exc})") from None
    if root.tag != "VTKFile":
        raise _FormatError(f"expected a VTKFile element, got {root.tag!r}")
    if root.get("type") != "PolyData":
        raise _FormatError(f"only PolyData is supported, got type={root.get('type')!r}")
    header_name = root.get("header_type", "UInt32")
    if header_name not in ("UInt32", "UInt64"):
        raise _FormatError(f"unsupported header_type {header_name!r}")
    byte_order = ">" if root.get("byte_order", "LittleEndian") == "BigEndian" else "<"
    compressor = root.get("compressor")
    decompress = None
    if compressor == "vtkZLibDataCompressor":
        decompress = zlib.decompress
    elif compressor == "vtkLZMADataCompressor":
        decompress = lzma.decompress
    elif compressor:
        raise _FormatError(f"compressor {compressor} is not supported (zlib and lzma are); "
                           "re-save the file uncompressed or with zlib")
    ctx = _XmlContext(byte_order, np.dtype(byte_order + _XML_TYPES[header_name]), decompress,
                      appended, appended_base64)
    polydata = root.find("PolyData")
    if polydata is None:
        raise _FormatError("no PolyData element")
    vertices, faces = [], []
    n_before = 0
    for piece in polydata.findall("Piece"):
        n_points = _int(piece.get("NumberOfPoints", "0"), "NumberOfPoints")
        arr = piece.find("Points/DataArray")
        if arr is None:
            if n_points:
                raise _FormatError("a Piece has no Points")
            continue
        pts = _xml_array(arr, ctx).astype(np.float64)
        if pts.size != 3 * n_points:
            raise _FormatError(f"Points hold {pts.size} numbers, expected {3 * n_points}")
        vertices.append(pts.reshape(-1, 3))
        for section, triangulate in (("Polys", _fan_triangles), ("Strips", _strip_triangles)):
            element = piece.find(section)
            if element is None:
                continue
            counts, conn = _xml_cells(element, ctx, section)
            faces.append(triangulate(counts, conn) + n_before)
        n_before += n_points
    if not vertices:
        raise _FormatError("no points")
    faces_all = np.concatenate(faces) if faces else np.zeros((0, 3), np.int64)
    return np.concatenate(vertices), faces_all


def _xml_cells(element, ctx: _XmlContext, section: str):
    arrays = {a.get("Name"): a for a in element.findall("DataArray")}
    if "connectivity" not in arrays or "offsets" not in arrays:
        raise _FormatError(f"{section}: needs 'connectivity' and 'offsets' arrays")
    conn = _xml_array(arrays["connectivity"], ctx).astype(np.int64)
    ends = _xml_array(arrays["offsets"], ctx).astype(np.int64)  # end of each cell
    if ends.size == 0:
        return np.zeros(0, np.int64), conn
    if ends[-1] != conn.size or np.any(np.diff(ends) < 0) or ends[0] < 0:
        raise _FormatError(f"{section}: offsets do not match connectivity")
    return np.diff(np.concatenate([[0], ends])), conn


def _xml_array(element, ctx: _XmlContext) -> np.ndarray:
    type_name = element.get("type")
    if type_name not in _XML_TYPES:
        raise _FormatError(f"DataArray {element.get('Name')!r}: unsupported type {type_name!r}")
    dtype = np.dtype(ctx.byte_order + _XML_TYPES[type_name])
    fmt = element.get("format", "ascii")
    name = element.get("Name")
    if fmt == "ascii":
        text = (element.text or "").split()
        try:
            return np.array(text, dtype=np.float64 if dtype.kind == "f" else np.int64)
        except ValueError:
            raise _FormatError(f"DataArray {name!r}: malformed ascii numbers") from None
    if fmt == "binary":
        text = re.sub(r"\s+", "", element.text or "").encode("ascii")
        raw = _decode_base64_block(text, ctx, name)
    elif fmt == "appended":
        if ctx.appended is None:
            raise _FormatError(f"DataArray {name!r} is appended but the file has no AppendedData")
        offset = _int(element.get("offset", "0"), "offset")
        if ctx.appended_base64:
            raw = _decode_base64_block(ctx.appended[offset:], ctx, name)
        else:
            raw = _raw_block(ctx.appended, offset, ctx, name)
    else:
        raise _FormatError(f"DataArray {name!r}: unknown format {fmt!r}")
    if len(raw) % dtype.itemsize:
        raise _FormatError(f"DataArray {name!r}: {len(raw)} bytes is not a whole number of values")
    return np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))


def _b64(text: bytes, name) -> bytes:
    try:
        return base64.b64decode(text, validate=False)
    except (ValueError, TypeError):
        raise _FormatError(f"DataArray {name!r}: malformed base64") from None


def _b64_chars(n_bytes: int) -> int:
    return 4 * ((n_bytes + 2) // 3)


def _decode_base64_block(text: bytes, ctx: _XmlContext, name) -> bytes:
    """A base64 block: header (size or compression table) then data.

    VTK encodes the header on its own (so it ends in '=' padding) and the data separately; some
    writers encode both in one stream.  Both are read.
    """
    hsize = ctx.header.itemsize
    if ctx.decompress is None:
        head_chars = _b64_chars(hsize)
        if b"=" in text[:head_chars]:
            n_bytes = int(np.frombuffer(_b64(text[:head_chars], name)[:hsize], ctx.header)[0])
            body = _b64(text[head_chars:head_chars + _b64_chars(n_bytes)], name)
        else:
            n_bytes = int(np.frombuffer(_b64(text[:head_chars], name)[:hsize], ctx.header)[0])
            body = _b64(text[:_b64_chars(hsize + n_bytes)], name)[hsize:]
        if len(body) < n_bytes:
            raise _FormatError(f"DataArray {name!r}: {len(body)} of {n_bytes} bytes present")
        return body[:n_bytes]
    first = _b64(text[:_b64_chars(3 * hsize)], name)
    n_blocks = int(np.frombuffer(first[:hsize], ctx.header)[0])
    head_chars = _b64_chars((3 + n_blocks) * hsize)
    table = np.frombuffer(_b64(text[:head_chars], name)[:(3 + n_blocks) * hsize], ctx.header)
    compressed_total = int(table[3:].sum())
    body = _b64(text[head_chars:head_chars + _b64_chars(compressed_total)], name)
    return _decompress_blocks(table, body, ctx, name)


def _raw_block(appended: bytes, offset: int, ctx: _XmlContext, name) -> bytes:
    hsize = ctx.header.itemsize
    if offset < 0 or offset + hsize > len(appended):
        raise _FormatError(f"DataArray {name!r}: offset {offset} beyond the appended data "
                           "(truncated?)")
    if ctx.decompress is None:
        n_bytes = int(np.frombuffer(appended, ctx.header, count=1, offset=offset)[0])
        start = offset + hsize
        if start + n_bytes > len(appended):
            raise _FormatError(f"DataArray {name!r}: appended data ends early (truncated?)")
        return appended[start:start + n_bytes]
    n_blocks = int(np.frombuffer(appended, ctx.header, count=1, offset=offset)[0])
    if offset + (3 + n_blocks) * hsize > len(appended):
        raise _FormatError(f"DataArray {name!r}: appended data ends early (truncated?)")
    table = np.frombuffer(appended, ctx.header, count=3 + n_blocks, offset=offset)
    start = offset + (3 + n_blocks) * hsize
    return _decompress_blocks(table, appended[start:start + int(table[3:].sum())], ctx, name)


def _decompress_blocks(table: np.ndarray, body: bytes, ctx: _XmlContext, name) -> bytes:
    """Compressed data: header [blocks, block size, last block size, compressed sizes...]."""
    n_blocks, block_size, last_size = (int(v) for v in table[:3])
    sizes = table[3:].astype(np.int64)
    if len(body) < int(sizes.sum()):
        raise _FormatError(f"DataArray {name!r}: compressed data ends early (truncated?)")
    out = []
    pos = 0
    for i, size in enumerate(sizes):
        try:
            block = ctx.decompress(body[pos:pos + int(size)])
        except (zlib.error, lzma.LZMAError):
            raise _FormatError(f"DataArray {name!r}: corrupt compressed block {i}") from None
        expected = last_size if (i == n_blocks - 1 and last_size) else block_size
        if len(block) != expected:
            raise _FormatError(f"DataArray {name!r}: block {i} has {len(block)} bytes, "
                               f"expected {expected}")
        out.append(block)
        pos += int(size)
    return b"".join(out)
