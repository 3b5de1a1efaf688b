"""Mesh loading: VTK legacy / VTP written by VTK itself, OBJ, STL, PLY, bad files, real meshes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ar_guide.errors import InputError
from ar_guide.io.meshes import load_mesh

FIXTURES = Path(__file__).parent / "data" / "meshes"

# The geometry in tests/data/meshes/make_fixtures.py (files written by VTK 9.7.2).
CUBE_POINTS = np.array([(1, 2, 3), (11, 2, 3), (11, 22, 3), (1, 22, 3),
                        (1, 2, 33), (11, 2, 33), (11, 22, 33), (1, 22, 33)], dtype=np.float64)
# Five quads, each split as a fan from its first vertex (v0 v1 v2, v0 v2 v3), then two triangles.
CUBE_TRIANGLES = [[0, 3, 2], [0, 2, 1], [0, 1, 5], [0, 5, 4], [1, 2, 6], [1, 6, 5], [2, 3, 7],
                  [2, 7, 6], [3, 0, 4], [3, 4, 7], [4, 5, 6], [4, 6, 7]]
# Strips (0 1 2 3 4 5) and (6 7 8 9 10): triangle j is (s[j], s[j+1], s[j+2]) for even j and
# (s[j+1], s[j], s[j+2]) for odd j, so all keep the first triangle's winding
# (vtkTriangleStrip::DecomposeStrip).
STRIP_TRIANGLES = [[0, 1, 2], [2, 1, 3], [2, 3, 4], [4, 3, 5], [6, 7, 8], [8, 7, 9], [8, 9, 10]]

CUBE_FILES = ["cube_ascii_42.vtk", "cube_binary_42.vtk", "cube_ascii_51.vtk", "cube_binary_51.vtk",
              "cube_ascii.vtp", "cube_binary.vtp", "cube_binary_uint64.vtp", "cube_binary_zlib.vtp",
              "cube_appended_raw.vtp", "cube_appended_base64.vtp", "cube_appended_raw_zlib.vtp",
              "cube_appended_lzma.vtp"]


@pytest.mark.parametrize("name", CUBE_FILES)
def test_vtk_written_cube_loads_exactly(name):
    # Each file also holds a vertex cell, a line cell, point normals, cell scalars and field
    # data, which the reader must skip; only the 12 triangles remain.
    mesh = load_mesh(FIXTURES / name)
    assert mesh.vertices.dtype == np.float64 and mesh.faces.dtype == np.int32
    np.testing.assert_array_equal(mesh.vertices, CUBE_POINTS)
    np.testing.assert_array_equal(mesh.faces, CUBE_TRIANGLES)
    assert not mesh.vertices.flags.writeable


@pytest.mark.parametrize("name", ["strips_ascii_42.vtk", "strips_binary_51.vtk", "strips_binary.vtp"])
def test_triangle_strips_alternate_winding(name):
    mesh = load_mesh(FIXTURES / name)
    assert mesh.vertices.shape == (11, 3)
    np.testing.assert_array_equal(mesh.faces, STRIP_TRIANGLES)
    # All normals of the planar strips point the same way (+z or -z throughout).
    v = mesh.vertices[mesh.faces]
    nz = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])[:, 2]
    assert np.all(nz < 0) or np.all(nz > 0)


def test_scale_multiplies_vertices():
    mesh = load_mesh(FIXTURES / "cube_ascii_42.vtk", scale=1000.0)
    np.testing.assert_array_equal(mesh.vertices, CUBE_POINTS * 1000.0)


def test_lz4_compression_is_a_clear_error():
    with pytest.raises(InputError, match=r"cube_binary_lz4.vtp: not a readable VTP mesh: compressor "
                                         r"vtkLZ4DataCompressor is not supported"):
        load_mesh(FIXTURES / "cube_binary_lz4.vtp")


def _write(tmp_path, name, text) -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


LEGACY_HEAD = "# vtk DataFile Version 3.0\nhand written\nASCII\nDATASET POLYDATA\n"


@pytest.mark.parametrize("body, message", [
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 nan\nPOLYGONS 1 4\n3 0 1 2\n",
     "mesh has 1 vertices with NaN or infinite coordinates"),
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 0\nPOLYGONS 1 4\n3 0 1 7\n",
     r"faces index vertices outside 0..2 \(found 0..7\)"),
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 0\nLINES 1 3\n2 0 1\n", "mesh has no triangles"),
    ("POINTS 3 float\n0 0 0 1 0 0\n", "POINTS: file ends early, expected 9 numbers"),
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 0\nPOLYGONS 1 3\n2 0 1\n", "a polygon has 2 vertices"),
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 0\nPOLYGONS 2 8\n3 0 1 2\n", "POLYGONS: file ends early"),
    ("POINTS 3 float\n0 0 0 1 0 0 0 1 0\nPOLYGONS 1 4\n3 0 x 2\n", "POLYGONS: expected 4 numbers"),
    ("POINTS 3 bit\n0 0 0 1 0 0 0 1 0\n", "unsupported data type 'bit'"),
    ("CELLS 1 4\n", "unexpected section 'CELLS'"),
])
def test_broken_legacy_files_name_the_file(tmp_path, body, message):
    path = _write(tmp_path, "bad.vtk", LEGACY_HEAD + body)
    with pytest.raises(InputError, match=message) as info:
        load_mesh(path)
    assert str(info.value).startswith(f"{path}: ")


def test_legacy_non_polydata_and_bad_header(tmp_path):
    grid = _write(tmp_path, "grid.vtk", LEGACY_HEAD.replace("POLYDATA", "UNSTRUCTURED_GRID"))
    with pytest.raises(InputError, match="only POLYDATA is supported, got UNSTRUCTURED_GRID"):
        load_mesh(grid)
    with pytest.raises(InputError, match="missing the '# vtk DataFile Version' header"):
        load_mesh(_write(tmp_path, "x.vtk", "solid nothing\n"))


def test_truncated_binary_legacy_file(tmp_path):
    data = (FIXTURES / "cube_binary_42.vtk").read_bytes()
    cut = data[:data.index(b"POINTS") + 40]
    with pytest.raises(InputError, match="POINTS: file ends early \\(truncated\\?\\)"):
        load_mesh(_write(tmp_path, "cut.vtk", cut))


def test_truncated_and_malformed_vtp(tmp_path):
    data = (FIXTURES / "cube_appended_raw.vtp").read_bytes()
    with pytest.raises(InputError, match=r"beyond the appended data \(truncated\?\)"):
        load_mesh(_write(tmp_path, "cut.vtp", data[:-300]))
    with pytest.raises(InputError, match=r"appended data ends early \(truncated\?\)"):
        load_mesh(_write(tmp_path, "cut2.vtp", data[:-60]))
    with pytest.raises(InputError, match="not a readable VTP mesh: not valid XML"):
        load_mesh(_write(tmp_path, "bad.vtp", "<VTKFile type='PolyData'><PolyData>"))
    with pytest.raises(InputError, match="only PolyData is supported, got type='UnstructuredGrid'"):
        load_mesh(_write(tmp_path, "grid.vtp", "<VTKFile type='UnstructuredGrid'/>"))


def test_missing_empty_and_unknown_files(tmp_path):
    with pytest.raises(InputError, match="nothere.stl: mesh file not found"):
        load_mesh(tmp_path / "nothere.stl")
    with pytest.raises(InputError, match="mesh file is empty"):
        load_mesh(_write(tmp_path, "empty.ply", ""))
    with pytest.raises(InputError, match=r"unsupported mesh type '.off'; expected one of .stl"):
        load_mesh(_write(tmp_path, "a.off", "OFF\n"))
    with pytest.raises(InputError, match="mesh scale must be a positive number, got 0"):
        load_mesh(FIXTURES / "cube_ascii_42.vtk", scale=0)
    with pytest.raises(InputError, match="not a readable PLY mesh"):
        load_mesh(_write(tmp_path, "junk.ply", b"\x00\x01garbage" * 10))


def test_obj_keeps_vertices_with_face_normals(tmp_path):
    # A square (two triangles as one quad) and a triangle given with negative (relative) indices,
    # in the forms v, v/vt, v//vn and v/vt/vn.  Per-face normals must not split vertices.
    text = """# test
