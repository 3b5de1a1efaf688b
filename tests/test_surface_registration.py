"""Surface refinement of a registration (ar_guide.registration.surface): ICP of traced points.

Protocol of the accuracy tests (issue 4, "Done when"): a seeded random true registration; the
initial (paired-point) registration off by exactly 10 mm and 10 degrees (a rotation about a random
axis through the organ's centre, then a translation in a random direction); 30 % of the organ's
surface visible as one contiguous patch (the part nearest a viewer looking from one direction, a
surgical view); 1000 points sampled uniformly on it, each with isotropic Gaussian noise of 0.3 mm
per axis (so 0.3 mm RMS along the surface normal, which is what point-to-surface distances see);
error measured at targets inside the organ.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from ar_guide.constants import SurfaceSettings
from ar_guide.geometry.transforms import (check_transform, invert_transform, make_transform,
                                          rotation_angle_between, rotation_from_rotvec,
                                          transform_points)
from ar_guide.registration.surface import (SurfaceResult, refine_surface, sample_surface,
                                           surface_constraint)
from ar_guide.synth import meshes

ANTERIOR = np.array([0.0, -1.0, 0.0])  # LPS: anterior is -y


# ---------------------------------------------------------------------------------------------
# Test scenes


def organ_mesh(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A closed organ-like blob centred at the origin, about 180 x 130 x 140 mm (5120 triangles).

    An ellipsoid whose radius is modulated by eight seeded plane waves over the sphere (+-15 %),
    like a liver's lobes and bulges.  Its anterior 30 % fixes all six degrees of freedom about as
    well as the real liver's (surface_constraint weakest 0.16, the liver's 0.13-0.28); a smooth
    ellipsoid would not (sliding along its long axis).
    """
    rng = np.random.default_rng(seed)
    v, f = meshes.icosphere(4)
    field = np.zeros(len(v))
    for _ in range(8):
        axis = rng.normal(size=3)
        axis /= np.linalg.norm(axis)
        field += np.sin(rng.uniform(1.5, 3.5) * (v @ axis) * np.pi / 2 + rng.uniform(0, 2 * np.pi))
    v = v * (1.0 + 0.15 * field / np.sqrt(8))[:, None] * np.array([90.0, 65.0, 70.0])
    return v, f


