"""Predicted registration error (ar_guide.geometry.tre): known answers and seeded Monte Carlo.

FLE here, as in Fitzpatrick, West and Maurer 1998, is the 3-D RMS localisation error of one
fiducial: independent isotropic Gaussian noise with standard deviation FLE / sqrt(3) per axis.
With noise in both point sets the registration's FLE is sqrt(FLE_from^2 + FLE_to^2).
"""

import numpy as np
import pytest

from ar_guide.geometry.registration import rigid_register
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.geometry.tre import expected_fre_mm, fle_from_fre_mm, predicted_tre_mm

SQUARE = np.array([[50, 50, 0], [-50, 50, 0], [-50, -50, 0], [50, -50, 0.0]])


def test_known_answers_square():
    # FIELD-NOTES.md: 4 fiducials on a 100 mm square, FLE 1 mm.  Principal axes x, y, z through
    # the centre; every fiducial is 50 mm from the x axis and from the y axis and 50 sqrt(2) mm
    # from z, so f_x^2 = f_y^2 = 2500, f_z^2 = 5000 mm^2.
    #   centroid:      d = 0                                 TRE^2 = 1/4 (1 + 0)        -> 0.50 mm
    #   100 mm deep:   d_x^2 = d_y^2 = 10^4, d_z = 0         TRE^2 = 1/4 (1 + 8/3)      -> 0.957 mm
    #   150 mm deep:   d_x^2 = d_y^2 = 22500                 TRE^2 = 1/4 (1 + 18/3) = 7/4 -> 1.323 mm
    #   200 mm in x:   d_y^2 = d_z^2 = 40000                 TRE^2 = 1/4 (1 + (16 + 8)/3) -> 1.50 mm
    targets = np.array([[0, 0, 0], [0, 0, 100], [0, 0, 150], [200, 0, 0.0]])
    tre = predicted_tre_mm(SQUARE, targets, 1.0)
    np.testing.assert_allclose(tre, [0.5, np.sqrt(11 / 12), np.sqrt(7 / 4), 1.5], rtol=1e-12)
    assert tre[1] == pytest.approx(0.96, abs=0.005) and tre[2] == pytest.approx(1.32, abs=0.005)


def test_invariant_to_rigid_motion_and_order_and_linear_in_fle():
    rng = np.random.default_rng(40)
    fid = rng.uniform(-70, 70, (6, 3))
    targets = rng.uniform(-200, 200, (10, 3))
    base = predicted_tre_mm(fid, targets, 0.7)
    moved = make_transform(rotation_from_rotvec([0.4, -2.0, 1.1]), [300, -120, 45])
    np.testing.assert_allclose(predicted_tre_mm(transform_points(moved, fid), transform_points(moved, targets), 0.7),
                               base, rtol=1e-10)
    np.testing.assert_allclose(predicted_tre_mm(fid[rng.permutation(6)], targets, 0.7), base, rtol=1e-12)
    np.testing.assert_allclose(predicted_tre_mm(fid, targets, 2.1), 3.0 * base, rtol=1e-12)
    # Never below the centroid value FLE / sqrt(N), reached at the centroid.
    assert np.all(base >= 0.7 / np.sqrt(6) - 1e-12)
    assert predicted_tre_mm(fid, fid.mean(0, keepdims=True), 0.7)[0] == pytest.approx(0.7 / np.sqrt(6), rel=1e-12)


def test_largest_along_a_path_is_at_an_end():
    # TRE^2 is a convex quadratic in the target position (docstring): sample many paths.
    rng = np.random.default_rng(41)
    fid = rng.uniform(-60, 60, (5, 3))
    s = np.linspace(0.0, 1.0, 101)[:, None]
    for _ in range(50):
        entry, target = rng.uniform(-250, 250, (2, 3))
        along = predicted_tre_mm(fid, entry + s * (target - entry), 0.5)
        assert along.max() <= max(along[0], along[-1]) + 1e-12


def monte_carlo(fiducials, targets, fle_from, fle_to, trials, rng):
    """RMS TRE at the targets and RMS FRE over seeded registrations with noisy fiducials."""
    truth = make_transform(rotation_from_rotvec([0.3, -1.2, 0.5]), [40.0, -25.0, 300.0])
    fid_to = transform_points(truth, fiducials)
    targets_to = transform_points(truth, targets)
    sq_tre = np.zeros(len(targets))
    sq_fre = 0.0
    for _ in range(trials):
        measured_from = fiducials + rng.normal(0.0, fle_from / np.sqrt(3), fiducials.shape)
        measured_to = fid_to + rng.normal(0.0, fle_to / np.sqrt(3), fiducials.shape)
        estimate = rigid_register(measured_from, measured_to)
        sq_tre += np.sum((transform_points(estimate, targets) - targets_to) ** 2, axis=1)
        sq_fre += np.mean(np.sum((transform_points(estimate, measured_from) - measured_to) ** 2, axis=1))
    return np.sqrt(sq_tre / trials), np.sqrt(sq_fre / trials)


TARGETS = np.array([
    [0.0, 0.0, 0.0],        # at the centroid of the square
    [5.0, -10.0, 20.0],     # near it
    [0.0, 0.0, 150.0],      # deep below a skin patch
    [200.0, 0.0, 0.0],      # far outside, in the plane
    [120.0, -80.0, 60.0],   # far outside, oblique
])

