"""The phantom on the table: torso, patient-reference board on a post, internal anatomy, needle plan.

Everything is in the CT frame (LPS, mm): x towards the patient's left, y posterior (down, towards
the table), z superior.  The patient lies supine; the camera looks from anterior (-y).

Contents (all deterministic functions of the seed):

- torso: a rounded, slightly irregular super-elliptic body (about 330 x 200 x 560 mm) whose flat
  back rests on the table top at y = ``TABLE_TOP_Y``; cylindrical texture coordinates.
- reference board: ChArUco 7 x 5 squares of 30 mm, 22 mm DICT_5X5_100 markers (210 x 150 mm),
  printed on a plate with a 15 mm white margin, on a post over the left upper abdomen, tilted
  slightly.  Its pose ``ct_from_reference`` is the exact registration.
- liver: a smooth, wedge-like deformed ellipsoid (5120 triangles) in the right upper abdomen;
  tumour: a 20 mm slightly irregular sphere inside it; vessel: a 9 mm tube along a curve that
  passes over the tumour, so that the straight anterior approach is blocked.
- needle path: from a skin entry point to the tumour centre, chosen among candidate directions
  as the shortest that keeps clear of the vessel and the board.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.constants import SynthSettings
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.synth import meshes
from ar_guide.synth.meshes import Mesh
from ar_guide.synth.segments import segment_polyline_distance

#: The table top (mm, CT y); the torso's back is flattened onto it.
TABLE_TOP_Y = 95.0
#: Half length of the torso along z (mm) and the radius of its rounded ends.
TORSO_HALF_LENGTH = 280.0
TORSO_END_RADIUS = 60.0
#: Super-ellipse exponent of the cross-section (2 = ellipse; larger is boxier, like a trunk).
TORSO_EXPONENT = 2.4

#: The patient reference: a ChArUco board (what scene.yaml's ``reference`` says).
BOARD_SQUARES = (7, 5)
BOARD_SQUARE_MM = 30.0
BOARD_MARKER_MM = 22.0
BOARD_DICTIONARY = "DICT_5X5_100"
#: White margin of the printed plate around the squares, and the plate's thickness (mm).
PLATE_MARGIN_MM = 15.0
PLATE_THICKNESS_MM = 6.0

TUMOUR_RADIUS_MM = 10.0
VESSEL_RADIUS_MM = 4.5
NEEDLE_DIAMETER_MM = 1.2


@dataclasses.dataclass(frozen=True)
class TorsoShape:
    """Parameters of the torso surface (seeded irregularity)."""

    harmonics: tuple  # ((m_theta, k_z, amplitude, phase), ...)

    def width(self, z):
        """Half width (mm, along x) at height z: the chest is a little wider than the abdomen."""
        return 158.0 + 10.0 * np.cos(np.pi * np.asarray(z) / 640.0)

    def depth(self, z):
        """Half depth (mm, along y) at z, with a gentle belly bulge around z = 0."""
        z = np.asarray(z)
        return 100.0 + 9.0 * np.exp(-(((z - 10.0) / 170.0) ** 2))

    def radius(self, theta, z):
        """Radius (mm) of the unflattened cross-section at angle theta (from +x towards +y)."""
        theta = np.asarray(theta, dtype=np.float64)
        z = np.asarray(z, dtype=np.float64)
        a, b, p = self.width(z), self.depth(z), TORSO_EXPONENT
        c = np.abs(np.cos(theta)) / a
        s = np.abs(np.sin(theta)) / b
        r = (c ** p + s ** p) ** (-1.0 / p)
        wobble = np.zeros(np.broadcast(theta, z).shape)
        for m, k, amp, phase in self.harmonics:
            wobble = wobble + amp * np.sin(m * theta + k * z / TORSO_HALF_LENGTH + phase)
        return r * (1.0 + wobble)

    @staticmethod
    def end_scale(z):
        """Radial scale that rounds the torso's ends (1 in the middle, 0 at the tips)."""
        z = np.abs(np.asarray(z, dtype=np.float64))
        start = TORSO_HALF_LENGTH - TORSO_END_RADIUS
        u = np.clip((z - start) / TORSO_END_RADIUS, 0.0, 1.0)
        return np.sqrt(np.clip(1.0 - u * u, 0.0, 1.0))

    def contains(self, points_ct: np.ndarray) -> np.ndarray:
        """(N,) bool: which (N, 3) CT points (mm) lie inside the torso."""
        p = np.asarray(points_ct, dtype=np.float64).reshape(-1, 3)
        theta = np.arctan2(p[:, 1], p[:, 0])
        rho = np.hypot(p[:, 0], p[:, 1])
        inside_length = np.abs(p[:, 2]) < TORSO_HALF_LENGTH
        inside_section = rho < self.end_scale(p[:, 2]) * self.radius(theta, p[:, 2])
        return inside_length & inside_section & (p[:, 1] < TABLE_TOP_Y)

    def exit_points(self, start_ct, directions, step_mm: float = 1.0, max_mm: float = 1000.0) -> np.ndarray:
        """(N, 3) points where rays from an inside point along (N, 3) directions leave the torso.

        March in ``step_mm`` steps to the first outside sample, then bisect to 1e-6 mm.
        """
        start = np.asarray(start_ct, dtype=np.float64).reshape(3)
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        d = d / np.linalg.norm(d, axis=1, keepdims=True)
        if not self.contains(start[None])[0]:
            raise ValueError("exit_points: the start point is outside the torso")
        n = d.shape[0]
        lo = np.zeros(n)
        hi = np.full(n, np.nan)
        s = 0.0
        while np.any(np.isnan(hi)):
            s += step_mm
            if s > max_mm:
                raise ValueError("exit_points: a ray never leaves the torso")
            todo = np.isnan(hi)
            out = ~self.contains(start + s * d[todo])
            idx = np.flatnonzero(todo)
            hi[idx[out]] = s
            lo[idx[~out]] = s
        while np.max(hi - lo) > 1e-6:
            mid = 0.5 * (lo + hi)
            inside = self.contains(start + mid[:, None] * d)
            lo = np.where(inside, mid, lo)
            hi = np.where(inside, hi, mid)
        return start + hi[:, None] * d


