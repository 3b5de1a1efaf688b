"""Triangle-mesh primitives for the synthetic world (pure numpy, no I/O).

Every mesh is a :class:`Mesh`: vertices in mm in the frame its name says, outward-facing
counter-clockwise triangles, per-vertex normals and optional texture coordinates (u right, v down
the texture image: v = 0 is the image's first row).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.geometry.transforms import transform_points


@dataclasses.dataclass(frozen=True, eq=False)
class Mesh:
    """vertices : (N, 3) float64 mm; faces : (M, 3) int32; normals : (N, 3) float64 unit;
    uv : (N, 2) float64 texture coordinates or None."""

    vertices: np.ndarray
    faces: np.ndarray
    normals: np.ndarray
    uv: np.ndarray | None = None

    def transformed(self, a_from_b: np.ndarray) -> "Mesh":
        """The mesh mapped by a rigid 4x4 transform (normals rotated)."""
        return Mesh(transform_points(a_from_b, self.vertices), self.faces,
                    self.normals @ a_from_b[:3, :3].T, self.uv)


def make_mesh(vertices, faces, uv=None) -> Mesh:
    """A :class:`Mesh` with smooth (area-weighted) vertex normals."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int32)
    return Mesh(v, f, vertex_normals(v, f), None if uv is None else np.asarray(uv, dtype=np.float64))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals: sum of the adjacent faces' area vectors, normalised."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    face_area_vectors = np.cross(b - a, c - a)
    n = np.zeros_like(vertices)
    for i in range(3):
        np.add.at(n, faces[:, i], face_area_vectors)
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.where(length > 0, length, 1.0)


def merge(meshes: list[Mesh]) -> Mesh:
    """One mesh holding all of ``meshes`` (uv kept only if every part has it)."""
    offsets = np.cumsum([0] + [m.vertices.shape[0] for m in meshes[:-1]])
    uv = None
    if all(m.uv is not None for m in meshes):
        uv = np.vstack([m.uv for m in meshes])
    return Mesh(np.vstack([m.vertices for m in meshes]),
                np.vstack([m.faces + o for m, o in zip(meshes, offsets)]).astype(np.int32),
                np.vstack([m.normals for m in meshes]), uv)


