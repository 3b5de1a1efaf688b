"""Synthetic phantom: meshes, anatomy, needle plan, camera script and ground-truth visibility.

No OpenGL here: everything is geometry (numpy) and fast.
"""

from __future__ import annotations

import numpy as np
import pytest

from ar_guide.constants import SynthSettings
from ar_guide.geometry.transforms import check_transform, invert_transform, look_at, transform_points
from ar_guide.synth import meshes
from ar_guide.synth.optics import make_canvas, project_in_image, synthetic_camera
from ar_guide.synth.phantom import (BOARD_SQUARE_MM, BOARD_SQUARES, PLATE_MARGIN_MM, PLATE_THICKNESS_MM,
                                    hand_capsules, make_phantom)
from ar_guide.synth.segments import points_to_polyline, segment_polyline_distance, segment_segment_distance
from ar_guide.synth.take import Take
from ar_guide.synth.trajectory import board_viewing_geometry, cardinal_spline, eased_steps
from ar_guide.synth.visibility import BoardVisibilityModel, occluded


@pytest.fixture(scope="module")
def phantom():
    return make_phantom(7)


def winding_number(points: np.ndarray, mesh: meshes.Mesh) -> np.ndarray:
    """Generalised winding number of a closed mesh at each point: 1 inside, 0 outside.

    Sum of the triangles' signed solid angles over 4 pi (Van Oosterom and Strackee 1983).
    """
    out = []
    for p in np.atleast_2d(points):
        a, b, c = (mesh.vertices[mesh.faces[:, i]] - p for i in range(3))
        la, lb, lc = (np.linalg.norm(v, axis=1) for v in (a, b, c))
        num = np.einsum("ij,ij->i", a, np.cross(b, c))
        den = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
               + np.einsum("ij,ij->i", c, a) * lb)
        out.append(np.sum(2.0 * np.arctan2(num, den)) / (4.0 * np.pi))
    return np.array(out)


# -- primitives -----------------------------------------------------------------------------------

def test_segment_distance_matches_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(40):
        p1, q1, p2, q2 = rng.normal(size=(4, 3)) * rng.uniform(0.1, 10.0)
        s = np.linspace(0.0, 1.0, 1001)
        a = p1 + s[:, None] * (q1 - p1)
        b = p2 + s[:, None] * (q2 - p2)
        brute = np.min(np.linalg.norm(a[:, None] - b[None], axis=2))
        d = float(segment_segment_distance(p1, q1, p2, q2))
        # The exact minimum lies below the sampled one by at most the two sampling steps.
        step = (np.linalg.norm(q1 - p1) + np.linalg.norm(q2 - p2)) / 1000
        assert d <= brute + 1e-12
        assert brute - d <= step


def test_segment_distance_known_answers():
    # Crossing skew lines 2 apart; parallel overlapping segments 1 apart; point to segment end.
    assert segment_segment_distance([-1, 0, 0], [1, 0, 0], [0, -1, 2], [0, 1, 2]) == pytest.approx(2.0)
    assert segment_segment_distance([0, 0, 0], [4, 0, 0], [1, 1, 0], [3, 1, 0]) == pytest.approx(1.0)
    assert segment_segment_distance([5, 0, 0], [5, 0, 0], [0, 0, 0], [3, 0, 0]) == pytest.approx(2.0)
    poly = np.array([[0.0, 0, 0], [10, 0, 0], [10, 10, 0]])
    np.testing.assert_allclose(points_to_polyline(np.array([[5.0, 3, 0], [12, 5, 0], [-3, -4, 0]]), poly),
                               [3.0, 2.0, 5.0])
    assert segment_polyline_distance(np.array([5.0, 5, 4]), np.array([5.0, 5, -4]), poly) == pytest.approx(5.0)


