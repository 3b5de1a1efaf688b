"""Paired-point rigid registration (ar_guide.geometry.registration): seeded synthetic cases.

The reference for "best proper rotation" is Horn's unit-quaternion method (Horn 1987, JOSA A 4(4)),
an independent closed form that can only return a proper rotation.
"""

import numpy as np
import pytest

from ar_guide.constants import RegistrationLimits
from ar_guide.geometry import registration as reg
from ar_guide.geometry.transforms import (
    make_transform,
    rotation_from_quaternion,
    rotation_from_rotvec,
    transform_points,
)


def random_transform(rng, translation_mm=200.0):
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    return make_transform(rotation_from_rotvec(axis * rng.uniform(0.0, np.pi)), rng.uniform(-1, 1, 3) * translation_mm)


def horn_register(p, q, w=None):
    """Horn 1987: the rotation is the eigenvector of the largest eigenvalue of a symmetric 4x4."""
    w = np.ones(len(p)) if w is None else np.asarray(w, float)
    w = w / w.sum()
    pb, qb = w @ p, w @ q
    s = (p - pb).T @ ((q - qb) * w[:, None])     # s[a, b] = sum w p_a q_b
    (sxx, sxy, sxz), (syx, syy, syz), (szx, szy, szz) = s
    n = np.array([
        [sxx + syy + szz, syz - szy, szx - sxz, sxy - syx],
        [syz - szy, sxx - syy - szz, sxy + syx, szx + sxz],
        [szx - sxz, sxy + syx, -sxx + syy - szz, syz + szy],
        [sxy - syx, szx + sxz, syz + szy, -sxx - syy + szz],
    ])
    vals, vecs = np.linalg.eigh(n)
    r = rotation_from_quaternion(vecs[:, np.argmax(vals)])
    return make_transform(r, qb - r @ pb)


def cost(t, p, q, w=None):
    w = np.ones(len(p)) if w is None else w
    return float(np.sum(w * np.sum((transform_points(t, p) - q) ** 2, axis=1)))


def plain_svd_det(p, q):
    """Determinant of the unconstrained Arun solution V U^T (what a reflection-blind SVD returns)."""
    h = (p - p.mean(0)).T @ (q - q.mean(0))
    u, _, vt = np.linalg.svd(h)
    return float(np.linalg.det(vt.T @ u.T))


# -- exact recovery ---------------------------------------------------------------------------------

def test_exact_recovery_without_noise():
    rng = np.random.default_rng(10)
    for n in (3, 4, 7, 50):
        for _ in range(20):
            truth = random_transform(rng)
            p = rng.uniform(-100, 100, (n, 3)) + rng.uniform(-500, 500, 3)   # CT coordinates far from 0
            q = transform_points(truth, p)
            t = reg.rigid_register(p, q)
            np.testing.assert_allclose(t, truth, atol=1e-9)
            assert np.max(np.linalg.norm(transform_points(t, p) - q, axis=1)) < 1e-9
            assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0, abs=1e-12)


def test_exact_recovery_coplanar_points():
    # Four fiducials on a square (rank-2 cross-covariance): the third axis comes from det.
    rng = np.random.default_rng(11)
    square = np.array([[50, 50, 0], [-50, 50, 0], [-50, -50, 0], [50, -50, 0.0]])
    for _ in range(50):
        truth = random_transform(rng)
        t = reg.rigid_register(square, transform_points(truth, square))
        np.testing.assert_allclose(t, truth, atol=1e-9)


def test_matches_horn_with_noise_and_weights():
    rng = np.random.default_rng(12)
    for _ in range(50):
        n = rng.integers(3, 12)
        truth = random_transform(rng)
        p = rng.uniform(-80, 80, (n, 3))
        q = transform_points(truth, p) + rng.normal(0, 2.0, (n, 3))
        w = rng.uniform(0.1, 3.0, n)
        np.testing.assert_allclose(reg.rigid_register(p, q, w), horn_register(p, q, w), atol=1e-9)