def icosphere(subdivisions: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit icosphere: (N, 3) vertices, (20 * 4**subdivisions, 3) faces."""
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=int(subdivisions), radius=1.0)
    return np.asarray(sphere.vertices, dtype=np.float64), np.asarray(sphere.faces, dtype=np.int32)


def grid_faces(rows: int, cols: int, wrap_cols: bool = False) -> np.ndarray:
    """Triangles of a rows x cols vertex grid (row-major); ``wrap_cols`` closes each row."""
    c_end = cols if wrap_cols else cols - 1
    i, j = np.meshgrid(np.arange(rows - 1), np.arange(c_end), indexing="ij")
    a = i * cols + j
    b = i * cols + (j + 1) % cols
    c = a + cols
    d = b + cols
    return np.stack([np.stack([a, c, b], -1), np.stack([b, c, d], -1)], axis=2).reshape(-1, 3).astype(np.int32)


def fan_cap(ring: np.ndarray, centre_index: int, reverse: bool) -> np.ndarray:
    """Triangle fan closing a ring of vertex indices around a centre vertex."""
    nxt = np.roll(ring, -1)
    centre = np.full_like(ring, centre_index)
    tri = np.stack([centre, ring, nxt], -1) if not reverse else np.stack([centre, nxt, ring], -1)
    return tri.astype(np.int32)


def tube(centreline: np.ndarray, radius: float, sides: int = 16) -> Mesh:
    """Closed tube of constant ``radius`` around a (K, 3) polyline (parallel-transport frames).

    Reference for the frames: Bishop, "There is more than one way to frame a curve" (1975).
    """
    c = np.asarray(centreline, dtype=np.float64)
    k = c.shape[0]
    tangents = np.gradient(c, axis=0)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    helper = np.array([0.0, 0.0, 1.0]) if abs(tangents[0, 2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    n = np.cross(tangents[0], helper)
    n /= np.linalg.norm(n)
    normals = np.empty_like(c)
    for i in range(k):
        n = n - tangents[i] * float(n @ tangents[i])
        n /= np.linalg.norm(n)
        normals[i] = n
    binormals = np.cross(tangents, normals)
    angles = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    # Rings counter-clockwise about the tangent; orient_outwards fixes the winding afterwards.
    ring = (np.cos(angles)[None, :, None] * normals[:, None, :]
            + np.sin(angles)[None, :, None] * binormals[:, None, :])
    vertices = (c[:, None, :] + radius * ring).reshape(-1, 3)
    vertices = np.vstack([vertices, c[0], c[-1]])
    start, end = k * sides, k * sides + 1
    faces = np.vstack([grid_faces(k, sides, wrap_cols=True),
                       fan_cap(np.arange(sides), start, reverse=False),
                       fan_cap(np.arange((k - 1) * sides, k * sides), end, reverse=True)])
    return orient_outwards(make_mesh(vertices, faces))


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Volume (mm^3) enclosed by a closed mesh; negative when its faces point inwards."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def orient_outwards(mesh: Mesh) -> Mesh:
    """Flip every face of a consistently wound closed mesh whose faces point inwards."""
    if signed_volume(mesh.vertices, mesh.faces) < 0:
        return make_mesh(mesh.vertices, mesh.faces[:, ::-1].copy(), mesh.uv)
    return mesh


def capsule(p0, p1, radius: float, sides: int = 16, rings: int = 4) -> Mesh:
    """Closed capsule: a cylinder from ``p0`` to ``p1`` (mm) with hemispherical ends."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    z = axis / length
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    # Profile from the p0 pole to the p1 pole: (axial position, ring radius).
    polar = np.linspace(0.0, np.pi / 2, rings + 1)
    profile = [(-radius * np.cos(a), radius * np.sin(a)) for a in polar[1:]]
    profile += [(length + radius * np.sin(a), radius * np.cos(a)) for a in polar[:-1]]
    angles = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    verts = []
    for axial, r in profile:
        for a in angles:
            verts.append(p0 + axial * z + r * (np.cos(a) * x + np.sin(a) * y))
    n_rings = len(profile)
    verts.append(p0 - radius * z)
    verts.append(p1 + radius * z)
    verts = np.array(verts)
    faces = grid_faces(n_rings, sides, wrap_cols=True)
    bottom, top = n_rings * sides, n_rings * sides + 1
    faces = np.vstack([faces, fan_cap(np.arange(sides), bottom, reverse=False),
                       fan_cap(np.arange((n_rings - 1) * sides, n_rings * sides), top, reverse=True)])
    return orient_outwards(make_mesh(verts, faces))


def box(size_xyz) -> Mesh:
    """Axis-aligned box centred at the origin, 24 vertices (flat faces), texture coordinates
    all (0, 0) (a box takes its colour from its material's tint)."""
    hx, hy, hz = (0.5 * float(s) for s in size_xyz)
    faces_def = [  # (normal, two in-plane axes)
        (np.array([0, 0, -1.0]), np.array([1.0, 0, 0]), np.array([0, 1.0, 0])),
        (np.array([0, 0, 1.0]), np.array([1.0, 0, 0]), np.array([0, -1.0, 0])),
        (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), np.array([0, 0, 1.0])),
        (np.array([-1.0, 0, 0]), np.array([0, -1.0, 0]), np.array([0, 0, 1.0])),
        (np.array([0, 1.0, 0]), np.array([-1.0, 0, 0]), np.array([0, 0, 1.0])),
        (np.array([0, -1.0, 0]), np.array([1.0, 0, 0]), np.array([0, 0, 1.0])),
    ]
    half = np.array([hx, hy, hz])
    verts, norms, uvs, faces = [], [], [], []
    for i, (n, ua, va) in enumerate(faces_def):
        centre = n * half
        du = ua * half
        dv = va * half
        quad = [centre - du - dv, centre + du - dv, centre + du + dv, centre - du + dv]
        verts.extend(quad)
        norms.extend([n] * 4)
        uvs.extend([(0.0, 0.0)] * 4)
        base = 4 * i
        tri = [(base, base + 1, base + 2), (base, base + 2, base + 3)]
        # Make the winding agree with the normal.
        a, b, c = quad[0], quad[1], quad[2]
        if float(np.cross(b - a, c - a) @ n) < 0:
            tri = [(t[0], t[2], t[1]) for t in tri]
        faces.extend(tri)
    return Mesh(np.array(verts), np.array(faces, dtype=np.int32), np.array(norms), np.array(uvs))


def cylinder(radius: float, height: float, sides: int = 24) -> Mesh:
    """Closed cylinder along +z from z = 0 to z = ``height``, smooth sides."""
    angles = np.linspace(0.0, 2.0 * np.pi, sides, endpoint=False)
    ring = np.column_stack([radius * np.cos(angles), radius * np.sin(angles)])
    bottom = np.column_stack([ring, np.zeros(sides)])
    top = np.column_stack([ring, np.full(sides, float(height))])
    verts = np.vstack([bottom, top, [[0, 0, 0]], [[0, 0, height]]])
    faces = grid_faces(2, sides, wrap_cols=True)
    faces = np.vstack([faces, fan_cap(np.arange(sides), 2 * sides, reverse=False),
                       fan_cap(np.arange(sides, 2 * sides), 2 * sides + 1, reverse=True)])
    return orient_outwards(make_mesh(verts, faces))


def quad(corners, uv=((0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0))) -> Mesh:
    """Flat quad from four (4, 3) corners in order around it; the normal follows the right-hand
    rule of that order."""
    c = np.asarray(corners, dtype=np.float64)
    n = np.cross(c[1] - c[0], c[3] - c[0])
    n /= np.linalg.norm(n)
    faces = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    return Mesh(c, faces, np.tile(n, (4, 1)), np.asarray(uv, dtype=np.float64))