@dataclasses.dataclass(frozen=True, eq=False)
class Phantom:
    """The synthetic world.  Meshes are in the CT frame (LPS, mm) unless named otherwise.

    ct_from_reference : (4, 4) float64, the board frame (OpenCV ChArUco frame: origin at the top-left
        outer corner of the squares, x along the 7 squares, y along the 5, z into the plate) in CT
    board_markers_reference : {id: (4, 3)} marker corners (mm, reference frame)
    board_corners_reference : (24, 3) ChArUco chessboard corners (mm, reference frame)
    vessel_centreline_ct : (K, 3) mm
    """

    torso_shape: TorsoShape
    skin: Mesh
    board_print: Mesh
    plate: Mesh
    post: Mesh
    liver: Mesh
    tumour: Mesh
    vessel: Mesh
    tumour_centre_ct: np.ndarray
    tumour_radius_mm: float
    vessel_centreline_ct: np.ndarray
    vessel_radius_mm: float
    entry_ct: np.ndarray
    ct_from_reference: np.ndarray
    board_markers_reference: dict
    board_corners_reference: np.ndarray

    @property
    def reference_from_ct(self) -> np.ndarray:
        from ar_guide.geometry.transforms import invert_transform

        return invert_transform(self.ct_from_reference)

    @property
    def board_size_mm(self) -> tuple[float, float]:
        return (BOARD_SQUARES[0] * BOARD_SQUARE_MM, BOARD_SQUARES[1] * BOARD_SQUARE_MM)


def make_charuco_board():
    """The reference board as a cv2.aruco.CharucoBoard (through the adapter)."""
    from ar_guide.tracking.aruco import make_charuco_board as make

    return make(BOARD_SQUARES, BOARD_SQUARE_MM, BOARD_MARKER_MM, BOARD_DICTIONARY)


