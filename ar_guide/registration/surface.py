"""Surface refinement of a registration: ICP of points traced on the patient to the CT mesh.

A paired-point registration is limited by how well the fiducials were located.  Points traced
with the tracked pointer over the skin or an exposed organ add the surface's shape: rigid ICP
(Besl and McKay 1992) with the point-to-plane error (Chen and Medioni 1992), a robust kernel and
coarse-to-fine correspondence distances, started from the paired-point result, moves the
registration until the traced points lie on the mesh.

ICP only ever finds the nearest local fit, so the result is checked before it replaces the
paired-point registration (:class:`SurfaceResult` ``accepted``), and refused when

- there are too few points, or none near the mesh;
- their surface patch cannot fix all six degrees of freedom, before or after ICP (a flat,
  cylindrical or spherical patch lets the points slide or turn on it: Gelfand, Ikemoto,
  Rusinkiewicz and Levoy 2003, the eigenvalues of the point-to-plane normal matrix);
- the fit is not better than the initial one (RMS of the exact point-to-triangle distances,
  each capped at the inlier distance, so every point counts and none dominates);
- ICP did not converge;
- too few points lie on the mesh afterwards (wrong mesh, wrong side, too poor a start);
- the correction is larger than the caller allows (``max_correction_mm``: what the paired-point
  registration's predicted error makes plausible).

open3d is imported inside the functions that need it: ``ar-guide play`` never pays for it.
Distances are exact point-to-triangle distances (open3d's RaycastingScene), not distances to the
samples that ICP matches against.  Thresholds: :class:`ar_guide.constants.SurfaceSettings`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.constants import SurfaceSettings
from ar_guide.geometry.transforms import (check_transform, invert_transform, rotvec_from_rotation,
                                          transform_points)


@dataclasses.dataclass(frozen=True, eq=False)
class SurfaceResult:
    """Outcome of :func:`refine_surface`.

    reference_from_ct : (4, 4) float64, the refined registration (CT mm -> reference mm); the
        initial one, unchanged, when refused
    accepted : False when the initial registration is kept
    reason : one line saying why it was accepted or refused
    rms_mm : RMS point-to-surface distance (mm) of the inliers (within
        ``SurfaceSettings.inlier_distance_mm``) after ICP; the initial figure when ICP did not run
    initial_rms_mm : the same at the initial registration
    inlier_fraction : fraction of the points that are inliers after ICP
    converged : whether the last (finest) ICP stage converged; False when ICP did not run
    iterations : ICP iterations over all stages (0 when ICP did not run)
    correction_mm : largest distance (mm) a traced point moved between the initial and the ICP
        registration (reported also when refused)
    correction_deg : rotation angle (deg) of that correction
    truncated_rms_mm, initial_truncated_rms_mm : RMS of the distances capped at the inlier
        distance, after ICP and at the initial registration: the figure that decides "better"
    """

    reference_from_ct: np.ndarray
    accepted: bool
    reason: str
    rms_mm: float
    initial_rms_mm: float
    inlier_fraction: float
    converged: bool
    iterations: int
    correction_mm: float
    correction_deg: float
    truncated_rms_mm: float = float("nan")
    initial_truncated_rms_mm: float = float("nan")


@dataclasses.dataclass(frozen=True, eq=False)
class SurfaceConstraint:
    """How firmly a set of surface points fixes a rigid motion (Gelfand et al. 2003).

    For a small motion u = (rotation * radius_mm, translation), each point's distance to the
    surface changes by J_i . u with J_i = ((p_i x n_i) / radius_mm, n_i) (p_i about the centroid).
    ``strength[k]`` = sqrt(eigenvalue_k of J^T J / N): RMS change of the distances (mm) per mm of
    the k-th principal motion, weakest first.

    strength : (6,) float64, ascending, mm per mm (0: that motion leaves every distance unchanged)
    motions : (6, 6) float64, column k the unit motion of ``strength[k]`` (rotation part first,
        scaled by radius_mm; translation part last)
    centroid : (3,) float64 mm, the points' centroid (the rotations' centre)
    radius_mm : RMS distance of the points from their centroid
    """

    strength: np.ndarray
    motions: np.ndarray
    centroid: np.ndarray
    radius_mm: float

    @property
    def weakest(self) -> float:
        return float(self.strength[0])

    def describe_weakest(self) -> str:
        """The least constrained motion in words: a slide along a direction, or a turn about an
        axis (whichever part of the motion is larger)."""
        u = self.motions[:, 0]
        rotation, translation = u[:3], u[3:]
        if np.linalg.norm(translation) >= np.linalg.norm(rotation):
            d = translation / np.linalg.norm(translation)
            return f"sliding along ({d[0]:.2f}, {d[1]:.2f}, {d[2]:.2f})"
        a = rotation / np.linalg.norm(rotation)
        return f"turning about the axis ({a[0]:.2f}, {a[1]:.2f}, {a[2]:.2f})"


def surface_constraint(points: np.ndarray, normals: np.ndarray) -> SurfaceConstraint:
    """Point-to-plane constraint analysis of (N, 3) points with (N, 3) unit surface normals, mm.

    Gelfand, Ikemoto, Rusinkiewicz and Levoy 2003, sec. 3: the covariance of the point-to-plane
    error; rotations are scaled by the points' RMS radius so that both halves are in mm.
    """
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    n = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    centroid = p.mean(axis=0)
    centred = p - centroid
    radius = float(np.sqrt(np.mean(np.sum(centred ** 2, axis=1))))
    jacobian = np.hstack([np.cross(centred, n) / max(radius, 1e-12), n])
    eigenvalues, vectors = np.linalg.eigh(jacobian.T @ jacobian / len(p))
    return SurfaceConstraint(np.sqrt(np.clip(eigenvalues, 0.0, None)), vectors, centroid, radius)


def sample_surface(vertices: np.ndarray, faces: np.ndarray, count: int,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` points uniformly distributed by area on a triangle mesh, with their triangle's
    unit normal: ((count, 3), (count, 3)) float64, in the mesh's frame.  Any prefix of the
    samples is itself a uniform sample (used for the coarse ICP stages)."""
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    cross = np.cross(b - a, c - a)
    double_area = np.linalg.norm(cross, axis=1)
    face = rng.choice(len(faces), size=count, p=double_area / double_area.sum())
    # Uniform barycentric coordinates (Osada et al. 2002, eq. 1).
    r1 = np.sqrt(rng.random(count))
    r2 = rng.random(count)
    points = ((1.0 - r1)[:, None] * a[face] + (r1 * (1.0 - r2))[:, None] * b[face]
              + (r1 * r2)[:, None] * c[face])
    normals = cross[face] / double_area[face, None]
    return points, normals