def test_permutation_gives_the_same_result():
    rng = np.random.default_rng(13)
    truth = random_transform(rng)
    p = rng.uniform(-80, 80, (9, 3))
    q = transform_points(truth, p) + rng.normal(0, 1.0, (9, 3))
    order = rng.permutation(9)
    np.testing.assert_allclose(reg.rigid_register(p[order], q[order]), reg.rigid_register(p, q), atol=1e-12)


def test_weights():
    rng = np.random.default_rng(14)
    truth = random_transform(rng)
    p = rng.uniform(-80, 80, (6, 3))
    q = transform_points(truth, p) + rng.normal(0, 2.0, (6, 3))
    unweighted = reg.rigid_register(p, q)
    # Equal weights of any scale are no weights.
    np.testing.assert_allclose(reg.rigid_register(p, q, np.full(6, 7.5)), unweighted, atol=1e-12)
    # Weight 2 is the same point entered twice.
    w = np.array([2.0, 1, 1, 1, 1, 1])
    twice = reg.rigid_register(np.vstack([p, p[:1]]), np.vstack([q, q[:1]]))
    np.testing.assert_allclose(reg.rigid_register(p, q, w), twice, atol=1e-12)
    # Weight 0 is the point left out.
    w0 = np.array([0.0, 1, 1, 1, 1, 1])
    np.testing.assert_allclose(reg.rigid_register(p, q, w0), reg.rigid_register(p[1:], q[1:]), atol=1e-12)
    # A heavier weight pulls the fit towards that point.
    heavy = reg.rigid_register(p, q, np.array([100.0, 1, 1, 1, 1, 1]))
    r_heavy = np.linalg.norm(transform_points(heavy, p[:1]) - q[:1])
    r_plain = np.linalg.norm(transform_points(unweighted, p[:1]) - q[:1])
    assert r_heavy < 0.2 * r_plain


# -- never a reflection -----------------------------------------------------------------------------

def test_mirrored_point_set_returns_best_proper_rotation():
    # points_to is a mirror image of points_from: the unconstrained SVD solution is a reflection
    # with zero residual.  rigid_register must return a rotation, the best one (Horn's).
    rng = np.random.default_rng(20)
    for _ in range(20):
        p = rng.uniform(-60, 60, (6, 3))
        mirror = np.diag([1.0, 1.0, -1.0])
        q = transform_points(random_transform(rng), p @ mirror)
        assert plain_svd_det(p, q) < 0            # the case really provokes a reflection
        t = reg.rigid_register(p, q)
        assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(t, horn_register(p, q), atol=1e-9)
        assert cost(t, p, q) > 1.0                # a rotation cannot fit a mirror image


def test_nearly_coplanar_noisy_fiducials_never_reflect():
    # Fiducials on a nearly flat patch (0.5 mm out of plane over 100 mm) localised with 1.5 mm
    # noise: the smallest singular value of the cross-covariance is noise, and the plain SVD
    # solution is a reflection in a good share of trials.  Each must come back proper and optimal.
    rng = np.random.default_rng(21)
    reflections = 0
    for _ in range(300):
        p = np.column_stack([rng.uniform(-50, 50, (5, 2)), rng.normal(0, 0.5, 5)])
        truth = random_transform(rng)
        q = transform_points(truth, p) + rng.normal(0, 1.5, (5, 3))
        t = reg.rigid_register(p, q)
        assert np.linalg.det(t[:3, :3]) == pytest.approx(1.0, abs=1e-12)
        if plain_svd_det(p, q) < 0:
            reflections += 1
            np.testing.assert_allclose(t, horn_register(p, q), atol=1e-9)
    assert reflections >= 50      # 109 of 300 with this seed