def make_phantom(seed: int, settings: SynthSettings = SynthSettings()) -> Phantom:
    """Build the phantom for ``seed`` (only the small irregularities depend on it)."""
    from ar_guide.tracking.aruco import charuco_layout

    rng = np.random.default_rng([int(seed), 101])
    shape = TorsoShape(tuple(
        (int(m), float(k), float(a), float(ph))
        for m, k, a, ph in zip(rng.integers(2, 6, 4), rng.uniform(-3.0, 3.0, 4),
                               rng.uniform(0.004, 0.010, 4), rng.uniform(0, 2 * np.pi, 4))
    ))
    skin = _torso_mesh(shape)

    ct_from_reference = _board_pose()
    markers, corners = charuco_layout(make_charuco_board())
    board_print, plate, post = _board_meshes(shape, ct_from_reference)

    liver_centre = np.array([-62.0, 2.0, 135.0])
    liver = _liver_mesh(rng, liver_centre)
    tumour_centre = liver_centre + np.array([10.0, -24.0, -5.0])
    tumour = _blob(rng, tumour_centre, (TUMOUR_RADIUS_MM,) * 3, subdivisions=3, roughness=0.03)
    # The vessel crosses anterior to the tumour (gap to its surface ~5 mm), so the straight
    # anterior approach would hit it and the planner has to angle the needle.
    t = tumour_centre
    offsets = np.array([[70.0, 8.0, -45.0], [30.0, -14.0, -12.0], [0.0, -19.5, 3.0],
                        [-30.0, -14.0, 20.0], [-62.0, 2.0, 42.0]])
    centreline = catmull_rom(t + offsets, samples_per_segment=24)
    vessel = meshes.tube(centreline, VESSEL_RADIUS_MM, sides=16)

    entry = plan_entry(shape, tumour_centre, centreline, VESSEL_RADIUS_MM, ct_from_reference, settings)
    return Phantom(shape, skin, board_print, plate, post, liver, tumour, vessel, tumour_centre,
                   TUMOUR_RADIUS_MM, centreline, VESSEL_RADIUS_MM, entry, ct_from_reference,
                   markers, corners)


def _torso_mesh(shape: TorsoShape, n_theta: int = 144, n_mid: int = 90, n_end: int = 14) -> Mesh:
    # Rows: the rounded foot end (profile angle), the straight middle, the rounded head end.
    start = TORSO_HALF_LENGTH - TORSO_END_RADIUS
    beta = np.linspace(0.0, np.radians(84.0), n_end)[1:]
    z_rows = np.concatenate([(-start - TORSO_END_RADIUS * np.sin(beta))[::-1],
                             np.linspace(-start, start, n_mid),
                             start + TORSO_END_RADIUS * np.sin(beta)])
    # Columns start at theta = pi/2 (straight down onto the table) so the texture seam is hidden.
    theta = np.pi / 2 + np.linspace(0.0, 2 * np.pi, n_theta + 1)
    tt, zz = np.meshgrid(theta, z_rows)
    r = shape.end_scale(zz) * shape.radius(tt, zz)
    x = r * np.cos(tt)
    y = np.minimum(r * np.sin(tt), TABLE_TOP_Y)
    vertices = np.stack([x, y, zz], -1).reshape(-1, 3)
    uv = np.stack([(tt - np.pi / 2) / (2 * np.pi),
                   (zz + TORSO_HALF_LENGTH) / (2 * TORSO_HALF_LENGTH)], -1).reshape(-1, 2)
    rows, cols = len(z_rows), n_theta + 1
    faces = meshes.grid_faces(rows, cols)
    # Close the ends with a pole vertex each; the seam column duplicates (same position).
    poles = np.array([[0.0, min(0.0, TABLE_TOP_Y), z_rows[0] - 1.0], [0.0, 0.0, z_rows[-1] + 1.0]])
    base = vertices.shape[0]
    vertices = np.vstack([vertices, poles])
    uv = np.vstack([uv, [[0.5, 0.0], [0.5, 1.0]]])
    ring0 = np.arange(cols - 1)
    ring1 = np.arange((rows - 1) * cols, rows * cols - 1)
    faces = np.vstack([faces, meshes.fan_cap(ring0, base, reverse=False),
                       meshes.fan_cap(ring1, base + 1, reverse=True)])
    mesh = meshes.make_mesh(vertices, faces, uv)
    return meshes.orient_outwards(mesh)


