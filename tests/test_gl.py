"""Headless OpenGL contexts: EGL and OSMesa, picked automatically or forced; same pixels."""

from __future__ import annotations

import ctypes.util

import numpy as np
import pytest
import trimesh

from ar_guide.camera import CameraModel
from ar_guide.errors import RenderUnavailable
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from ar_guide.render import gl
from ar_guide.render.anatomy import AnatomyRenderer, MeshLayer


def _context_or_skip(backend: str):
    try:
        return gl.create_context(backend)
    except RenderUnavailable as exc:
        library = {"egl": "libEGL (libegl1, libgl1-mesa-dri)", "osmesa": "libOSMesa (libosmesa6)"}[backend]
        pytest.skip(f"{backend} backend unavailable, {library} missing or unusable: {exc}")


@pytest.fixture(scope="module", params=gl.BACKENDS)
def context(request):
    ctx = _context_or_skip(request.param)
    yield ctx
    ctx.release()


def _scene():
    # A translucent closed organ-like body with an opaque target inside, and an open sheet.
    organ = trimesh.creation.icosphere(subdivisions=3, radius=60.0)
    organ.vertices *= [1.4, 1.0, 0.8]
    tumour = trimesh.creation.icosphere(subdivisions=2, radius=15.0)
    tumour.vertices += [10.0, -5.0, 0.0]
    sheet = trimesh.Trimesh([[-90, -90, 60], [90, -90, 60], [90, 90, 60], [-90, 90, 60]], [[0, 1, 2], [0, 2, 3]])
    return [
        MeshLayer("organ", organ.vertices, organ.faces, (0.8, 0.4, 0.35), 0.5),
        MeshLayer("tumour", tumour.vertices, tumour.faces, (1.0, 0.9, 0.1), 1.0, role="target"),
        MeshLayer("sheet", sheet.vertices, sheet.faces, (0.2, 0.5, 0.9), 0.3, role="skin"),
    ]


def _camera():
    k = np.array([[500.0, 0.0, 319.5], [0.0, 500.0, 239.5], [0.0, 0.0, 1.0]])
    return CameraModel(k, [-0.2, 0.05, 0.0, 0.0, 0.0], (640, 480))


POSE = make_transform(rotation_from_rotvec([0.4, -0.3, 0.1]), [5.0, -8.0, 400.0])


def test_context_is_opengl_33_core_on_each_backend(context):
    assert context.version_code >= 330
    assert gl.backend_of(context) in gl.BACKENDS


def test_env_var_forces_backend(monkeypatch):
    for backend in gl.BACKENDS:
        monkeypatch.setenv("AR_GUIDE_GL", backend)
        try:
            ctx = gl.create_context()
        except RenderUnavailable as exc:
            assert backend in str(exc)  # a forced backend is not silently replaced by another
            continue
        assert gl.backend_of(ctx) == backend
        ctx.release()


def test_env_var_auto_and_unknown(monkeypatch):
    monkeypatch.setenv("AR_GUIDE_GL", "auto")
    assert gl.requested_backend() is None
    monkeypatch.setenv("AR_GUIDE_GL", "vulkan")
    with pytest.raises(RenderUnavailable, match="AR_GUIDE_GL='vulkan' is not one of egl, osmesa"):
        gl.create_context()
    with pytest.raises(RenderUnavailable, match="unknown OpenGL backend 'wgl'"):
        gl.create_context("wgl")


def test_missing_osmesa_library_reports_why(monkeypatch):
    monkeypatch.setattr(gl, "_OSMESA_LIBRARY_NAMES", ("libOSMesa-does-not-exist.so",))
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    with pytest.raises(RenderUnavailable, match=r"osmesa: libOSMesa not found .*libOSMesa-does-not-exist"):
        gl.create_context("osmesa")


def test_premultiplied_alpha_is_not_squared(context):
    """Opacity 0.5 must read back as alpha 0.5 (128), not 0.25 (the SRC_ALPHA blend squares it)
    and not 1 (RGBA ignored); two nested 0.5 shells give 1 - 0.5^2 = 0.75 (191)."""
    camera = _camera()
    outer = trimesh.creation.icosphere(subdivisions=3, radius=80.0)
    inner = trimesh.creation.icosphere(subdivisions=3, radius=40.0)
    layers = [MeshLayer("outer", outer.vertices, outer.faces, (1.0, 1.0, 1.0), 0.5),
              MeshLayer("inner", inner.vertices, inner.faces, (1.0, 1.0, 1.0), 0.5)]
    with AnatomyRenderer(camera, layers, ctx=context) as renderer:
        pose = make_transform(np.eye(3), [0.0, 0.0, 400.0])
        one = renderer.render(pose, visible={"outer"}).copy()
        two = renderer.render(pose).copy()
    # 0.5 * 255 = 127.5: GL's unorm conversion gives 127 or 128.
    assert one[240, 320, 3] in (127, 128)
    assert two[240, 320, 3] in (191, 192)
    # Premultiplied: no colour channel exceeds alpha.
    assert np.all(two[..., :3] <= two[..., 3:4])


def test_backends_render_identical_pixels():
    contexts = [_context_or_skip(b) for b in gl.BACKENDS]
    images = []
    try:
        for ctx in contexts:
            with AnatomyRenderer(_camera(), _scene(), ctx=ctx) as renderer:
                images.append(renderer.render(POSE).copy())
        # Interleaved use of both contexts in one thread: each renderer enters its own context.
        renderers = [AnatomyRenderer(_camera(), _scene(), ctx=ctx) for ctx in contexts]
        again = [r.render(POSE).copy() for r in renderers] + [renderers[0].render(POSE).copy()]
        for r in renderers:
            r.release()
    finally:
        for ctx in contexts:
            ctx.release()
    assert images[0][..., 3].astype(bool).mean() > 0.1  # the scene is really there
    assert len(np.unique(images[0].reshape(-1, 4), axis=0)) > 100  # shaded, several layers
    np.testing.assert_array_equal(images[0], images[1])
    for image in again:
        np.testing.assert_array_equal(image, images[0])