@pytest.mark.parametrize("make, volume", [
    # Inscribed polygons lose a little volume: cos-like factors of 16-24 sides, 4-5 rings.
    (lambda: meshes.capsule([0, 0, 0], [30, 10, 5], 8.0, sides=24, rings=6),
     np.pi * 8.0 ** 2 * np.sqrt(30 ** 2 + 10 ** 2 + 5 ** 2) + 4 / 3 * np.pi * 8.0 ** 3),
    (lambda: meshes.cylinder(10.0, 40.0, sides=48), np.pi * 10.0 ** 2 * 40.0),
    (lambda: meshes.tube(np.column_stack([np.linspace(0, 100, 50), np.zeros(50), np.zeros(50)]), 5.0, sides=32),
     np.pi * 5.0 ** 2 * 100.0),
    (lambda: meshes.box((10.0, 20.0, 30.0)), 6000.0),
])
def test_closed_primitives_are_watertight_and_outward(make, volume):
    import trimesh

    mesh = make()
    tm = trimesh.Trimesh(mesh.vertices, mesh.faces)  # merges the duplicated seam vertices
    assert tm.is_watertight and tm.is_winding_consistent
    assert meshes.signed_volume(mesh.vertices, mesh.faces) == pytest.approx(volume, rel=0.03)
    assert meshes.signed_volume(mesh.vertices, mesh.faces) <= volume * (1 + 1e-9)


# -- phantom ----------------------------------------------------------------------------------

def test_phantom_meshes_are_closed_and_outward(phantom):
    import trimesh

    for name in ("skin", "liver", "tumour", "vessel", "plate", "post"):
        mesh = getattr(phantom, name)
        tm = trimesh.Trimesh(mesh.vertices, mesh.faces)
        assert tm.is_watertight, name
        assert tm.is_winding_consistent, name
        assert meshes.signed_volume(mesh.vertices, mesh.faces) > 0, name


def test_anatomy_sizes_and_nesting(phantom):
    # The liver: a few thousand triangles, adult size (about 17 x 10 x 14 cm here).
    assert 2000 <= len(phantom.liver.faces) <= 10000
    extent = np.ptp(phantom.liver.vertices, axis=0)
    assert np.all((extent > 80.0) & (extent < 200.0))
    # Tumour 15-25 mm across, centred where the scene says, fully inside the liver.
    diameter = np.ptp(phantom.tumour.vertices, axis=0)
    assert np.all((diameter > 15.0) & (diameter < 25.0))
    np.testing.assert_allclose(phantom.tumour.vertices.mean(axis=0), phantom.tumour_centre_ct, atol=1.0)
    assert np.all(winding_number(phantom.tumour.vertices[::20], phantom.liver) > 0.99)
    # Liver, tumour and vessel inside the torso, at least 5 mm under the skin.
    for mesh in (phantom.liver, phantom.tumour, phantom.vessel):
        pushed = mesh.vertices + 5.0 * mesh.normals
        assert np.all(phantom.torso_shape.contains(pushed))


def test_vessel_passes_near_the_tumour_without_touching_it(phantom):
    centre_gap = np.min(points_to_polyline(phantom.tumour_centre_ct[None], phantom.vessel_centreline_ct))
    wall_gap = centre_gap - phantom.tumour_radius_mm - phantom.vessel_radius_mm
    assert 2.0 < wall_gap < 10.0
    # The tumour's actual surface (irregular) does not reach into the vessel either.
    d = points_to_polyline(phantom.tumour.vertices, phantom.vessel_centreline_ct)
    assert np.min(d) > phantom.vessel_radius_mm


def test_needle_path_enters_on_the_skin_and_avoids_the_vessel(phantom):
    settings = SynthSettings()
    entry, target = phantom.entry_ct, phantom.tumour_centre_ct
    d = (entry - target) / np.linalg.norm(entry - target)
    shape = phantom.torso_shape
    # On the surface: just inside along the path, just outside beyond it.
    assert shape.contains((entry - 1e-3 * d)[None])[0]
    assert not shape.contains((entry + 1e-3 * d)[None])[0]
    clearance = segment_polyline_distance(entry, target, phantom.vessel_centreline_ct) - phantom.vessel_radius_mm
    assert clearance >= settings.needle_vessel_clearance_mm
    # The planner had to avoid something: the straight anterior path would hit the vessel.
    straight = shape.exit_points(target, [[0.0, -1.0, 0.0]])[0]
    assert segment_polyline_distance(straight, target, phantom.vessel_centreline_ct) < phantom.vessel_radius_mm
    tilt = np.degrees(np.arccos(-d[1]))
    assert 0.0 < tilt <= settings.needle_max_tilt_deg + 1e-9
    assert 40.0 < np.linalg.norm(entry - target) < 150.0