CONFIGURATIONS = {
    "square": SQUARE,
    # six fiducials spread in a box (e.g. skull markers)
    "box": np.random.default_rng(42).uniform(-75.0, 75.0, (6, 3)),
    # three fiducials: the fewest allowed; a scalene triangle
    "triangle": np.array([[0, 0, 0], [80, 0, 0], [30, 60, 0.0]]),
    # five on a gently curved skin patch: nearly planar
    "skin patch": np.array([[-60, -40, 4], [60, -40, 3], [60, 40, 5], [-60, 40, 2], [0, 0, 9.0]]),
}


@pytest.mark.parametrize("name", list(CONFIGURATIONS))
@pytest.mark.parametrize("side", ["to", "from", "both"])
def test_monte_carlo_tre_matches_prediction(name, side):
    # Done-when: over 1000 seeded trials with isotropic FLE 0.5 mm, the measured RMS TRE at a
    # target is within 15% of the prediction.  With 1000 trials the RMS is good to about 1.3%
    # (3 squared components per trial), so a 15% miss is not chance.  Measured ratios on these
    # seeds: 0.97-1.04 (docs/benchmarks.md).
    fiducials = CONFIGURATIONS[name]
    fle_from, fle_to = {"to": (0.0, 0.5), "from": (0.5, 0.0), "both": (0.5 / np.sqrt(2), 0.5 / np.sqrt(2))}[side]
    seed = 1000 + list(CONFIGURATIONS).index(name) * 10 + ["to", "from", "both"].index(side)
    measured, fre = monte_carlo(fiducials, TARGETS, fle_from, fle_to, 1000, np.random.default_rng(seed))
    predicted = predicted_tre_mm(fiducials, TARGETS, 0.5)
    np.testing.assert_allclose(measured / predicted, 1.0, atol=0.15)
    # FRE^2 = (1 - 2/N) FLE^2: with N = 3..6, 3N - 6 = 3..12 squared components per trial, the
    # RMS over 1000 trials is good to 1-2%.
    assert fre / expected_fre_mm(0.5, len(fiducials)) == pytest.approx(1.0, abs=0.06)


def test_monte_carlo_is_not_loose():
    # The same simulation rejects a wrong model: the prediction for the wrong N, or with the
    # per-axis sigma taken as FLE, misses by more than 15%.
    measured, _ = monte_carlo(SQUARE, TARGETS, 0.0, 0.5, 1000, np.random.default_rng(7))
    right = predicted_tre_mm(SQUARE, TARGETS, 0.5)
    np.testing.assert_allclose(measured / right, 1.0, atol=0.15)
    per_axis_as_fle = predicted_tre_mm(SQUARE, TARGETS, 0.5 / np.sqrt(3))
    assert np.all(np.abs(measured / per_axis_as_fle - 1.0) > 0.15)
    no_axes_term = 0.5 / np.sqrt(4)   # FLE / sqrt(N) everywhere: right only at the centroid
    assert np.abs(measured[2] / no_axes_term - 1.0) > 0.15


def test_expected_fre_and_inverse():
    assert expected_fre_mm(1.0, 4) == pytest.approx(np.sqrt(0.5), rel=1e-15)
    assert expected_fre_mm(0.6, 3) == pytest.approx(0.6 / np.sqrt(3), rel=1e-15)
    for n in (3, 4, 10, 100):
        assert fle_from_fre_mm(expected_fre_mm(0.37, n), n) == pytest.approx(0.37, rel=1e-14)
    assert expected_fre_mm(0.0, 5) == 0.0


def test_refusals():
    with pytest.raises(ValueError, match=r"^need at least 3 fiducials, got 2$"):
        predicted_tre_mm(SQUARE[:2], np.zeros((1, 3)), 0.5)
    with pytest.raises(ValueError, match=r"^need at least 3 fiducials, got 2$"):
        expected_fre_mm(0.5, 2)
    with pytest.raises(ValueError, match=r"^need at least 3 fiducials, got 1$"):
        fle_from_fre_mm(0.5, 1)
    with pytest.raises(ValueError, match=r"^fle_mm must be a finite, non-negative number of mm, got -0.1$"):
        predicted_tre_mm(SQUARE, np.zeros((1, 3)), -0.1)
    with pytest.raises(ValueError, match=r"^fre_mm must be a finite, non-negative number of mm, got nan$"):
        fle_from_fre_mm(float("nan"), 4)
    with pytest.raises(ValueError, match=r"^the points are \(nearly\) collinear: fiducials lie within 0 mm"):
        predicted_tre_mm(np.array([[0, 0, 0], [10, 0, 0], [25, 0, 0.0]]), np.zeros((1, 3)), 0.5)
    with pytest.raises(ValueError, match=r"^targets: expected an \(M, 3\) array of points, got shape \(3,\)$"):
        predicted_tre_mm(SQUARE, np.zeros(3), 0.5)
    with pytest.raises(ValueError, match=r"^fiducials or targets contain NaN or infinite values$"):
        predicted_tre_mm(SQUARE, np.full((1, 3), np.inf), 0.5)