def visible_patch(vertices, faces, view, fraction) -> np.ndarray:
    """Faces of the contiguous part of the surface a viewer looking along -``view`` sees first:
    faces turned towards ``view``, highest along ``view`` first, up to ``fraction`` of the area."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    area = 0.5 * np.linalg.norm(cross, axis=1)
    facing = cross @ view > 0
    order = np.argsort(-((a + b + c) / 3) @ view)
    order = order[facing[order]]
    keep = order[np.cumsum(area[order]) <= fraction * area.sum()]
    return faces[keep]


def random_rigid(rng) -> np.ndarray:
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return make_transform(rotation_from_rotvec(axis * rng.uniform(0, np.pi)),
                          rng.uniform(-300, 300, 3))


def misregistration(rng, centre, mm: float, deg: float) -> np.ndarray:
    """ct_from_ct: rotation of ``deg`` about a random axis through ``centre``, then ``mm`` along a
    random direction (both exactly)."""
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    shift = rng.normal(size=3)
    shift *= mm / np.linalg.norm(shift)
    r = rotation_from_rotvec(axis * np.radians(deg))
    return make_transform(r, centre - r @ centre + shift)


def trial(vertices, faces, seed, *, view=ANTERIOR, fraction=0.3, patch=None, noise_mm=0.3,
          count=1000, mm=10.0, deg=10.0, **kwargs):
    """(reference_from_ct_true, reference_from_ct_initial, SurfaceResult) of one seeded run;
    points on ``patch`` (faces) if given, else on the visible patch seen from ``view``."""
    rng = np.random.default_rng(seed)
    if patch is None:
        patch = visible_patch(vertices, faces, view, fraction)
    points_ct, _ = sample_surface(vertices, patch, count, rng)
    points_ct = points_ct + rng.normal(0.0, noise_mm, points_ct.shape)
    true = random_rigid(rng)
    initial = true @ misregistration(rng, vertices.mean(axis=0), mm, deg)
    result = refine_surface(transform_points(true, points_ct), vertices, faces, initial, **kwargs)
    return true, initial, result


def target_rms_mm(a_from_ct, b_from_ct, targets_ct) -> float:
    d = transform_points(a_from_ct, targets_ct) - transform_points(b_from_ct, targets_ct)
    return float(np.sqrt(np.mean(np.sum(d ** 2, axis=1))))


@pytest.fixture(scope="module")
def organ():
    return organ_mesh(0)


# Targets inside the synthetic organ: a seeded cloud in a 60 mm cube about its centre.
ORGAN_TARGETS = np.random.default_rng(9).uniform(-30.0, 30.0, (20, 3))


# ---------------------------------------------------------------------------------------------
# Accuracy


@pytest.mark.parametrize("seed", range(5))
def test_recovers_synthetic_organ_from_10mm_10deg(organ, seed):
    vertices, faces = organ
    true, initial, result = trial(vertices, faces, seed)
    assert isinstance(result, SurfaceResult)
    assert result.accepted, result.reason
    assert result.reason.startswith("surface fit improved: ")
    assert result.converged and result.iterations > 0
    # The start is 10 mm off at the centre and more at the targets ...
    assert target_rms_mm(initial, true, ORGAN_TARGETS) > 9.0
    # ... the refinement is within 0.5 mm (the bar; measured 0.02-0.09 mm).
    assert target_rms_mm(result.reference_from_ct, true, ORGAN_TARGETS) < 0.5
    # The correction undoes the 10 degrees; the residual distances are the 0.3 mm noise along
    # the normal (1000 points: +-2 % at one standard deviation, plus the sampling of the mesh).
    assert result.correction_deg == pytest.approx(10.0, abs=0.2)
    assert 0.27 < result.rms_mm < 0.33
    assert result.inlier_fraction == 1.0
    assert result.initial_rms_mm > result.rms_mm
    assert result.truncated_rms_mm < result.initial_truncated_rms_mm
    check_transform(result.reference_from_ct)


def test_liver_recovers_from_10mm_10deg(shared_data):
    """The real liver mesh (SciKit-Surgery, 20 000 triangles): error at the tumour surface."""
    from ar_guide.io.meshes import load_mesh

    folder = shared_data / "meshes" / "sksurgery_liver"
    liver = load_mesh(folder / "liver.vtk")
    tumour_ct = load_mesh(folder / "liver_tumours.vtk").vertices
    errors = []
    for seed in range(5):
        true, initial, result = trial(liver.vertices, liver.faces, seed)
        assert result.accepted and result.converged, result.reason
        assert target_rms_mm(initial, true, tumour_ct) > 9.0
        errors.append(target_rms_mm(result.reference_from_ct, true, tumour_ct))
        assert 0.27 < result.rms_mm < 0.33
    # Issue 4: < 0.5 mm RMS at the targets; measured 0.02-0.07 mm.
    assert max(errors) < 0.5
    assert float(np.median(errors)) < 0.15


def test_liver_refuses_the_kidney(shared_data):
    """Points traced on the liver, matched to the kidney mesh: never accepted."""
    from ar_guide.io.meshes import load_mesh

    folder = shared_data / "meshes"
    liver = load_mesh(folder / "sksurgery_liver" / "liver.vtk")
    kidney = load_mesh(folder / "sksurgery_kidney" / "kidney.vtk")
    rng = np.random.default_rng(3)
    points_ct, _ = sample_surface(liver.vertices, visible_patch(liver.vertices, liver.faces,
                                                                ANTERIOR, 0.3), 1000, rng)
    # Put the kidney where the liver is, so that ICP has something to fit.
    shift = make_transform(np.eye(3), liver.vertices.mean(axis=0) - kidney.vertices.mean(axis=0))
    kidney_vertices = transform_points(shift, kidney.vertices)
    result = refine_surface(points_ct, kidney_vertices, kidney.faces, np.eye(4))
    assert not result.accepted
    assert np.array_equal(result.reference_from_ct, np.eye(4))


# ---------------------------------------------------------------------------------------------
# Refusals: the initial registration is kept, with the reason


def assert_kept(result, initial):
    assert not result.accepted
    assert np.array_equal(result.reference_from_ct, initial)


def test_refuses_too_few_points(organ):
    vertices, faces = organ
    true, initial, result = trial(vertices, faces, 0, count=29)
    assert_kept(result, initial)
    assert result.reason == "too few surface points: 29 given, at least 30 needed"
    assert result.iterations == 0 and not result.converged
    assert result.correction_mm == 0.0


def test_refuses_no_points(organ):
    vertices, faces = organ
    result = refine_surface(np.zeros((0, 3)), vertices, faces, np.eye(4))
    assert_kept(result, np.eye(4))
    assert result.reason == "too few surface points: 0 given, at least 30 needed"
    assert np.isnan(result.rms_mm)


def grid_surface(points_grid: np.ndarray, wrap: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and faces of a (rows, cols, 3) grid of points."""
    rows, cols = points_grid.shape[:2]
    return points_grid.reshape(-1, 3), meshes.grid_faces(rows, cols, wrap_cols=wrap)