class _MeshDistance:
    """Exact point-to-triangle distances and closest points (open3d RaycastingScene, float32).

    Coordinates are taken relative to ``origin`` so that float32 keeps ~1e-5 mm.
    """

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, origin: np.ndarray):
        import open3d as o3d

        self._o3d = o3d
        self._origin = origin
        self._scene = o3d.t.geometry.RaycastingScene()
        self._scene.add_triangles((vertices - origin).astype(np.float32),
                                  np.ascontiguousarray(faces, dtype=np.uint32))

    def _query(self, points: np.ndarray):
        return self._o3d.core.Tensor((points - self._origin).astype(np.float32))

    def distances(self, points: np.ndarray) -> np.ndarray:
        """(N,) float64 unsigned distances (mm) of (N, 3) points to the mesh."""
        return self._scene.compute_distance(self._query(points)).numpy().astype(np.float64)

    def closest_normals(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) unit normals of the triangles closest to (N, 3) points."""
        closest = self._scene.compute_closest_points(self._query(points))
        return closest["primitive_normals"].numpy().astype(np.float64)


@dataclasses.dataclass(frozen=True)
class _Fit:
    rms_mm: float              # RMS distance of the inliers
    inlier_fraction: float
    truncated_rms_mm: float    # RMS of all distances, each capped at the inlier distance


def _fit(distances: np.ndarray, inlier_mm: float) -> _Fit:
    inliers = distances <= inlier_mm
    rms = float(np.sqrt(np.mean(distances[inliers] ** 2))) if inliers.any() else float("nan")
    truncated = float(np.sqrt(np.mean(np.minimum(distances, inlier_mm) ** 2)))
    return _Fit(rms, float(np.mean(inliers)), truncated)


def _checked_inputs(points_reference, mesh_vertices_ct, mesh_faces, reference_from_ct_initial,
                    max_correction_mm):
    points = np.asarray(points_reference, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points_reference: expected an (N, 3) array, got shape {points.shape}")
    if not np.all(np.isfinite(points)):
        raise ValueError("points_reference: contains NaN or infinite values")
    vertices = np.asarray(mesh_vertices_ct, dtype=np.float64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) < 3:
        raise ValueError(f"mesh_vertices_ct: expected a (V, 3) array with V >= 3, got shape "
                         f"{vertices.shape}")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("mesh_vertices_ct: contains NaN or infinite values")
    faces = np.asarray(mesh_faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0 \
            or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"mesh_faces: expected an (F, 3) integer array with F >= 1, got shape "
                         f"{faces.shape} ({faces.dtype})")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"mesh_faces: indices must lie in 0..{len(vertices) - 1}, found "
                         f"{int(faces.min())}..{int(faces.max())}")
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    if not np.any(np.linalg.norm(np.cross(b - a, c - a), axis=1) > 0):
        raise ValueError("mesh_faces: every triangle has zero area")
    initial = check_transform(reference_from_ct_initial, "reference_from_ct_initial")
    if max_correction_mm is not None:
        if isinstance(max_correction_mm, bool) or not np.isfinite(max_correction_mm) \
                or max_correction_mm <= 0:
            raise ValueError(f"max_correction_mm: expected a positive number of mm or None, got "
                             f"{max_correction_mm!r}")
        max_correction_mm = float(max_correction_mm)
    return points, vertices, faces, initial, max_correction_mm


def refine_surface(points_reference, mesh_vertices_ct, mesh_faces, reference_from_ct_initial,
                   settings: SurfaceSettings = SurfaceSettings(), *,
                   max_correction_mm: float | None = None) -> SurfaceResult:
    """Refine a registration by ICP of surface points to a mesh; keep the initial one if worse.

    points_reference : (N, 3) float64 mm, points traced on the skin or organ, reference frame
    mesh_vertices_ct : (V, 3) float64 mm, the matching surface segmented from CT (CT frame)
    mesh_faces : (F, 3) integer, triangles indexing ``mesh_vertices_ct``
    reference_from_ct_initial : (4, 4) float64, the paired-point registration (CT -> reference)
    settings : thresholds and the ICP schedule (:class:`ar_guide.constants.SurfaceSettings`)
    max_correction_mm : refuse a refinement that moves any point further than this (mm); None:
        no limit

    Raises ValueError for malformed arrays (shape, NaN, face indices, an improper transform, a
    non-positive ``max_correction_mm``); every other problem is a refusal in the result.
    """
    points, vertices, faces, initial, max_correction_mm = _checked_inputs(
        points_reference, mesh_vertices_ct, mesh_faces, reference_from_ct_initial,
        max_correction_mm)
    s = settings
    # ICP moves the points (mapped to CT by the initial registration) onto the mesh:
    # ct_from_reference = correction @ ct_from_reference_initial.
    points_ct = transform_points(invert_transform(initial), points)
    origin = 0.5 * (vertices.min(axis=0) + vertices.max(axis=0))
    mesh = _MeshDistance(vertices, faces, origin)

    def unchanged(reason: str, fit: _Fit | None) -> SurfaceResult:
        nan = float("nan")
        return SurfaceResult(initial, False, reason, fit.rms_mm if fit else nan,
                             fit.rms_mm if fit else nan, fit.inlier_fraction if fit else nan,
                             False, 0, 0.0, 0.0, fit.truncated_rms_mm if fit else nan,
                             fit.truncated_rms_mm if fit else nan)

    if len(points) < s.min_points:
        fit = _fit(mesh.distances(points_ct), s.inlier_distance_mm) if len(points) else None
        return unchanged(f"too few surface points: {len(points)} given, at least {s.min_points} "
                         f"needed", fit)
    initial_distances = mesh.distances(points_ct)
    initial_fit = _fit(initial_distances, s.inlier_distance_mm)
    no_match = (f"no surface point lies within {s.max_distances_mm[0]:g} mm of the mesh: wrong "
                f"mesh, or the initial registration is far off")
    if not np.any(initial_distances <= s.max_distances_mm[0]):
        return unchanged(no_match, initial_fit)
    # Checked before ICP (a degenerate patch is not worth iterating on) and after it (where the
    # points lie on the surface and the closest triangles are the right ones).
    weak = _weakly_constrained(points_ct, mesh, s)
    if weak:
        return unchanged(weak, initial_fit)

    outcome = _icp(points_ct, initial_distances, vertices, faces, origin, mesh, s)
    if outcome is None:
        return unchanged(no_match, initial_fit)
    correction, converged, iterations = outcome
    moved_ct = transform_points(correction, points_ct)
    fit = _fit(mesh.distances(moved_ct), s.inlier_distance_mm)
    correction_mm = float(np.max(np.linalg.norm(moved_ct - points_ct, axis=1)))
    correction_deg = float(np.degrees(np.linalg.norm(rotvec_from_rotation(correction[:3, :3]))))
    refined = initial @ invert_transform(correction)

    weak = _weakly_constrained(moved_ct, mesh, s)
    if weak:
        accepted, reason = False, weak
    else:
        accepted, reason = _decide(initial_fit, fit, converged, iterations, correction_mm,
                                   max_correction_mm, s)
    return SurfaceResult(refined if accepted else initial, accepted, reason, fit.rms_mm,
                         initial_fit.rms_mm, fit.inlier_fraction, converged, iterations,
                         correction_mm, correction_deg, fit.truncated_rms_mm,
                         initial_fit.truncated_rms_mm)


def _weakly_constrained(points_ct: np.ndarray, mesh: _MeshDistance, s: SurfaceSettings) -> str:
    """The refusal reason when the points cannot fix all six degrees of freedom, else ''."""
    constraint = surface_constraint(points_ct, mesh.closest_normals(points_ct))
    if constraint.weakest >= s.min_constraint:
        return ""
    return (f"the surface points cannot fix all six degrees of freedom: they allow "
            f"{constraint.describe_weakest()} in CT with their distances to the surface changing "
            f"by only {constraint.weakest:.3f} mm per mm (at least {s.min_constraint:g} needed); "
            f"a flat, cylindrical or spherical patch does this: trace a wider, more curved part "
            f"of the surface")


def _decide(initial: _Fit, fit: _Fit, converged: bool, iterations: int, correction_mm: float,
            max_correction_mm: float | None, s: SurfaceSettings) -> tuple[bool, str]:
    """Whether the ICP result replaces the initial registration, and why (one line)."""
    if not fit.truncated_rms_mm < initial.truncated_rms_mm:
        return False, (f"ICP did not improve the surface fit (RMS distance, capped at "
                       f"{s.inlier_distance_mm:g} mm: {initial.truncated_rms_mm:.3f} mm before, "
                       f"{fit.truncated_rms_mm:.3f} mm after)")
    if not converged:
        return False, (f"ICP did not converge ({iterations} iterations, at most "
                       f"{s.max_iterations} per stage)")
    if fit.inlier_fraction < s.min_inlier_fraction:
        return False, (f"only {fit.inlier_fraction:.0%} of the points lie within "
                       f"{s.inlier_distance_mm:g} mm of the mesh after ICP (at least "
                       f"{s.min_inlier_fraction:.0%} needed): wrong mesh, points off the "
                       f"surface, or too poor a start")
    if max_correction_mm is not None and correction_mm > max_correction_mm:
        return False, (f"ICP moved the points by up to {correction_mm:.1f} mm, more than the "
                       f"{max_correction_mm:g} mm the initial registration's error allows")
    before = f"{initial.rms_mm:.2f}" if initial.inlier_fraction > 0 else "-"
    return True, (f"surface fit improved: {initial.inlier_fraction:.0%} -> "
                  f"{fit.inlier_fraction:.0%} of the points within {s.inlier_distance_mm:g} mm of "
                  f"the mesh, their RMS distance {before} -> {fit.rms_mm:.2f} mm; "
                  f"points moved by up to {correction_mm:.1f} mm")


def _icp(points_ct: np.ndarray, distances: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
         origin: np.ndarray, mesh: _MeshDistance, s: SurfaceSettings):
    """Coarse-to-fine robust point-to-plane ICP (open3d's tensor ICP, one run per stage).

    Returns (ct_from_ct correction (4, 4), whether the last stage converged, iterations), or
    None when the first stage finds no correspondence at all (a later stage that loses every
    correspondence ends the run, not converged).
    """
    import open3d as o3d

    reg = o3d.t.pipelines.registration
    kernels = reg.robust_kernel
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    area = 0.5 * float(np.sum(np.linalg.norm(np.cross(b - a, c - a), axis=1)))
    count = int(min(s.max_samples, max(1000, np.ceil(area / s.sample_spacing_mm ** 2))))
    samples, normals = sample_surface(vertices, faces, count, np.random.default_rng(s.sample_seed))
    samples -= origin
    source = o3d.t.geometry.PointCloud(o3d.core.Tensor(points_ct - origin))

    centred = np.eye(4)  # the correction in coordinates relative to origin
    iterations = 0
    converged = False
    for stage, max_distance in enumerate(s.max_distances_mm):
        spacing = max(s.sample_spacing_mm, s.coarse_spacing_fraction * max_distance)
        n = int(min(count, max(1000, np.ceil(area / spacing ** 2))))
        target = o3d.t.geometry.PointCloud(o3d.core.Tensor(samples[:n]))
        target.point.normals = o3d.core.Tensor(normals[:n])
        # Tukey scale from the robust spread of the current distances (MAD of |d| about 0).
        sigma = 1.4826 * float(np.median(distances))
        scale = float(np.clip(s.tukey_c * sigma, s.min_kernel_mm, max_distance))
        estimation = reg.TransformationEstimationPointToPlane(
            kernels.RobustKernel(kernels.RobustKernelMethod.TukeyLoss, scale))
        criteria = reg.ICPConvergenceCriteria(s.relative_fitness, s.relative_rmse_mm,
                                              s.max_iterations)
        log = _StepLog(transform_points(centred, points_ct - origin), centred)
        # open3d warns on the console when no point has a correspondence; we report it.
        with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
            result = reg.icp(source, target, float(max_distance), o3d.core.Tensor(centred),
                             estimation, criteria, -1.0, log)
        if result.fitness == 0.0:
            if stage == 0:
                return None
            return _uncentred(centred, origin), False, iterations  # lost the surface
        centred = result.transformation.numpy().astype(np.float64)
        iterations += len(log.steps)
        # open3d's rule (fitness and RMS to the samples settle), or the points stopped moving:
        # a stage can end in a 2-cycle of correspondences swapping between two samples.  (Some
        # open3d releases never set ``converged``, isl-org/Open3D#7296; the step rule covers them.)
        converged = bool(getattr(result, "converged", False)) \
            or (bool(log.steps) and log.steps[-1] < s.converged_step_mm)
        if stage + 1 < len(s.max_distances_mm):
            distances = mesh.distances(transform_points(_uncentred(centred, origin), points_ct))
    return _uncentred(centred, origin), converged, iterations


class _StepLog:
    """open3d's per-iteration callback: how far each iteration moved the points (mm)."""

    def __init__(self, points: np.ndarray, transform: np.ndarray):
        self.points = points          # (N, 3) the source points as moved so far
        self.transform = transform    # (4, 4) the transform that moved them there
        self.steps: list[float] = []  # largest motion of a point in each iteration

    def __call__(self, state) -> None:
        current = state["transformation"].numpy().astype(np.float64)
        moved = transform_points(current @ invert_transform(self.transform), self.points)
        self.steps.append(float(np.max(np.linalg.norm(moved - self.points, axis=1))))
        self.points, self.transform = moved, current


def _uncentred(centred: np.ndarray, origin: np.ndarray) -> np.ndarray:
    """T(origin) @ centred @ T(-origin): a transform of coordinates relative to ``origin``, made
    absolute."""
    m = centred.copy()
    m[:3, 3] = centred[:3, 3] + origin - centred[:3, :3] @ origin
    return m