def skin_uv(shape: TorsoShape, point_ct: np.ndarray) -> tuple[float, float]:
    """Texture coordinates of a point on the torso surface (as :func:`_torso_mesh` assigns)."""
    theta = np.arctan2(point_ct[1], point_ct[0])
    u = ((theta - np.pi / 2) / (2 * np.pi)) % 1.0
    v = (point_ct[2] + TORSO_HALF_LENGTH) / (2 * TORSO_HALF_LENGTH)
    return float(u), float(v)


def _board_pose() -> np.ndarray:
    """ct_from_reference: the printed surface over the left upper abdomen, tilted ~12 degrees."""
    # Untilted: board x along CT +x (towards the patient's left), y along CT -z (towards the
    # feet), z along CT +y (into the plate, posterior): the printed face looks anterior.
    base = np.column_stack([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    # Tilted towards the feet and the patient's right, where the operator stands.
    tilt = rotation_from_rotvec(np.radians([10.0, 0.0, -6.0]))
    rotation = tilt @ base
    centre_ct = np.array([88.0, -160.0, 40.0])
    w, h = BOARD_SQUARES[0] * BOARD_SQUARE_MM, BOARD_SQUARES[1] * BOARD_SQUARE_MM
    origin = centre_ct - rotation @ np.array([w / 2, h / 2, 0.0])
    return make_transform(rotation, origin)


def _board_meshes(shape: TorsoShape, ct_from_reference: np.ndarray) -> tuple[Mesh, Mesh, Mesh]:
    """The printed face (textured quad, z = 0), the plate body behind it and the post to the skin."""
    w, h = BOARD_SQUARES[0] * BOARD_SQUARE_MM, BOARD_SQUARES[1] * BOARD_SQUARE_MM
    m = PLATE_MARGIN_MM
    corners = np.array([[-m, -m, 0.0], [w + m, -m, 0.0], [w + m, h + m, 0.0], [-m, h + m, 0.0]])
    uv = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    # Facing -z (towards the viewer): (0, 2, 1) winds counter-clockwise seen from -z.
    quad = Mesh(corners, np.array([[0, 2, 1], [0, 3, 2]], np.int32), np.tile([0.0, 0.0, -1.0], (4, 1)), uv)
    # Plate body: its top 0.2 mm behind the print so the two never fight for depth.
    body = meshes.box((w + 2 * m, h + 2 * m, PLATE_THICKNESS_MM))
    body = body.transformed(make_transform(np.eye(3), [w / 2, h / 2, 0.2 + PLATE_THICKNESS_MM / 2]))
    # Post from the plate's back to 5 mm under the skin, along the plate normal.
    back_centre_ref = np.array([w / 2, h / 2, 0.2 + PLATE_THICKNESS_MM])
    back_ct = transform_points(ct_from_reference, back_centre_ref)[0]
    normal_ct = ct_from_reference[:3, 2]
    length = _distance_to_skin(shape, back_ct, normal_ct) + 5.0
    post = meshes.cylinder(8.0, length, sides=20)
    foot = meshes.cylinder(24.0, 6.0, sides=32).transformed(make_transform(np.eye(3), [0, 0, length - 9.0]))
    post = meshes.merge([post, foot]).transformed(make_transform(np.eye(3), back_centre_ref))
    return (quad.transformed(ct_from_reference), body.transformed(ct_from_reference),
            post.transformed(ct_from_reference))


def _distance_to_skin(shape: TorsoShape, start_ct, direction, step_mm: float = 0.5) -> float:
    d = np.asarray(direction, dtype=np.float64)
    d /= np.linalg.norm(d)
    s = 0.0
    while not shape.contains((np.asarray(start_ct) + s * d)[None])[0]:
        s += step_mm
        if s > 1000.0:
            raise ValueError("the board post does not reach the torso")
    return s


def _blob(rng, centre, semi_axes, subdivisions: int, roughness: float) -> Mesh:
    """A smooth irregular ellipsoid: unit sphere, low-order radial harmonics, then scaling."""
    v, f = meshes.icosphere(subdivisions)
    scale = 1.0 + _radial_field(rng, v, roughness)
    v = v * scale[:, None] * np.asarray(semi_axes, dtype=np.float64) + centre
    return meshes.orient_outwards(meshes.make_mesh(v, f))


def _radial_field(rng, unit_dirs: np.ndarray, amplitude: float, terms: int = 6) -> np.ndarray:
    """Sum of smooth ``sin(k d . a + phase)`` waves over directions (low frequency, seeded)."""
    field = np.zeros(unit_dirs.shape[0])
    for _ in range(terms):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        k = rng.uniform(1.0, 2.5)
        field += np.sin(k * unit_dirs @ axis * np.pi / 2 + rng.uniform(0, 2 * np.pi))
    return amplitude * field / np.sqrt(terms)


def _liver_mesh(rng, centre: np.ndarray) -> Mesh:
    """A liver-like blob: thick on the patient's right, thinning to a wedge towards the left."""
    v, f = meshes.icosphere(4)  # 5120 triangles
    v = v * (1.0 + _radial_field(rng, v, 0.05))[:, None]
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    # Thinner (in y and z) towards +x (the left lobe), a flatter posterior face.
    taper = 1.0 - 0.35 * (x + 1.0) / 2.0
    y = y * taper
    z = z * (1.0 - 0.15 * (x + 1.0) / 2.0)
    y = np.where(y > 0, y * 0.8, y)
    v = np.column_stack([x * 88.0, y * 64.0, z * 72.0])
    # A gentle bend so the dome follows the diaphragm.
    v[:, 1] += 0.0018 * (v[:, 0] ** 2) - 8.0
    return meshes.orient_outwards(meshes.make_mesh(v + centre, f))


def catmull_rom(points: np.ndarray, samples_per_segment: int = 16) -> np.ndarray:
    """Uniform Catmull-Rom spline through (K, 3) points (ends extrapolated): (M, 3)."""
    p = np.asarray(points, dtype=np.float64)
    ext = np.vstack([2 * p[0] - p[1], p, 2 * p[-1] - p[-2]])
    out = []
    s = np.linspace(0.0, 1.0, samples_per_segment, endpoint=False)[:, None]
    for i in range(1, len(ext) - 2):
        p0, p1, p2, p3 = ext[i - 1], ext[i], ext[i + 1], ext[i + 2]
        out.append(0.5 * ((2 * p1) + (-p0 + p2) * s + (2 * p0 - 5 * p1 + 4 * p2 - p3) * s ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * s ** 3))
    out.append(p[-1][None])
    return np.vstack(out)


def plan_entry(shape: TorsoShape, target_ct: np.ndarray, vessel_centreline_ct: np.ndarray,
               vessel_radius_mm: float, ct_from_reference: np.ndarray,
               settings: SynthSettings = SynthSettings()) -> np.ndarray:
    """Skin entry point (CT mm) of the shortest safe straight path to ``target_ct``.

    Candidates: directions within ``settings.needle_max_tilt_deg`` of anterior (-y) on a fixed
    grid.  Safe: the path keeps ``settings.needle_vessel_clearance_mm`` from the vessel wall, and
    its prolongation 200 mm out of the skin (needle hub, hand) passes no closer than
    ``settings.needle_board_clearance_mm`` to the plate.
    """
    from ar_guide.geometry.transforms import invert_transform

    reference_from_ct = invert_transform(ct_from_reference)
    w, h = BOARD_SQUARES[0] * BOARD_SQUARE_MM, BOARD_SQUARES[1] * BOARD_SQUARE_MM
    lo = np.array([-PLATE_MARGIN_MM, -PLATE_MARGIN_MM]) - settings.needle_board_clearance_mm
    hi = np.array([w + PLATE_MARGIN_MM, h + PLATE_MARGIN_MM]) + settings.needle_board_clearance_mm
    max_tilt = np.radians(settings.needle_max_tilt_deg)
    tilt, azimuth = np.meshgrid(np.linspace(0.0, max_tilt, 16), np.linspace(0.0, 2 * np.pi, 36, endpoint=False))
    tilt, azimuth = tilt.ravel(), azimuth.ravel()
    directions = np.column_stack([np.sin(tilt) * np.cos(azimuth), -np.cos(tilt), np.sin(tilt) * np.sin(azimuth)])
    entries = shape.exit_points(target_ct, directions)
    best = None
    for d, entry in zip(directions, entries):
        clearance = segment_polyline_distance(entry, target_ct, vessel_centreline_ct) - vessel_radius_mm
        if clearance < settings.needle_vessel_clearance_mm:
            continue
        outside = transform_points(reference_from_ct, entry + np.linspace(0.0, 200.0, 81)[:, None] * d)
        near_plate = (np.all((outside[:, :2] >= lo) & (outside[:, :2] <= hi), axis=1)
                      & (np.abs(outside[:, 2]) < settings.needle_board_clearance_mm + PLATE_THICKNESS_MM))
        if np.any(near_plate):
            continue
        length = float(np.linalg.norm(entry - target_ct))
        if best is None or length < best[0] - 1e-9:
            best = (length, entry)
    if best is None:
        raise ValueError("no safe needle path found")
    return best[1]


def hand_capsules() -> list[tuple[np.ndarray, np.ndarray, float]]:
    """The occluding hand as capsules (p0, p1, radius), hand frame (mm): palm centre at the
    origin, fingers along +x, thumb towards -y, back of the hand towards +z.  An adult hand:
    palm about 85 x 80 mm, fingers 70-85 mm."""
    capsules = []
    # Palm: four parallel capsules (one per metacarpal), slightly flattened by their spacing.
    for y in (-27.0, -9.0, 9.0, 27.0):
        capsules.append((np.array([-40.0, y, 0.0]), np.array([38.0, y * 0.95, 0.0]), 12.0))
    # Fingers (index to little finger), two phalanx capsules each, gently curled towards -z.
    lengths = ((46.0, 40.0), (50.0, 44.0), (47.0, 41.0), (38.0, 33.0))
    for (l1, l2), y in zip(lengths, (-26.0, -8.5, 9.0, 26.0)):
        base = np.array([42.0, y, 0.0])
        mid = base + l1 * np.array([np.cos(np.radians(8)), 0.02 * np.sign(y), -np.sin(np.radians(8))])
        tip = mid + l2 * np.array([np.cos(np.radians(25)), 0.03 * np.sign(y), -np.sin(np.radians(25))])
        capsules.append((base, mid, 9.0))
        capsules.append((mid, tip, 8.0))
    # Thumb: from the heel of the palm, out to the side and forwards.
    t0 = np.array([-25.0, -38.0, -4.0])
    t1 = t0 + np.array([30.0, -22.0, -6.0])
    t2 = t1 + np.array([30.0, -8.0, -8.0])
    capsules.append((t0, t1, 11.0))
    capsules.append((t1, t2, 9.0))
    return capsules


def hand_mesh() -> Mesh:
    """Renderable hand (hand frame), the union of :func:`hand_capsules`."""
    return meshes.merge([meshes.capsule(p0, p1, r, sides=20, rings=5) for p0, p1, r in hand_capsules()])
