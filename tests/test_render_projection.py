"""The anatomy renderer puts every point where cv2.projectPoints does, distortion included,
and draws layers in the right order with the right opacity."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import trimesh

from ar_guide.camera import CameraModel
from ar_guide.constants import RenderSettings
from ar_guide.errors import InputError, RenderUnavailable
from ar_guide.geometry.transforms import GL_CAMERA_FROM_CAMERA, make_transform, rotation_from_rotvec
from ar_guide.render import gl
from ar_guide.render.anatomy import (AnatomyRenderer, MeshLayer, clip_from_camera, clip_from_gl_camera,
                                     distortion_canvas, is_closed_and_oriented, undistorted_pixel_grid)

# A real-looking wide-angle lens at 1280x720 (brief: k1 -0.28, k2 0.09, p1 1e-3, p2 -5e-4, k3 -0.01).
K = np.array([[1000.0, 0.0, 643.7], [0.0, 1002.0, 357.2], [0.0, 0.0, 1.0]])
D = np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01])
CAMERA = CameraModel(K, D, (1280, 720))


@pytest.fixture(scope="module")
def ctx():
    try:
        context = gl.create_context()
    except RenderUnavailable as exc:
        pytest.skip(str(exc))
    yield context
    context.release()


def project_cv(points_camera: np.ndarray, camera: CameraModel = CAMERA) -> np.ndarray:
    uv, _ = cv2.projectPoints(np.asarray(points_camera, np.float64).reshape(-1, 1, 3), np.zeros(3), np.zeros(3),
                              camera.camera_matrix, camera.distortion)
    return uv.reshape(-1, 2)


def grid_plane(half_size_mm: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    g = np.linspace(-half_size_mm, half_size_mm, n + 1)
    x, y = np.meshgrid(g, g)
    vertices = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    a = (np.arange(n)[:, None] * (n + 1) + np.arange(n)[None, :]).ravel()
    faces = np.vstack([np.column_stack([a, a + 1, a + n + 2]), np.column_stack([a, a + n + 2, a + n + 1])])
    return vertices, faces


def sphere(radius: float, centre=(0.0, 0.0, 0.0), subdivisions: int = 3):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return m.vertices + np.asarray(centre), m.faces


# -- the projection itself ---------------------------------------------------------------------

def test_clip_matrix_maps_to_opencv_pixel_centres():
    """x_ndc = 2 (u + 0.5) / W - 1 with u from K (OpenCV centres at integers, GL at +0.5),
    no row flip, z_ndc = -1 at near and +1 at far."""
    kc = np.array([[900.0, 2.0, 700.3], [0.0, 905.0, 400.8], [0.0, 0.0, 1.0]])
    size = (1500, 820)
    m = clip_from_camera(kc, size, 10.0, 5000.0)
    rng = np.random.default_rng(1)
    p = np.column_stack([rng.uniform(-300, 300, 50), rng.uniform(-200, 200, 50), rng.uniform(200, 900, 50)])
    clip = np.column_stack([p, np.ones(50)]) @ m.T
    ndc = clip[:, :3] / clip[:, 3:]
    window = np.column_stack([(ndc[:, 0] + 1) * size[0] / 2, (ndc[:, 1] + 1) * size[1] / 2])
    uv = (p @ kc.T)[:, :2] / p[:, 2:]
    np.testing.assert_allclose(window - 0.5, uv, atol=1e-9)
    for z, expected in ((10.0, -1.0), (5000.0, 1.0)):
        c = m @ [0.0, 0.0, z, 1.0]
        assert c[2] / c[3] == pytest.approx(expected, abs=1e-12)
    # The same matrix written for OpenGL's eye frame, through the one named flip.
    np.testing.assert_allclose(clip_from_gl_camera(kc, size, 10.0, 5000.0) @ GL_CAMERA_FROM_CAMERA, m, atol=1e-15)


@pytest.mark.parametrize("distortion", [D, [0.12, 0.02, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0]],
                         ids=["barrel", "pincushion", "none"])
def test_canvas_holds_every_image_pixel(distortion):
    camera = CameraModel(K, distortion, (1280, 720))
    canvas = distortion_canvas(camera)
    wc, hc = canvas.canvas_size
    # Bilinear sampling needs each pixel's canvas position and its neighbour inside the canvas.
    assert canvas.map_x.min() >= 0 and canvas.map_x.max() <= wc - 2
    assert canvas.map_y.min() >= 0 and canvas.map_y.max() <= hc - 2
    # The undistorted rays re-distort onto the pixel grid (Gauss-Newton to 1e-12).
    xy = undistorted_pixel_grid(camera).reshape(-1, 2)
    uv = project_cv(np.column_stack([xy, np.ones(len(xy))]), camera)
    u, v = np.meshgrid(np.arange(1280), np.arange(720))
    assert np.abs(uv - np.column_stack([u.ravel(), v.ravel()])).max() < 1e-8


def test_rendered_surface_points_land_where_projectPoints_puts_them(ctx):
    """Dense check through the whole pipeline (GL, readback, remap): each covered
    pixel holds the camera-frame point drawn there (float position mode); cv2.projectPoints of
    that point must give back the pixel.  A plane fills the frame, so the strongly distorted
    corners are in.  Measured: mean 0.0001 px, max 0.0003 px (float maps on a float image are
    not quantised; with the fixed-point maps of cv2.convertMaps it was mean 0.011, max 0.022)."""
    vertices, faces = grid_plane(900.0, 40)
    poses = [make_transform(rotation_from_rotvec([0.25, -0.2, 0.1]), [10.0, -20.0, 600.0]),
             make_transform(rotation_from_rotvec([0.0, 0.0, 0.7]), [-5.0, 3.0, 450.0])]
    with AnatomyRenderer(CAMERA, [MeshLayer("plane", vertices, faces, (1, 1, 1), 1.0)], ctx=ctx) as renderer:
        for pose in poses:
            positions = renderer.render_positions(pose)
            coverage = positions[..., 3]
            inside = coverage > 0.9999
            for corner in (np.s_[:40, :40], np.s_[:40, -40:], np.s_[-40:, :40], np.s_[-40:, -40:]):
                assert inside[corner].mean() > 0.99
            v, u = np.nonzero(inside)
            points = positions[inside][:, :3] / coverage[inside][:, None]
            error = np.hypot(*(project_cv(points) - np.column_stack([u, v])).T)
            assert error.mean() < 0.002, error.mean()
            assert error.max() < 0.005, error.max()
            corner_px = (u < 60) & (v < 60)
            assert error[corner_px].mean() < 0.002


def _disc(centre_camera, radius_mm, n=48):
    """A flat disc facing the camera (perpendicular to the ray through its centre)."""
    c = np.asarray(centre_camera, np.float64)
    ray = c / np.linalg.norm(c)
    a = np.cross(ray, [0.0, 1.0, 0.0])
    a /= np.linalg.norm(a)
    b = np.cross(ray, a)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    vertices = np.vstack([c, c + radius_mm * (np.cos(t)[:, None] * a + np.sin(t)[:, None] * b)])
    faces = np.array([[0, 1 + i, 1 + (i + 1) % n] for i in range(n)])
    return vertices, faces


def test_rendered_disc_centres_match_projectPoints_in_rgba(ctx):
    """The RGBA output itself: 25 small camera-facing discs (about 6 px radius) at pixels
    spanning the image, corners included.  The alpha-weighted centroid of each must sit on
    cv2.projectPoints of its centre.  Measured: mean 0.054 px, max 0.17 px (aliasing of the
    binary coverage dominates; distortion bends a 6 px disc's centroid by < 0.02 px)."""
    targets = np.array([[u, v] for u in (30.0, 200.3, 640.0, 1080.6, 1250.0) for v in (25.0, 180.0, 360.4, 540.0, 695.2)])
    xy = cv2.undistortPoints(targets.reshape(-1, 1, 2), K, D, R=None, P=None,
                             criteria=(cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 100, 1e-14)).reshape(-1, 2)
    rng = np.random.default_rng(7)
    z = rng.uniform(300.0, 800.0, len(xy))
    centres = np.column_stack([xy * z[:, None], z])
    layers = [MeshLayer(f"disc{i}", *_disc(c, 6.0 * c[2] / 1000.0), (1.0, 1.0, 1.0), 1.0)
              for i, c in enumerate(centres)]
    with AnatomyRenderer(CAMERA, layers, ctx=ctx) as renderer:
        alpha = renderer.render(np.eye(4))[..., 3].astype(np.float64)
    expected = project_cv(centres)
    np.testing.assert_allclose(expected, targets, atol=1e-6)
    errors = []
    for e in expected:
        x0, y0 = np.round(e).astype(int)
        ys, xs = slice(max(y0 - 12, 0), y0 + 13), slice(max(x0 - 12, 0), x0 + 13)
        window = alpha[ys, xs]
        yy, xx = np.mgrid[ys, xs][:, :window.shape[0], :window.shape[1]]
        assert window.sum() > 50 * 255  # the disc is there (113 px at the centre, less in the corners)
        centroid = np.array([(window * xx).sum(), (window * yy).sum()]) / window.sum()
        errors.append(np.linalg.norm(centroid - e))
    errors = np.array(errors)
    assert errors.mean() < 0.1, errors
    assert errors.max() < 0.25, errors


# -- drawing order, culling, opacity ----------------------------------------------------------

def test_depth_is_the_near_surface(ctx):
    vertices, faces = sphere(50.0, subdivisions=5)
    pose = make_transform(np.eye(3), [0.0, 0.0, 300.0])
    with AnatomyRenderer(CAMERA, [MeshLayer("ball", vertices, faces, (1, 0, 0), 1.0)], ctx=ctx) as renderer:
        depth = renderer.render_depth(pose)
    u, v = project_cv([[0.0, 0.0, 250.0]])[0]
    # The tessellated sphere lies inside the true one by at most its sagitta (~0.02 mm here).
    assert depth[int(round(v)), int(round(u))] == pytest.approx(250.0, abs=0.05)
    assert np.isnan(depth[0, 0])


@pytest.mark.parametrize("inward", [False, True], ids=["outward-wound", "inward-wound"])
def test_closed_opaque_mesh_hides_what_is_inside(ctx, inward):
    """Back-face culling with the y-mirrored projection (front faces clockwise): a wrong
    front_face would cull the near side and show the cube inside the ball."""
    ball_v, ball_f = sphere(60.0)
    if inward:
        ball_f = ball_f[:, ::-1]
    cube = trimesh.creation.box(extents=(30.0, 30.0, 30.0))
    layers = [MeshLayer("ball", ball_v, ball_f, (1.0, 0.0, 0.0), 1.0),
              MeshLayer("cube", cube.vertices, cube.faces, (0.0, 1.0, 0.0), 1.0)]
    pose = make_transform(rotation_from_rotvec([0.3, 0.2, 0.0]), [0.0, 0.0, 400.0])
    with AnatomyRenderer(CAMERA, layers, ctx=ctx) as renderer:
        assert all(g["cull"] for g in renderer._gpu)
        both = renderer.render(pose).copy()
        ball = renderer.render(pose, visible={"ball"}).copy()
        cube = renderer.render(pose, visible={"cube"}).copy()
    u, v = np.round(project_cv([[0.0, 0.0, 400.0]])[0]).astype(int)
    assert cube[v, u, 1] > 150  # the cube alone is seen there, green
    np.testing.assert_array_equal(both, ball)  # but the ball hides all of it


def test_unmerged_closed_mesh_is_still_culled_and_smooth(ctx):
    """STL-style meshes repeat each vertex per face; they are still recognised as closed (so a
    translucent one blends once, not front and back) and get smooth normals."""
    vertices, faces = sphere(50.0)
    soup_v = vertices[faces].reshape(-1, 3)
    soup_f = np.arange(len(soup_v)).reshape(-1, 3)
    pose = make_transform(np.eye(3), [0.0, 0.0, 400.0])
    layers = [MeshLayer("merged", vertices, faces, (1, 1, 1), 0.5), MeshLayer("soup", soup_v, soup_f, (1, 1, 1), 0.5)]
    with AnatomyRenderer(CAMERA, layers, ctx=ctx) as renderer:
        assert renderer._gpu[1]["cull"]
        merged = renderer.render(pose, visible={"merged"}).copy()
        soup = renderer.render(pose, visible={"soup"}).copy()
    assert np.abs(merged.astype(int) - soup.astype(int)).max() <= 1


def test_open_mesh_is_drawn_from_both_sides(ctx):
    vertices, faces = grid_plane(100.0, 4)
    assert not is_closed_and_oriented(faces)
    layer = MeshLayer("sheet", vertices, faces, (0.0, 0.0, 1.0), 1.0)
    with AnatomyRenderer(CAMERA, [layer], ctx=ctx) as renderer:
        front = renderer.render(make_transform(np.eye(3), [0.0, 0.0, 500.0])).copy()
        back = renderer.render(make_transform(rotation_from_rotvec([np.pi, 0.0, 0.0]), [0.0, 0.0, 500.0])).copy()
    u, v = np.round(project_cv([[0.0, 0.0, 500.0]])[0]).astype(int)
    assert front[v, u, 3] == 255 and back[v, u, 3] == 255


def test_target_shows_through_translucent_organ(ctx):
    """Premultiplied 'over': at the tumour, alpha = 1 and colour = 0.4 organ + 0.6 tumour;
    where only the organ is, alpha = 0.4 (102), not 0.4^2 and not 0.4 twice (back faces)."""
    organ_v, organ_f = sphere(80.0, subdivisions=4)
    tumour_v, tumour_f = sphere(20.0, subdivisions=4)
    white = MeshLayer("organ", organ_v, organ_f, (1.0, 1.0, 1.0), 0.4)
    tumour = MeshLayer("tumour", tumour_v, tumour_f, (0.0, 1.0, 0.0), 1.0, role="target")
    pose = make_transform(np.eye(3), [0.0, 0.0, 400.0])
    with AnatomyRenderer(CAMERA, [white, tumour], ctx=ctx) as renderer:
        both = renderer.render(pose).copy()
        organ_only = renderer.render(pose, visible={"organ"}).copy()
        tumour_only = renderer.render(pose, visible={"tumour"}).copy()
    u, v = np.round(project_cv([[0.0, 0.0, 400.0]])[0]).astype(int)
    assert both[v, u, 3] == 255
    expected = organ_only[v, u, :3].astype(int) + 0.6 * tumour_only[v, u, :3]
    np.testing.assert_allclose(both[v, u, :3], expected, atol=1.5)
    u2, v2 = np.round(project_cv([[50.0, 0.0, 340.0]])[0]).astype(int)  # organ, beside the tumour
    assert both[v2, u2, 3] == 102


def test_opacity_scale_and_visibility(ctx):
    vertices, faces = sphere(50.0)
    layers = [MeshLayer("a", vertices, faces, (1, 1, 1), 1.0), MeshLayer("b", vertices + [150, 0, 0], faces, (1, 1, 1), 1.0)]
    pose = make_transform(np.eye(3), [0.0, 0.0, 500.0])
    with AnatomyRenderer(CAMERA, layers, ctx=ctx) as renderer:
        half = renderer.render(pose, opacity_scale=0.5).copy()
        none = renderer.render(pose, opacity_scale=0.0).copy()
        only_b = renderer.render(pose, visible={"b"}).copy()
        with pytest.raises(ValueError, match=r"unknown anatomy layers \['c'\]"):
            renderer.render(pose, visible={"c"})
        with pytest.raises(ValueError, match="opacity_scale must lie in 0..1"):
            renderer.render(pose, opacity_scale=1.5)
        with pytest.raises(ValueError, match=r"out must be \(720, 1280, 4\) uint8"):
            renderer.render(pose, out=np.zeros((720, 1280, 3), np.uint8))
        renderer.render(pose)
        timings = renderer.last_timings
        assert timings.gl_ms > 0 and timings.readback_ms > 0 and timings.remap_ms > 0
        assert timings.total_ms == pytest.approx(timings.gl_ms + timings.readback_ms + timings.remap_ms)
    ua, va = np.round(project_cv([[0.0, 0.0, 450.0]])[0]).astype(int)
    ub, vb = np.round(project_cv([[150.0, 0.0, 450.0]])[0]).astype(int)
    assert half[va, ua, 3] in (127, 128)
    assert not none.any()
    assert only_b[va, ua, 3] == 0 and only_b[vb, ub, 3] == 255


def test_nothing_in_view_gives_an_empty_overlay(ctx):
    vertices, faces = sphere(30.0)
    with AnatomyRenderer(CAMERA, [MeshLayer("ball", vertices, faces, (1, 1, 1), 1.0)], ctx=ctx) as renderer:
        in_view = renderer.render(make_transform(np.eye(3), [0.0, 0.0, 400.0])).copy()
        assert in_view[..., 3].any()
        behind = renderer.render(make_transform(np.eye(3), [0.0, 0.0, -400.0]))
        assert not behind.any()  # also clears what the previous frame left
        aside = renderer.render(make_transform(np.eye(3), [4000.0, 0.0, 400.0]))
        assert not aside.any()
    # Straddling the camera plane (z from -30 to 50 mm, to the right): clipped at the near plane.
    box = trimesh.creation.box(extents=(80.0, 80.0, 80.0))
    with AnatomyRenderer(CAMERA, [MeshLayer("box", box.vertices, box.faces, (1, 1, 1), 1.0)], ctx=ctx) as renderer:
        straddle = renderer.render(make_transform(np.eye(3), [60.0, 0.0, 10.0]))
        covered = straddle[..., 3] > 0
        assert covered[:, 1000:].mean() > 0.5 and not covered[:, :600].any()


def test_box_restricted_frame_equals_whole_frame(ctx):
    """Clearing, readback and remap are limited to the layers' projected box; the result must
    equal the unrestricted pipeline, and nothing of an earlier frame may remain."""
    organ_v, organ_f = sphere(40.0, subdivisions=4)
    layers = [MeshLayer("organ", organ_v, organ_f, (0.9, 0.5, 0.4), 0.6),
              MeshLayer("core", *sphere(12.0, (5.0, 0.0, 0.0)), (1.0, 1.0, 0.0), 1.0)]
    whole = AnatomyRenderer(CAMERA, layers, ctx=ctx)
    whole._bbox_ok = False
    boxed = AnatomyRenderer(CAMERA, layers, ctx=ctx)
    try:
        out = np.full((720, 1280, 4), 77, np.uint8)
        for x, y, z in ((0, 0, 400), (380, 200, 500), (-300, -150, 350), (0, 0, 120), (600, -300, 700)):
            pose = make_transform(rotation_from_rotvec([0.1 * x / 100, 0.2, 0.0]), [x, y, z])
            expected = whole.render(pose).copy()
            np.testing.assert_array_equal(boxed.render(pose), expected)
            np.testing.assert_array_equal(boxed.render(pose, out=out), expected)
    finally:
        whole.release()
        boxed.release()


# -- validation --------------------------------------------------------------------------------

def test_mesh_layer_validation():
    v, f = sphere(10.0, subdivisions=1)
    with pytest.raises(InputError, match=r"'anatomy\[liver\]': expected \(N, 3\) vertices"):
        MeshLayer("liver", v[:, :2], f, (1, 0, 0), 1.0)
    with pytest.raises(InputError, match=r"face indices must lie in 0..41"):
        MeshLayer("liver", v, f + 1, (1, 0, 0), 1.0)
    with pytest.raises(InputError, match="vertices must be finite"):
        MeshLayer("liver", np.where(np.arange(len(v))[:, None] == 3, np.nan, v), f, (1, 0, 0), 1.0)
    with pytest.raises(InputError, match=r"color must be three numbers in 0..1, got \(255, 0, 0\)"):
        MeshLayer("liver", v, f, (255, 0, 0), 1.0)
    with pytest.raises(InputError, match="opacity must lie in 0..1, got 1.5"):
        MeshLayer("liver", v, f, (1, 0, 0), 1.5)
    with pytest.raises(InputError, match="role must be one of organ, target"):
        MeshLayer("liver", v, f, (1, 0, 0), 1.0, role="bone")


def test_renderer_refuses_unknown_image_size_and_duplicate_names(ctx):
    v, f = sphere(10.0, subdivisions=1)
    layer = MeshLayer("liver", v, f, (1, 0, 0), 1.0)
    no_size = CameraModel(K, D, None, source="cam.yaml")
    with pytest.raises(InputError, match=r"cam.yaml: the renderer needs the calibration's image size"):
        AnatomyRenderer(no_size, [layer], ctx=ctx)
    with pytest.raises(InputError, match="layer names must be unique; repeated: liver"):
        AnatomyRenderer(CAMERA, [layer, layer], ctx=ctx)


def test_narrow_canvas_scale_still_projects_exactly(ctx):
    """canvas_scale < 1 (a faster, coarser canvas) keeps the geometry exact; only sampling changes."""
    vertices, faces = grid_plane(900.0, 10)
    settings = RenderSettings(canvas_scale=0.7)
    with AnatomyRenderer(CAMERA, [MeshLayer("plane", vertices, faces, (1, 1, 1), 1.0)], ctx=ctx,
                         settings=settings) as renderer:
        positions = renderer.render_positions(make_transform(np.eye(3), [0.0, 0.0, 500.0]))
    inside = positions[..., 3] > 0.9999
    v, u = np.nonzero(inside)
    points = positions[inside][:, :3] / positions[inside][:, 3:]
    error = np.hypot(*(project_cv(points) - np.column_stack([u, v])).T)
    assert inside.mean() > 0.999
    assert error.mean() < 0.002


def test_distortion_that_folds_inside_the_image_is_refused():
    # k1 = -0.9 at this field: r_d = r (1 - 0.9 r^2) peaks at r = 0.61 (r_d = 0.41), but the image
    # corners need r_d = 0.73: no undistorted ray reaches them.
    camera = CameraModel(K, [-0.9, 0.0, 0.0, 0.0, 0.0], (1280, 720), source="wide.yaml")
    with pytest.raises(InputError, match=r"wide.yaml: 'distortion_coefficients': the distortion coefficients "
                                         r"cannot be inverted at \d+ pixels of the 1280x720 image"):
        distortion_canvas(camera)