def faces_where(vertices, faces, keep) -> np.ndarray:
    """Faces whose centroid satisfies ``keep((M, 3) centroids) -> (M,) bool``."""
    return faces[keep(vertices[faces].mean(axis=1))]


FLAT_MESSAGE = ("changing by only 0.000 mm per mm (at least 0.05 needed); a flat, cylindrical or "
                "spherical patch does this: trace a wider, more curved part of the surface")


def test_refuses_a_flat_patch():
    """A 100 mm square traced on a large plane: it can slide in the plane and turn about its
    normal."""
    g = np.linspace(-200.0, 200.0, 41)
    x, y = np.meshgrid(g, g, indexing="ij")
    vertices, faces = grid_surface(np.stack([x, y, np.zeros_like(x)], axis=-1))
    patch = faces_where(vertices, faces, lambda c: np.all(np.abs(c[:, :2]) < 50.0, axis=1))
    true, initial, result = trial(vertices, faces, 1, patch=patch, mm=2.0, deg=2.0)
    assert_kept(result, initial)
    assert result.reason.startswith("the surface points cannot fix all six degrees of freedom: "
                                    "they allow ")
    assert result.reason.endswith(FLAT_MESSAGE)
    assert result.iterations == 0


def test_refuses_a_cylindrical_patch():
    """A patch of a torso-sized cylinder (radius 150 mm, +-40 degrees, 100 mm long): it slides
    along the axis, CT z here."""
    angle = np.linspace(0.0, 2.0 * np.pi, 96, endpoint=False)
    z = np.linspace(0.0, 300.0, 31)
    a, zz = np.meshgrid(angle, z)
    vertices, faces = grid_surface(np.stack([150.0 * np.cos(a), 150.0 * np.sin(a), zz], axis=-1),
                                   wrap=True)
    patch = faces_where(vertices, faces, lambda c: (np.abs(np.arctan2(c[:, 1], c[:, 0])) < 0.7)
                        & (np.abs(c[:, 2] - 150.0) < 50.0))
    true, initial, result = trial(vertices, faces, 2, patch=patch, mm=2.0, deg=2.0)
    assert_kept(result, initial)
    assert result.reason.endswith(FLAT_MESSAGE)
    # The free motion is the slide along the cylinder's axis, in the CT frame.
    assert re.search(r"they allow sliding along \((-?0\.00), (-?0\.00), (-?1\.00)\) in CT with",
                     result.reason), result.reason


def test_refuses_a_sphere():
    """Any patch of a sphere lets the points turn about its centre."""
    v, f = meshes.icosphere(4)
    true, initial, result = trial(80.0 * v, f, 3, fraction=0.3, mm=2.0, deg=2.0)
    assert_kept(result, initial)
    assert "they allow turning about the axis (" in result.reason


def test_refuses_when_the_fit_gets_worse(organ):
    """Half the points lifted 6 mm off the surface (a pointer not touching the skin) and an exact
    start: ICP can only trade the good half for a compromise, worse by the capped RMS."""
    vertices, faces = organ
    rng = np.random.default_rng(1)
    points_ct, normals = sample_surface(vertices, visible_patch(vertices, faces, ANTERIOR, 0.3),
                                        1000, rng)
    points_ct[:500] += 6.0 * normals[:500]
    true = random_rigid(rng)
    result = refine_surface(transform_points(true, points_ct), vertices, faces, true)
    assert_kept(result, true)
    assert result.reason.startswith("ICP did not improve the surface fit (RMS distance, capped "
                                    "at 3 mm: 2.121 mm before, ")
    assert result.truncated_rms_mm >= result.initial_truncated_rms_mm
    # Half the points exactly on the surface, half 6 mm off and capped at 3 mm: sqrt(9 / 2).
    assert result.initial_truncated_rms_mm == pytest.approx(np.sqrt(4.5), abs=1e-4)