def test_best_proper_fit_is_locally_optimal():
    # No small rotation of the result about its centroid lowers the cost (mirrored case).
    rng = np.random.default_rng(22)
    p = rng.uniform(-60, 60, (5, 3))
    q = p * [1, -1, 1] + [10, 20, 30]
    t = reg.rigid_register(p, q)
    best = cost(t, p, q)
    centroid = q.mean(0)
    for _ in range(500):
        d = make_transform(rotation_from_rotvec(rng.normal(0, 0.02, 3)), [0, 0, 0])
        about = make_transform(np.eye(3), centroid) @ d @ make_transform(np.eye(3), -centroid)
        assert cost(about @ t, p, q) >= best - 1e-9


# -- refusals ----------------------------------------------------------------------------------------

def test_refuses_fewer_than_three_pairs():
    p = np.array([[0, 0, 0], [10, 0, 0.0]])
    with pytest.raises(ValueError, match=r"^need at least 3 point pairs, got 2$"):
        reg.rigid_register(p, p)


def test_refuses_different_lengths():
    with pytest.raises(ValueError, match=r"^points_from and points_to differ in length \(4 and 5\)$"):
        reg.rigid_register(np.zeros((4, 3)), np.zeros((5, 3)))


def test_refuses_wrong_shape():
    with pytest.raises(ValueError, match=r"^points_to: expected an \(N, 3\) array of points, got shape \(4, 2\)$"):
        reg.rigid_register(np.zeros((4, 3)), np.zeros((4, 2)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_refuses_non_finite(bad):
    p = np.eye(3) * 10
    q = p.copy()
    q[1, 2] = bad
    with pytest.raises(ValueError, match=r"^points_to contains NaN or infinite values$"):
        reg.rigid_register(p, q)


def test_refuses_collinear_points():
    line = np.array([[0, 0, 0], [10, 10, 10], [30, 30, 30], [50, 50, 50.0]])
    with pytest.raises(ValueError, match=r"^the points are \(nearly\) collinear: points_from lie within 0 mm"):
        reg.rigid_register(line, line + 1)


def test_refuses_collinear_points_to():
    p = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0.0]])
    q = np.array([[0, 0, 0], [100, 0, 0], [50, 0, 0.0]])
    with pytest.raises(ValueError, match=r"^the points are \(nearly\) collinear: points_to lie within"):
        reg.rigid_register(p, q)


def test_collinearity_tolerance_boundary():
    # (-100, 0, 0), (0, h, 0), (100, 0, 0): centred, x and y are uncorrelated, so the singular
    # values are s0 = sqrt(2 * 100^2) = 141.42 mm and s1 = sqrt((h/3)^2 + (2h/3)^2 + (h/3)^2)
    # = h sqrt(6) / 3; s1 / s0 = h / (100 sqrt(3)).  The refusal flips at h = 100 sqrt(3) * ratio
    # (0.173 mm off a 200 mm line for the default ratio 1e-3).  The message gives RMS values:
    # s / sqrt(3).
    ratio = RegistrationLimits().collinear_ratio
    h_edge = 100.0 * np.sqrt(3.0) * ratio

    def points(h):
        return np.array([[-100, 0, 0], [0, h, 0], [100, 0, 0.0]])

    reg.rigid_register(points(h_edge * 1.01), points(h_edge * 1.01))
    with pytest.raises(ValueError, match=r"collinear: points_from lie within 0.0408 mm \(RMS\) of one line, "
                                         r"over 81.6 mm \(RMS\) along it; 3 points not on one line are needed$"):
        reg.rigid_register(points(h_edge * 0.5), points(h_edge * 0.5))
    with pytest.raises(ValueError, match="collinear"):
        reg.rigid_register(points(h_edge * 0.99), points(h_edge * 0.99))


def test_refuses_coincident_points():
    p = np.tile([12.0, -3.0, 40.0], (4, 1))
    with pytest.raises(ValueError, match=r"^the points coincide: points_from are all within 0 mm of one place"):
        reg.rigid_register(p, p)


def test_refuses_bad_weights():
    p = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100.0]])
    with pytest.raises(ValueError, match=r"^weights must be finite and non-negative$"):
        reg.rigid_register(p, p, [1, 1, -1, 1])
    with pytest.raises(ValueError, match=r"^weights: expected shape \(4,\), got \(3,\)$"):
        reg.rigid_register(p, p, [1, 1, 1])
    with pytest.raises(ValueError, match=r"^need at least 3 point pairs with a positive weight, got 2$"):
        reg.rigid_register(p, p, [1, 0, 0, 1])