def test_board_is_rigid_sized_and_clear_of_the_skin(phantom):
    m = check_transform(phantom.ct_from_reference)
    assert phantom.board_size_mm == (BOARD_SQUARES[0] * BOARD_SQUARE_MM, BOARD_SQUARES[1] * BOARD_SQUARE_MM)
    # The printed face looks anterior (towards the camera): -z_ref within 20 degrees of CT -y.
    assert np.degrees(np.arccos(-m[:3, 2] @ [0.0, -1.0, 0.0])) < 20.0
    # Plate underside at least 10 mm above the skin everywhere (outline and a grid).
    w, h = phantom.board_size_mm
    gx, gy = np.meshgrid(np.linspace(-PLATE_MARGIN_MM, w + PLATE_MARGIN_MM, 13),
                         np.linspace(-PLATE_MARGIN_MM, h + PLATE_MARGIN_MM, 9))
    under = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, PLATE_THICKNESS_MM + 10.0)])
    assert not np.any(phantom.torso_shape.contains(transform_points(m, under)))
    # The post reaches into the skin (it stands on the phantom).
    assert np.any(phantom.torso_shape.contains(phantom.post.vertices))
    # 17 markers and 24 inner corners on a 7 x 5 board.
    assert len(phantom.board_markers_reference) == 17
    assert phantom.board_corners_reference.shape == (24, 3)


def test_phantom_is_deterministic_per_seed():
    a, b, c = make_phantom(7), make_phantom(7), make_phantom(8)
    np.testing.assert_array_equal(a.liver.vertices, b.liver.vertices)
    np.testing.assert_array_equal(a.entry_ct, b.entry_ct)
    assert not np.allclose(a.liver.vertices, c.liver.vertices)


# -- camera model and canvas --------------------------------------------------------------------

def test_demo_camera_has_realistic_distortion_and_scales():
    cam = synthetic_camera(1280, 720)
    assert cam.image_size == (1280, 720)
    assert 1000 <= cam.fx <= 1100 and 1000 <= cam.fy <= 1100
    assert 0 < abs(cam.cx - 639.5) < 10 and 0 < abs(cam.cy - 359.5) < 10
    k1, k2, p1, p2, k3 = cam.distortion
    assert -0.3 <= k1 <= -0.25 and 0.08 <= k2 <= 0.12 and 0 < abs(p1) < 0.005 and 0 < abs(p2) < 0.005
    small = synthetic_camera(640, 360)
    # Same lens: a point lands on the same relative position (OpenCV centre convention).
    p = np.array([[40.0, -25.0, 300.0]])
    np.testing.assert_allclose((small.project(p) + 0.5) * 2.0, cam.project(p) + 0.5, atol=1e-9)


def test_canvas_covers_the_image_footprint():
    cam = synthetic_camera(1280, 720)
    canvas = make_canvas(cam)
    wc, hc = canvas.size
    # Every image pixel maps to a canvas position with room for bilinear interpolation.
    assert canvas.map_x.min() >= 1.0 and canvas.map_x.max() <= wc - 2.0
    assert canvas.map_y.min() >= 1.0 and canvas.map_y.max() <= hc - 2.0
    # Consistency of the maps with projectPoints: the canvas point of a pixel, unprojected and
    # projected through the distortion model, is that pixel again.
    rng = np.random.default_rng(1)
    u = rng.integers(0, 1280, 200)
    v = rng.integers(0, 720, 200)
    kc = canvas.camera_matrix
    x = (canvas.map_x[v, u] - kc[0, 2]) / kc[0, 0]
    y = (canvas.map_y[v, u] - kc[1, 2]) / kc[1, 1]
    uv = cam.project(np.column_stack([x, y, np.ones_like(x)]))
    # float32 maps: ~1e-4 px at canvas coordinates of ~1500.
    np.testing.assert_allclose(uv, np.column_stack([u, v]), atol=2e-4)


def test_points_beyond_the_lens_fold_are_outside_the_image():
    cam = synthetic_camera(1280, 720)
    canvas = make_canvas(cam)
    # Far outside the field of view, OpenCV's polynomial folds back and lands inside the image.
    r = np.linspace(2.0, 3.5, 3001)
    rays = np.column_stack([0.87 * r, 0.49 * r, np.ones_like(r)])
    uv = cam.project(rays)
    naive = (uv[:, 0] >= 0) & (uv[:, 0] <= 1279) & (uv[:, 1] >= 0) & (uv[:, 1] <= 719)
    assert naive.any()  # the trap exists for this lens
    _uv, inside = project_in_image(rays, cam, canvas)
    assert not inside.any()
    _uv, inside = project_in_image(np.array([[0.0, 0.0, 500.0], [0.0, 0.0, -500.0]]), cam, canvas)
    assert inside.tolist() == [True, False]