def test_refuses_a_wrong_mesh(organ):
    """Points from one organ, the mesh of another of the same size at the same place."""
    vertices, faces = organ
    rng = np.random.default_rng(1)
    points_ct, _ = sample_surface(vertices, visible_patch(vertices, faces, ANTERIOR, 0.3),
                                  1000, rng)
    other_vertices, other_faces = organ_mesh(2)
    result = refine_surface(points_ct, other_vertices, other_faces, np.eye(4))
    assert_kept(result, np.eye(4))
    assert result.reason.startswith("only ")
    assert result.reason.endswith(" of the points lie within 3 mm of the mesh after ICP (at least "
                                  "80% needed): wrong mesh, points off the surface, or too poor "
                                  "a start")
    assert result.inlier_fraction < 0.8


def test_refuses_without_convergence(organ):
    vertices, faces = organ
    true, initial, result = trial(vertices, faces, 0,
                                  settings=SurfaceSettings(max_iterations=1))
    assert_kept(result, initial)
    assert result.reason == "ICP did not converge (4 iterations, at most 1 per stage)"
    assert not result.converged and result.iterations == 4


def test_refuses_a_correction_beyond_the_allowed(organ):
    """The 10 mm / 10 degree correction is found but exceeds what the caller allows."""
    vertices, faces = organ
    true, initial, result = trial(vertices, faces, 0, max_correction_mm=5.0)
    assert_kept(result, initial)
    assert result.reason.startswith("ICP moved the points by up to ")
    assert result.reason.endswith(" mm, more than the 5 mm the initial registration's error allows")
    assert result.correction_mm > 10.0 and result.converged
    # The same run with a generous limit is accepted.
    assert trial(vertices, faces, 0, max_correction_mm=50.0)[2].accepted


def test_refuses_points_far_from_the_mesh(organ):
    vertices, faces = organ
    rng = np.random.default_rng(0)
    points_ct, _ = sample_surface(vertices, faces, 200, rng)
    result = refine_surface(points_ct + 500.0, vertices, faces, np.eye(4))
    assert_kept(result, np.eye(4))
    assert result.reason == ("no surface point lies within 30 mm of the mesh: wrong mesh, or the "
                             "initial registration is far off")


def test_small_misregistration_and_reproducibility(organ):
    """A good paired-point start (1 mm / 1 degree): refined, and the same twice (seeded
    sampling)."""
    vertices, faces = organ
    true, initial, first = trial(vertices, faces, 4, mm=1.0, deg=1.0)
    second = trial(vertices, faces, 4, mm=1.0, deg=1.0)[2]
    assert first.accepted, first.reason
    assert target_rms_mm(first.reference_from_ct, true, ORGAN_TARGETS) < 0.2
    # The mesh sampling is seeded; open3d's multithreaded sums differ in the last bits.
    np.testing.assert_allclose(first.reference_from_ct, second.reference_from_ct, atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Parts


def test_surface_constraint_of_a_sphere():
    """Radial normals: rotations about the centre change no distance (p x n = 0); the vertices of
    an icosphere have icosahedral symmetry, so sum n n^T / N = I / 3 exactly and every
    translation gets sqrt(1/3)."""
    v, _ = meshes.icosphere(3)
    c = surface_constraint(50.0 * v + [10.0, -20.0, 5.0], v)
    np.testing.assert_allclose(c.strength[:3], 0.0, atol=1e-6)
    np.testing.assert_allclose(c.strength[3:], np.sqrt(1.0 / 3.0), atol=1e-12)
    assert c.radius_mm == pytest.approx(50.0)
    assert c.describe_weakest().startswith("turning about the axis (")


def test_surface_constraint_of_a_square():
    """A symmetric square grid in z = 0, normals +z: sliding in x, y and turning about z are free;
    translation along z changes every distance by 1 mm per mm; a turn about x moves a point at
    (x, y) by y along z, RMS sqrt(mean y^2) = radius / sqrt(2) per radian, i.e. 1 / sqrt(2) per mm
    at the radius."""
    g = np.linspace(-50.0, 50.0, 11)
    x, y = np.meshgrid(g, g)
    points = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    normals = np.tile([0.0, 0.0, 1.0], (len(points), 1))
    c = surface_constraint(points, normals)
    np.testing.assert_allclose(c.strength, [0, 0, 0, np.sqrt(0.5), np.sqrt(0.5), 1.0], atol=1e-12)
    # The free motions: translations in x and y and the rotation about z.
    free = c.motions[:, :3]
    np.testing.assert_allclose(np.abs(free[[0, 1, 5]]), 0.0, atol=1e-12)


def test_sample_surface_is_uniform_by_area():
    # Two triangles in z = 0 with areas 1 : 3 (the second is the first scaled by sqrt(3)).
    s = np.sqrt(3.0)
    vertices = np.array([[0, 0, 0], [10, 0, 0], [0, 10, 0],
                         [20, 0, 0], [20 + 10 * s, 0, 0], [20, 10 * s, 0]], dtype=float)
    faces = np.array([[0, 1, 2], [3, 5, 4]])
    points, normals = sample_surface(vertices, faces, 40_000, np.random.default_rng(0))
    in_first = points[:, 0] < 15.0
    # Binomial: p = 0.25, standard deviation 0.0022.
    assert np.mean(in_first) == pytest.approx(0.25, abs=0.01)
    np.testing.assert_array_equal(points[:, 2], 0.0)
    p = points[in_first]
    assert p[:, 0].min() >= 0 and p[:, 1].min() >= 0 and (p[:, 0] + p[:, 1]).max() <= 10.0 + 1e-9
    # Uniform in the triangle: the centroid (10/3, 10/3) is the mean.
    np.testing.assert_allclose(p[:, :2].mean(axis=0), 10.0 / 3.0, atol=0.05)
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0)
    np.testing.assert_allclose(normals[in_first], np.tile([0, 0, 1.0], (in_first.sum(), 1)))
    np.testing.assert_allclose(normals[~in_first], np.tile([0, 0, -1.0], ((~in_first).sum(), 1)))