# -- paired-point registration with names ----------------------------------------------------------

def test_paired_point_result():
    rng = np.random.default_rng(30)
    truth = random_transform(rng)
    names = ("F1", "F2", "F3", "F4", "F5")
    p = rng.uniform(-80, 80, (5, 3))
    q = transform_points(truth, p) + rng.normal(0, 0.5, (5, 3))
    res = reg.paired_point_registration(names, p, q)
    np.testing.assert_allclose(res.to_from_from, reg.rigid_register(p, q), atol=1e-12)
    assert res.names == names
    expected = np.linalg.norm(transform_points(res.to_from_from, p) - q, axis=1)
    np.testing.assert_allclose(res.residuals_mm, expected, atol=1e-12)
    assert res.fre_mm == pytest.approx(np.sqrt(np.mean(expected**2)), abs=1e-12)
    for i in range(5):
        keep = np.arange(5) != i
        t_i = reg.rigid_register(p[keep], q[keep])
        assert res.leave_one_out_mm[i] == pytest.approx(np.linalg.norm(transform_points(t_i, p[i]) - q[i]), abs=1e-12)
    assert not res.to_from_from.flags.writeable


def test_leave_one_out_exposes_an_outlier():
    # One fiducial digitised 6 mm off: its residual is shrunk by the fit that it pulls, its
    # leave-one-out error is not.
    rng = np.random.default_rng(31)
    truth = random_transform(rng)
    names = [f"F{i}" for i in range(6)]
    p = rng.uniform(-80, 80, (6, 3))
    q = transform_points(truth, p) + rng.normal(0, 0.3, (6, 3))
    q[2] += np.array([6.0, 0.0, 0.0])
    res = reg.paired_point_registration(names, p, q)
    assert np.argmax(res.leave_one_out_mm) == 2
    assert res.leave_one_out_mm[2] > 5.0
    assert res.leave_one_out_mm[2] > 1.3 * res.residuals_mm[2]


def test_leave_one_out_with_three_fiducials_is_nan():
    p = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0.0]])
    res = reg.paired_point_registration(["a", "b", "c"], p, p + 5)
    assert np.all(np.isnan(res.leave_one_out_mm))
    assert res.fre_mm == pytest.approx(0.0, abs=1e-12)


def test_leave_one_out_nan_where_the_others_are_collinear():
    # a, b, c on a line and d off it: without d the rest are collinear.
    p = np.array([[0, 0, 0], [50, 0, 0], [100, 0, 0], [30, 80, 0.0]])
    res = reg.paired_point_registration(["a", "b", "c", "d"], p, p)
    assert np.isnan(res.leave_one_out_mm[3])
    np.testing.assert_allclose(res.leave_one_out_mm[:3], 0.0, atol=1e-9)


def test_paired_point_refusals():
    p = np.array([[0, 0, 0], [100, 0, 0], [0, 100, 0], [0, 0, 100.0]])
    with pytest.raises(ValueError, match=r"^fiducial name 'F1' appears more than once$"):
        reg.paired_point_registration(["F1", "F2", "F1", "F3"], p, p)
    with pytest.raises(ValueError, match=r"^3 names for 4 fiducials$"):
        reg.paired_point_registration(["F1", "F2", "F3"], p, p)
    q = p.copy()
    q[3] = q[1] + [0.0, 0.0, 1e-4]
    with pytest.raises(ValueError, match=r"^fiducials 'F2' and 'F4' are at the same place in points_to \(0.0001 mm "
                                         r"apart\): one point entered twice\?$"):
        reg.paired_point_registration(["F1", "F2", "F3", "F4"], p, q)
    with pytest.raises(ValueError, match=r"^need at least 3 point pairs, got 2$"):
        reg.paired_point_registration(["F1", "F2"], p[:2], p[:2])
