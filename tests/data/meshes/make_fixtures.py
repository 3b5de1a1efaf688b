"""Writes the small VTK / VTP fixtures in this folder with VTK itself (run once, by hand).

    python -m venv /tmp/vtkenv && /tmp/vtkenv/bin/pip install vtk
    /tmp/vtkenv/bin/python tests/data/meshes/make_fixtures.py

The files are written by VTK's own writers so that the reader in ar_guide/io/meshes.py is tested
against the real formats, not against our understanding of them.  Not run by the test suite (VTK is
a 100 MB dependency); the expected geometry is written out in tests/test_meshes.py.
"""

import os

import vtk

HERE = os.path.dirname(os.path.abspath(__file__))

# A unit cube scaled to 10 x 20 x 30 mm, corner at (1, 2, 3): five quads and two triangles (top).
CUBE_POINTS = [(1, 2, 3), (11, 2, 3), (11, 22, 3), (1, 22, 3),
               (1, 2, 33), (11, 2, 33), (11, 22, 33), (1, 22, 33)]
CUBE_POLYS = [(0, 3, 2, 1), (0, 1, 5, 4), (1, 2, 6, 5), (2, 3, 7, 6), (3, 0, 4, 7),
              (4, 5, 6), (4, 6, 7)]
# A strip of 6 points (4 triangles) and one of 5 points (3 triangles), in the z = 0 plane.
STRIP_POINTS = [(0, 0, 0), (0, 10, 0), (10, 0, 0), (10, 10, 0), (20, 0, 0), (20, 10, 0),
                (0, 20, 0), (0, 30, 0), (10, 20, 0), (10, 30, 0), (20, 20, 0)]
STRIPS = [(0, 1, 2, 3, 4, 5), (6, 7, 8, 9, 10)]


def cube() -> vtk.vtkPolyData:
    pd = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetDataTypeToFloat()
    for p in CUBE_POINTS:
        pts.InsertNextPoint(p)
    pd.SetPoints(pts)
    polys = vtk.vtkCellArray()
    for c in CUBE_POLYS:
        polys.InsertNextCell(len(c), c)
    pd.SetPolys(polys)
    # Cells the reader must skip: a vertex and a line.
    verts = vtk.vtkCellArray()
    verts.InsertNextCell(1, (0,))
    pd.SetVerts(verts)
    lines = vtk.vtkCellArray()
    lines.InsertNextCell(2, (0, 6))
    pd.SetLines(lines)
    # Attributes the reader must skip.
    normals = vtk.vtkFloatArray()
    normals.SetName("Normals")
    normals.SetNumberOfComponents(3)
    for p in CUBE_POINTS:
        normals.InsertNextTuple3(*p)
    pd.GetPointData().SetNormals(normals)
    scalars = vtk.vtkIntArray()
    scalars.SetName("label")
    for i in range(pd.GetNumberOfCells()):
        scalars.InsertNextValue(i)
    pd.GetCellData().SetScalars(scalars)
    field = vtk.vtkDoubleArray()
    field.SetName("origin_note")
    field.InsertNextValue(42.0)
    pd.GetFieldData().AddArray(field)
    return pd


def strips() -> vtk.vtkPolyData:
    pd = vtk.vtkPolyData()
    pts = vtk.vtkPoints()
    pts.SetDataTypeToDouble()
    for p in STRIP_POINTS:
        pts.InsertNextPoint(p)
    pd.SetPoints(pts)
    cells = vtk.vtkCellArray()
    for c in STRIPS:
        cells.InsertNextCell(len(c), c)
    pd.SetStrips(cells)
    return pd


def write_legacy(pd, name, binary, version):
    w = vtk.vtkPolyDataWriter()
    w.SetFileName(os.path.join(HERE, name))
    w.SetInputData(pd)
    if binary:
        w.SetFileTypeToBinary()
    else:
        w.SetFileTypeToASCII()
    w.SetFileVersion(version)
    assert w.Write() == 1, name


def write_xml(pd, name, mode, compressor=None, header64=False, encode=True):
    w = vtk.vtkXMLPolyDataWriter()
    w.SetFileName(os.path.join(HERE, name))
    w.SetInputData(pd)
    {"ascii": w.SetDataModeToAscii, "binary": w.SetDataModeToBinary,
     "appended": w.SetDataModeToAppended}[mode]()
    w.SetEncodeAppendedData(encode)
    if header64:
        w.SetHeaderTypeToUInt64()
    else:
        w.SetHeaderTypeToUInt32()
    if compressor is None:
        w.SetCompressorTypeToNone()
    elif compressor == "zlib":
        w.SetCompressorTypeToZLib()
        w.SetBlockSize(64)  # several blocks even for these small arrays
    elif compressor == "lzma":
        w.SetCompressorTypeToLZMA()
    elif compressor == "lz4":
        w.SetCompressorTypeToLZ4()
    assert w.Write() == 1, name


def main():
    c, s = cube(), strips()
    write_legacy(c, "cube_ascii_42.vtk", False, 42)
    write_legacy(c, "cube_binary_42.vtk", True, 42)
    write_legacy(c, "cube_ascii_51.vtk", False, 51)
    write_legacy(c, "cube_binary_51.vtk", True, 51)
    write_legacy(s, "strips_ascii_42.vtk", False, 42)
    write_legacy(s, "strips_binary_51.vtk", True, 51)
    write_xml(c, "cube_ascii.vtp", "ascii")
    write_xml(c, "cube_binary.vtp", "binary")
    write_xml(c, "cube_binary_uint64.vtp", "binary", header64=True)
    write_xml(c, "cube_binary_zlib.vtp", "binary", compressor="zlib")
    write_xml(c, "cube_appended_raw.vtp", "appended", encode=False)
    write_xml(c, "cube_appended_base64.vtp", "appended", encode=True)
    write_xml(c, "cube_appended_raw_zlib.vtp", "appended", compressor="zlib", encode=False,
              header64=True)
    write_xml(c, "cube_appended_lzma.vtp", "appended", compressor="lzma", encode=False)
    write_xml(c, "cube_binary_lz4.vtp", "binary", compressor="lz4")
    write_xml(s, "strips_binary.vtp", "binary")


if __name__ == "__main__":
    main()