# -- camera script ------------------------------------------------------------------------------

def test_cardinal_spline_passes_through_keys_and_is_smooth():
    times = np.array([0.0, 1.0, 2.5, 3.0])
    values = np.array([[0.0], [2.0], [-1.0], [4.0]])
    np.testing.assert_allclose(cardinal_spline(times, values, times), values, atol=1e-12)
    # C1 at the interior keys: one-sided slopes agree, and equal the neighbours' secant
    # (values[i+1] - values[i-1]) / (times[i+1] - times[i-1]).
    eps = 1e-6
    for i in (1, 2):
        k = times[i]
        left = (cardinal_spline(times, values, k) - cardinal_spline(times, values, k - eps))[0] / eps
        right = (cardinal_spline(times, values, k + eps) - cardinal_spline(times, values, k))[0] / eps
        secant = (values[i + 1, 0] - values[i - 1, 0]) / (times[i + 1] - times[i - 1])
        assert left == pytest.approx(secant, abs=1e-3) and right == pytest.approx(secant, abs=1e-3)
    eased = eased_steps([(0.0, 0.0), (1.0, 10.0)], [-1.0, 0.0, 0.5, 1.0, 2.0])
    assert eased.tolist() == [0.0, 0.0, 5.0, 10.0, 10.0]


@pytest.fixture(scope="module")
def demo_script():
    """Ground truth of the 10 s demo take at 30 fps, without rendering."""
    take = Take(1280, 720, 10.0, 7)
    times = np.arange(300) / 30.0
    truths = [take.truth(t) for t in times]
    return take, times, truths


def runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of each run of True."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i - start))
            start = None
    return out


def test_demo_script_covers_the_required_situations(demo_script):
    take, times, truths = demo_script
    markers = np.array([t.visibility.visible_markers for t in truths])
    covering = np.array([t.visibility.hand_covering for t in truths])
    size = take.phantom.board_size_mm
    geometry = np.array([board_viewing_geometry(t.camera_from_reference, size) for t in truths])
    angle, distance = geometry[:, 0], geometry[:, 1]
    # (a) The board leaves the view entirely once, for about 1 s.
    out = runs(markers == 0)
    assert len(out) == 1 and 0.8 <= out[0][1] / 30.0 <= 1.3
    # (b) A hand covers part of the board once, for about 1.5 s, while some markers stay visible.
    hand = runs(covering)
    assert len(hand) == 1 and 1.3 <= hand[0][1] / 30.0 <= 1.8
    during = markers[hand[0][0]:hand[0][0] + hand[0][1]]
    # (At its edges the hand may cover only squares between markers.)
    assert np.mean(during < 17) > 0.9 and np.all(during >= 6)
    # (c) Viewing angles up to 50-60 degrees; distances 300-600 mm in the orbit, far moment > 700.
    assert 50.0 <= angle.max() <= 60.0
    in_view = markers > 0
    assert np.percentile(distance[in_view], 5) >= 300.0
    assert np.median(distance[in_view]) <= 600.0
    assert distance.max() >= 700.0
    # The target stays in the image while the whole board is (all but a few pan frames).
    inside = []
    for tr in truths:
        camera_from_ct = tr.camera_from_reference @ take.phantom.reference_from_ct
        p = transform_points(camera_from_ct, take.phantom.tumour_centre_ct[None])
        _uv, ok = project_in_image(p, take.camera, take.canvas)
        inside.append(ok[0])
    assert np.mean(np.array(inside)[markers == 17]) > 0.97


def test_demo_script_motion_is_smooth(demo_script):
    take, times, truths = demo_script
    poses = np.array([invert_transform(t.camera_from_reference) for t in truths])
    speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) * 30.0
    # A hand-held camera: under 1.5 m/s (TrackingGates.max_speed_mm_per_s), no teleporting.
    assert speed.max() < 1500.0
    accel = np.abs(np.diff(speed)) * 30.0
    assert accel.max() < 10000.0