o square
v 0 0 0
v 1 0 0
v 1 1 0
v 0 1 0
vt 0 0
vn 0 0 1
vn 0 0 -1
f 1//1 2//1 3//1 4//1
v 5 5 5
f -1/1/2 1/1 2
l 1 2
"""
    mesh = load_mesh(_write(tmp_path, "square.obj", text))
    np.testing.assert_array_equal(mesh.vertices, [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [5, 5, 5]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [4, 0, 1]])


def test_obj_errors(tmp_path):
    with pytest.raises(InputError, match="line 2: malformed face"):
        load_mesh(_write(tmp_path, "a.obj", "v 0 0 0\nf 1 2 x\n"))
    with pytest.raises(InputError, match="no vertices"):
        load_mesh(_write(tmp_path, "b.obj", "# nothing\n"))
    with pytest.raises(InputError, match=r"faces index vertices outside 0..2"):
        load_mesh(_write(tmp_path, "c.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"))


def test_stl_merges_identical_corners_only(tmp_path):
    # Two triangles sharing an edge (4 distinct corners) and a third whose corner differs from
    # (1, 1, 0) by one float32 step: STL keeps a private copy per corner; exact duplicates merge.
    eps = np.nextafter(np.float32(1), np.float32(2))
    text = f"""solid t