# ---------------------------------------------------------------------------------------------
# Inputs


@pytest.mark.parametrize("change, message", [
    (dict(points=np.zeros((5, 2))),
     r"points_reference: expected an \(N, 3\) array, got shape \(5, 2\)"),
    (dict(points=np.full((40, 3), np.nan)), "points_reference: contains NaN or infinite values"),
    (dict(vertices=np.zeros((2, 3))), r"mesh_vertices_ct: expected a \(V, 3\) array with V >= 3"),
    (dict(faces=np.array([[0, 1, 99]])), r"mesh_faces: indices must lie in 0\.\.2, found 0\.\.99"),
    (dict(faces=np.array([[0.0, 1.0, 2.0]])), r"mesh_faces: expected an \(F, 3\) integer array"),
    (dict(vertices=np.zeros((3, 3))), "mesh_faces: every triangle has zero area"),
    (dict(initial=np.diag([1.0, 1.0, -1.0, 1.0])),
     r"reference_from_ct_initial: rotation part is a reflection"),
    (dict(max_correction_mm=0.0),
     "max_correction_mm: expected a positive number of mm or None, got 0.0"),
])
def test_malformed_inputs_raise(change, message):
    args = dict(points=np.zeros((40, 3)), vertices=np.eye(3), faces=np.array([[0, 1, 2]]),
                initial=np.eye(4), max_correction_mm=None)
    args.update(change)
    with pytest.raises(ValueError, match=message):
        refine_surface(args["points"], args["vertices"], args["faces"], args["initial"],
                       max_correction_mm=args["max_correction_mm"])


def test_open3d_is_not_imported_until_used():
    """``ar-guide play`` must not pay for open3d: importing the module and the CLI does not load
    it."""
    code = ("import sys, ar_guide.registration.surface, ar_guide.cli; "
            "print('open3d' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_correction_figures_match_the_registrations(organ):
    """correction_mm and correction_deg describe the change from the initial to the refined
    registration at the traced points."""
    vertices, faces = organ
    true, initial, result = trial(vertices, faces, 2)
    assert result.accepted
    rng = np.random.default_rng(2)  # the same draws as trial(seed=2)
    points_ct, _ = sample_surface(vertices, visible_patch(vertices, faces, ANTERIOR, 0.3), 1000,
                                  rng)
    points_ct = points_ct + rng.normal(0.0, 0.3, points_ct.shape)
    points_reference = transform_points(true, points_ct)
    before = transform_points(invert_transform(initial), points_reference)
    after = transform_points(invert_transform(result.reference_from_ct), points_reference)
    assert result.correction_mm == pytest.approx(np.max(np.linalg.norm(after - before, axis=1)),
                                                 abs=1e-9)
    assert result.correction_deg == pytest.approx(np.degrees(rotation_angle_between(
        initial[:3, :3], result.reference_from_ct[:3, :3])), abs=1e-9)