def test_script_is_deterministic_and_tremor_depends_on_the_seed():
    a = Take(640, 360, 2.0, 7)
    b = Take(640, 360, 2.0, 7)
    c = Take(640, 360, 2.0, 8)
    t = np.linspace(0.0, 2.0, 7)
    np.testing.assert_array_equal(a.camera_from_ct(t), b.camera_from_ct(t))
    difference = np.abs(a.camera_from_ct(t)[:, :3, 3] - c.camera_from_ct(t)[:, :3, 3])
    assert 0.05 < difference.max() < 20.0  # tremor and sway only, same script


def test_short_take_has_the_same_content_as_the_demo():
    long_take = Take(1280, 720, 10.0, 7)
    short_take = Take(640, 360, 2.0, 7)
    for s in (0.0, 2.2, 5.0, 7.0, 9.3):
        a = long_take.camera_path.nominal(s)[0]
        b = short_take.camera_path.nominal(s / 5.0)[0]
        np.testing.assert_allclose(a, b, atol=1e-9)


# -- visibility ---------------------------------------------------------------------------------

def test_visibility_known_answers(phantom):
    cam = synthetic_camera(1280, 720)
    canvas = make_canvas(cam)
    model = BoardVisibilityModel(phantom.board_markers_reference, phantom.board_corners_reference,
                                 phantom.board_size_mm)
    centre = np.array([105.0, 75.0, 0.0])

    def view(eye_ref, target_ref=centre, capsules=None):
        camera_from_reference = invert_transform(look_at(eye_ref, target_ref, up=(0.0, -1.0, 0.0)))
        return model.evaluate(camera_from_reference, cam, canvas, capsules), camera_from_reference

    # Straight in front at 500 mm: everything visible.
    v, _ = view(centre + [0.0, 0.0, -500.0])
    assert (v.visible_markers, v.visible_corners, v.hand_covering) == (17, 24, False)
    # From behind the plate: nothing.
    v, _ = view(centre + [0.0, 0.0, 500.0])
    assert (v.visible_markers, v.visible_corners) == (0, 0)
    # Looking 400 mm to the side: the board is out of the image.
    v, _ = view(centre + [0.0, 0.0, -500.0], centre + [600.0, 0.0, 0.0])
    assert (v.visible_markers, v.visible_corners) == (0, 0)
    # Close enough that only the middle of the board fits: fewer, but some.
    v, _ = view(centre + [0.0, 0.0, -120.0])
    assert 0 < v.visible_markers < 17 and 0 < v.visible_corners < 24
    # A 40 mm-thick bar 100 mm in front of the board's left third hides the markers behind it.
    v_free, camera_from_reference = view(centre + [0.0, 0.0, -500.0])
    bar = [(transform_points(camera_from_reference, [[50.0, -50.0, -100.0]])[0],
            transform_points(camera_from_reference, [[50.0, 200.0, -100.0]])[0], 20.0)]
    v_bar = model.evaluate(camera_from_reference, cam, canvas, bar)
    assert v_bar.hand_covering and 0 < v_bar.visible_markers < 17 and v_bar.visible_corners < 24


def test_occlusion_by_capsule_is_along_the_line_of_sight():
    capsule = [(np.array([-50.0, 0.0, 200.0]), np.array([50.0, 0.0, 200.0]), 10.0)]
    points = np.array([[0.0, 0.0, 500.0],   # behind the capsule: hidden
                       [0.0, 0.0, 150.0],   # in front of it: seen
                       [0.0, 60.0, 500.0],  # ray passes 24 mm from the axis at z = 200: seen
                       [0.0, 20.0, 500.0]])  # ray passes 8 mm from the axis: hidden
    assert occluded(points, capsule).tolist() == [True, False, False, True]


def test_hand_is_a_plausible_adult_hand():
    caps = hand_capsules()
    ends = np.array([c[0] for c in caps] + [c[1] for c in caps])
    radii = np.array([c[2] for c in caps])
    length = np.ptp(ends[:, 0]) + 2 * radii.max()
    width = np.ptp(ends[:, 1]) + 2 * radii.max()
    assert 160.0 < length < 220.0
    assert 70.0 < width < 150.0
    assert np.all((radii >= 7.0) & (radii <= 13.0))