facet normal 0 0 1
 outer loop
  vertex 0 0 0
  vertex 1 0 0
  vertex 1 1 0
 endloop
endfacet
facet normal 0 0 1
 outer loop
  vertex 0 0 0
  vertex 1 1 0
  vertex 0 1 0
 endloop
endfacet
facet normal 0 0 1
 outer loop
  vertex 0 0 0
  vertex {float(eps)!r} 1 0
  vertex 0 1 0
 endloop
endfacet
endsolid t
"""
    mesh = load_mesh(_write(tmp_path, "t.stl", text))
    assert mesh.vertices.shape == (5, 3)
    np.testing.assert_array_equal(mesh.vertices[:4], [[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(mesh.faces, [[0, 1, 2], [0, 2, 3], [0, 4, 3]])


def test_ply_quads_and_vertex_order(tmp_path):
    text = """ply
format ascii 1.0
element vertex 5
property float x
property float y
property float z
element face 2
property list uchar int vertex_indices
end_header
0 0 0
1 0 0
1 1 0
0 1 0
0 0 0
4 0 1 2 3
3 3 2 4
"""
    mesh = load_mesh(_write(tmp_path, "q.ply", text))
    # The repeated vertex 4 (== vertex 0) is kept: PLY files are not merged.
    assert mesh.vertices.shape == (5, 3)
    # trimesh triangulates files with mixed polygon sizes itself (triangles first); the
    # triangles and their winding are what matter.
    assert _oriented(mesh.faces) == _oriented([[0, 1, 2], [0, 2, 3], [3, 2, 4]])


def _oriented(faces) -> set:
    """Triangles as a set, each rotated to start at its smallest index (winding kept)."""
    out = set()
    for f in np.asarray(faces).tolist():
        k = f.index(min(f))
        out.add(tuple(f[k:] + f[:k]))
    return out


# ------------------------------------------------------------------------------------------
# Real meshes (../shared/data/meshes)

# (points, triangles, sum of vertices, sum of faces weighted by (1, 7, 13)): values from VTK 9.7.2
# (vtkPolyDataReader + vtkTriangleFilter) on the same files; our vertices and triangles were
# identical to VTK's, element by element.
REAL_VTK = {
    "sksurgery_liver/liver.vtk": (10012, 20000, (-593251.7969, -1926641.8794, -2850275.5798), 2105056089),
    "sksurgery_liver/portal_vein.vtk": (4994, 9980, (-284646.4475, -940060.3442, -1426445.9948), 524245669),
    "sksurgery_liver/hepatic_veins.vtk": (7302, 14600, (-425221.1345, -1234424.7197, -1945887.5521), 1121749164),
    "sksurgery_liver/arteries.vtk": (7016, 14028, (-166087.6714, -1245786.8922, -2062909.4082), 1034469658),
    "sksurgery_liver/gastric_vein.vtk": (1045, 2086, (2010.7866, -183172.7303, -282601.2057), 23122145),
    "sksurgery_liver/biliary_tract.vtk": (471, 938, (-22129.7901, -89138.66, -142087.9581), 4646138),
    "sksurgery_liver/liver_tumours.vtk": (2028, 4052, (-67617.602, -445589.4044, -547665.6187), 86494350),
    "sksurgery_liver/liver_cysts.vtk": (4750, 9408, (-311007.019, -1002099.3955, -1218923.3862), 469888668),
    "sksurgery_liver/gallbladder.vtk": (1467, 2930, (-116303.9849, -316018.0312, -451399.6332), 45324599),
    # Version 4.2 files with METADATA blocks; tumors.vtk also has CELL_DATA with a FIELD.
    "sksurgery_kidney/kidney.vtk": (8905, 17794, (-158802.5257, -745145.7344, -7812367.1897), 1661836400),
    "sksurgery_kidney/tumors.vtk": (4943, 10000, (-51984.9318, -382499.4751, -4243511.8528), 516217640),
}


@pytest.mark.parametrize("name", sorted(REAL_VTK))
def test_real_vtk_meshes_match_vtk(shared_data, name):
    n_points, n_triangles, vertex_sum, face_hash = REAL_VTK[name]
    mesh = load_mesh(shared_data / "meshes" / name)
    assert mesh.vertices.shape == (n_points, 3)
    assert mesh.faces.shape == (n_triangles, 3)
    np.testing.assert_allclose(mesh.vertices.sum(axis=0), vertex_sum, rtol=0, atol=1e-3)
    assert int((mesh.faces.astype(np.int64) * np.array([1, 7, 13])).sum()) == face_hash


def _obj_counts(path: Path) -> tuple[int, int, list[float]]:
    lines = path.read_text().splitlines()
    v = [ln for ln in lines if ln.startswith("v ")]
    f = [ln for ln in lines if ln.startswith("f ")]
    return len(v), len(f), [float(x) for x in v[0].split()[1:4]]


@pytest.mark.parametrize("name", ["L1", "L2", "L3", "L4", "L5", "S1"])
def test_real_spine_obj_in_metres(shared_data, name):
    path = shared_data / "meshes" / "spine_visible_human" / f"{name}_Schrumpfverpacken.obj"
    n_v, n_f, first = _obj_counts(path)
    mesh = load_mesh(path, scale=1000.0)
    # All faces are triangles; per-face normals do not split the shared vertices.
    assert mesh.vertices.shape == (n_v, 3) and mesh.faces.shape == (n_f, 3)
    np.testing.assert_allclose(mesh.vertices[0], np.array(first) * 1000.0, rtol=1e-15)
    extent = np.ptp(mesh.vertices, axis=0)
    assert np.all((extent > 30.0) & (extent < 200.0)), extent  # a vertebra or the sacrum, in mm


def test_real_pelvis_and_misc_meshes(shared_data):
    base = shared_data / "meshes"
    pelvis = load_mesh(base / "spine_visible_human" / "Pelvis.obj", scale=1000.0)
    assert pelvis.faces.shape == (27432, 3)
    fiducial = load_mesh(base / "sksurgery_misc" / "Fiducial.stl")
    # Binary STL: 580 triangles with 1740 corners, of which 292 distinct positions.
    assert fiducial.faces.shape == (580, 3) and fiducial.vertices.shape == (292, 3)
    tumour = load_mesh(base / "sksurgery_misc" / "Tumor.ply")
    assert tumour.vertices.shape == (4943, 3) and tumour.faces.shape == (10000, 3)
    # liver.ply has per-face texture coordinates and colours: vertices must not be split.
    liver = load_mesh(base / "sksurgery_misc" / "liver.ply")
    assert liver.vertices.shape == (2002, 3) and liver.faces.shape == (4000, 3)
    for mesh in (pelvis, fiducial, tumour, liver):
        assert np.all(np.isfinite(mesh.vertices))
        assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
