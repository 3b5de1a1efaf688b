"""Offscreen rendering of registered anatomy meshes into the distorted camera image.

How the image is made (one frame):

1. The meshes are drawn with OpenGL (moderngl, headless) into a *pinhole canvas*: an ideal
   camera with the calibration's focal lengths and skew, wide enough to hold the undistorted
   footprint of the whole image (every pixel of the real image, undistorted, falls inside it).
2. The canvas is read back (RGBA8, premultiplied) into a preallocated buffer.
3. ``cv2.remap`` (bilinear) moves it into the distorted image with maps computed once per
   camera: for each image pixel, where its undistorted ray meets the canvas.  The maps are
   float32 (remap quantises them to 1/32 px internally): with OpenCV 5.1 on this CPU they
   remapped 25-35 % faster than the fixed-point maps of cv2.convertMaps.

So the overlay follows OpenCV's distortion model exactly as ``cv2.projectPoints`` does, at the
cost of one remap, instead of approximating distortion in a vertex shader (which bends only
vertices, not the edges between them).

Projection from K (derivation; Kc is the canvas camera matrix, Wc x Hc its size):
OpenCV puts pixel centres at integers (pixel i spans [i - 0.5, i + 0.5]); OpenGL window
pixel i spans [i, i + 1].  So window x_w = u + 0.5 with u = (fx X + s Y) / Z + cx, and
x_ndc = 2 x_w / Wc - 1; in clip space (w_c = Z):

    x_c = (2 fx / Wc) X + (2 s / Wc) Y + (2 (cx + 0.5) / Wc - 1) Z
    y_c = (2 fy / Hc) Y + (2 (cy + 0.5) / Hc - 1) Z
    z_c = (f + n) / (f - n) Z - 2 f n / (f - n)      (z_ndc = -1 at Z = n, +1 at Z = f)
    w_c = Z

with (X, Y, Z) in the OpenCV camera frame.  Image rows are *not* flipped: window row r is image
row v = r, and ``glReadPixels`` returns window row 0 first, so the buffer read back is already in
image order (top row first).  The price is a mirrored y axis, so front faces wind clockwise in
window coordinates (``ctx.front_face = "cw"``).  Written for the usual OpenGL eye frame
(y up, z back) the matrix is ``clip_from_gl_camera = clip_from_camera @ GL_CAMERA_FROM_CAMERA``
(the flip is its own inverse), and a vertex goes through
``clip_from_gl_camera @ GL_CAMERA_FROM_CAMERA @ camera_from_ct``.  Cf. K. Simek, "Calibrated
cameras in OpenGL without glFrustum" (2013), which flips y instead.

Near and far planes are fixed (RenderSettings.near_mm, far_mm: 10 mm .. 5 m): anatomy nearer
than 10 mm to the lens is clipped, which no guided procedure needs.

Looks: per-vertex (Gouraud) Blinn-Phong with a headlight at the camera centre, colour and
opacity per layer.  Opaque layers are drawn first with depth writes; translucent ones after,
back to front by the depth of their vertex centroid, depth-tested against the opaque ones but
not writing depth, so a tumour inside a translucent organ shows through.  Closed, consistently
wound meshes are turned to wind outwards (signed volume) and drawn with back faces culled;
open meshes are drawn two-sided.  A translucent concave mesh may overlap itself (each front
sheet blends once more): per-layer depth peeling would fix it at twice the cost.

Output: (H, W, 4) uint8 RGBA with premultiplied alpha, so the composite is
``frame * (1 - a) + rgb``.  Blending is ``ONE, ONE_MINUS_SRC_ALPHA`` on all four channels, so a
layer of opacity 0.5 reads back alpha 0.5 (the naive ``SRC_ALPHA`` blend squares it).
"""

from __future__ import annotations

import dataclasses
import time
from collections import OrderedDict

import cv2
import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import RenderSettings
from ar_guide.errors import InputError
from ar_guide.geometry import projection
from ar_guide.geometry.transforms import GL_CAMERA_FROM_CAMERA

ROLES = ("organ", "target", "vessel", "risk", "skin", "other")


@dataclasses.dataclass(frozen=True, eq=False)
class MeshLayer:
    """One anatomy mesh with its look.

    vertices_ct : (N, 3) float, mm, CT frame (LPS)
    faces : (M, 3) int, indices into vertices_ct
    color_rgb : three floats in 0..1
    opacity : 0..1 (1 = opaque)
    role : one of ROLES
    """

    name: str
    vertices_ct: np.ndarray
    faces: np.ndarray
    color_rgb: tuple[float, float, float]
    opacity: float
    role: str = "organ"

    def __post_init__(self):
        key = f"anatomy[{self.name}]"
        v = np.asarray(self.vertices_ct)
        f = np.asarray(self.faces)
        if v.ndim != 2 or v.shape[1] != 3 or v.shape[0] < 3:
            raise InputError(f"expected (N, 3) vertices with N >= 3, got shape {v.shape}", key=key)
        if not np.issubdtype(v.dtype, np.number) or not np.all(np.isfinite(v)):
            raise InputError("vertices must be finite numbers", key=key)
        if f.ndim != 2 or f.shape[1] != 3 or f.shape[0] < 1 or not np.issubdtype(f.dtype, np.integer):
            raise InputError(f"expected (M, 3) integer faces with M >= 1, got shape {f.shape}", key=key)
        if f.min() < 0 or f.max() >= v.shape[0]:
            raise InputError(f"face indices must lie in 0..{v.shape[0] - 1}", key=key)
        color = tuple(float(c) for c in np.asarray(self.color_rgb, dtype=np.float64).ravel())
        if len(color) != 3 or not all(0.0 <= c <= 1.0 for c in color):
            raise InputError(f"color must be three numbers in 0..1, got {self.color_rgb!r}", key=key)
        if not 0.0 <= float(self.opacity) <= 1.0:
            raise InputError(f"opacity must lie in 0..1, got {self.opacity!r}", key=key)
        if self.role not in ROLES:
            raise InputError(f"role must be one of {', '.join(ROLES)}, got {self.role!r}", key=key)
        object.__setattr__(self, "color_rgb", color)
        object.__setattr__(self, "opacity", float(self.opacity))


@dataclasses.dataclass(frozen=True)
class RenderTimings:
    """Wall-clock split of one render call (ms): GL draw incl. finish, readback, remap."""

    gl_ms: float
    readback_ms: float
    remap_ms: float

    @property
    def total_ms(self) -> float:
        return self.gl_ms + self.readback_ms + self.remap_ms


@dataclasses.dataclass(frozen=True, eq=False)
class DistortionCanvas:
    """Pinhole canvas that holds the undistorted footprint of a camera image, and the maps.

    canvas_matrix : (3, 3) float64, the canvas camera matrix Kc (px)
    canvas_size : (Wc, Hc) px
    map_x, map_y : (H, W) float32, canvas position (px) of each image pixel's undistorted ray
    """

    canvas_matrix: np.ndarray
    canvas_size: tuple[int, int]
    map_x: np.ndarray
    map_y: np.ndarray


_CANVAS_CACHE: OrderedDict = OrderedDict()
_CANVAS_CACHE_SIZE = 4


def distortion_canvas(camera: CameraModel, settings: RenderSettings = RenderSettings()) -> DistortionCanvas:
    """The canvas and remap maps for ``camera`` (computed once per camera, then cached)."""
    if camera.image_size is None:
        raise InputError("the renderer needs the calibration's image size (image_width, "
                         "image_height)", path=camera.source)
    key = (camera.camera_matrix.tobytes(), camera.distortion.tobytes(), tuple(camera.image_size),
           settings.canvas_scale, settings.undistort_margin_px, settings.max_canvas_side_px)
    hit = _CANVAS_CACHE.get(key)
    if hit is not None:
        _CANVAS_CACHE.move_to_end(key)
        return hit
    canvas = _make_canvas(camera, settings)
    _CANVAS_CACHE[key] = canvas
    while len(_CANVAS_CACHE) > _CANVAS_CACHE_SIZE:
        _CANVAS_CACHE.popitem(last=False)
    return canvas


def undistorted_pixel_grid(camera: CameraModel) -> np.ndarray:
    """(H, W, 2) float64: undistorted normalised coordinates (x/z, y/z) of every pixel centre.

    Seeded with cv2.undistortPoints (fast, ~1e-4 accurate at strongly distorted corners) and
    refined by Gauss-Newton on OpenCV's model until the re-distorted point matches to 1e-12.
    """
    w, h = camera.image_size
    k = camera.camera_matrix
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    uv = np.column_stack([u.ravel(), v.ravel()])
    if not np.any(camera.distortion):
        return projection.pixels_to_normalized(uv, k, camera.distortion).reshape(h, w, 2)
    seed = cv2.undistortPoints(uv.reshape(-1, 1, 2), k, camera.distortion).reshape(-1, 2)
    yd = (uv[:, 1] - k[1, 2]) / k[1, 1]
    target = np.column_stack([(uv[:, 0] - k[0, 2] - k[0, 1] * yd) / k[0, 0], yd])
    xy = _refine_undistortion(seed, target, camera.distortion)
    residual = np.abs(projection.distort_normalized(xy, camera.distortion) - target).max(axis=1)
    if not np.all(np.isfinite(xy)) or not np.all(residual < 1e-9):
        bad = int(np.count_nonzero(~(residual < 1e-9)))
        raise InputError(f"the distortion coefficients cannot be inverted at {bad} pixels of the "
                         f"{w}x{h} image (the lens model folds back inside the image); recalibrate",
                         path=camera.source, key="distortion_coefficients")
    return xy.reshape(h, w, 2)


def _refine_undistortion(xy, target, distortion, iterations=20, tolerance=1e-12):
    # Gauss-Newton with a forward-difference Jacobian, as in geometry.projection.undistort_normalized,
    # started from a good seed.  Each step is solved in closed form (2x2).
    step = 1e-7
    for _ in range(iterations):
        f = projection.distort_normalized(xy, distortion) - target
        if np.max(np.abs(f), initial=0.0) < tolerance:
            break
        fx = (projection.distort_normalized(xy + [step, 0.0], distortion) - target - f) / step
        fy = (projection.distort_normalized(xy + [0.0, step], distortion) - target - f) / step
        a, c = fx[:, 0], fx[:, 1]
        b, d = fy[:, 0], fy[:, 1]
        det = a * d - b * c
        det = np.where(np.abs(det) < 1e-12, 1e-12, det)
        xy = xy - np.column_stack([(d * f[:, 0] - b * f[:, 1]) / det, (-c * f[:, 0] + a * f[:, 1]) / det])
    return xy


def _make_canvas(camera: CameraModel, settings: RenderSettings) -> DistortionCanvas:
    w, h = camera.image_size
    xy = undistorted_pixel_grid(camera).reshape(-1, 2)
    k = camera.camera_matrix
    # Pinhole pixel positions of the undistorted rays, at the calibration's focal length.
    up = k[0, 0] * xy[:, 0] + k[0, 1] * xy[:, 1] + k[0, 2]
    vp = k[1, 1] * xy[:, 1] + k[1, 2]
    # Pixel boundaries reach half a pixel beyond the centres; plus the margin.
    pad = 0.5 + settings.undistort_margin_px
    lo_u, hi_u = up.min() - pad, up.max() + pad
    lo_v, hi_v = vp.min() - pad, vp.max() + pad
    scale = float(settings.canvas_scale)
    scale = min(scale, settings.max_canvas_side_px / max(hi_u - lo_u, hi_v - lo_v))
    ox = np.floor(scale * lo_u)
    oy = np.floor(scale * lo_v)
    wc = int(np.ceil(scale * hi_u) - ox) + 1
    hc = int(np.ceil(scale * hi_v) - oy) + 1
    kc = np.array([[scale * k[0, 0], scale * k[0, 1], scale * k[0, 2] - ox],
                   [0.0, scale * k[1, 1], scale * k[1, 2] - oy],
                   [0.0, 0.0, 1.0]])
    # Canvas pixel position of each image pixel: u_c = scale * u_p - ox (pixel centres map to
    # pixel centres because both use OpenCV's convention).
    map_x = (scale * up - ox).reshape(h, w).astype(np.float32)
    map_y = (scale * vp - oy).reshape(h, w).astype(np.float32)
    for a in (kc, map_x, map_y):
        a.setflags(write=False)
    return DistortionCanvas(kc, (wc, hc), map_x, map_y)


def clip_from_camera(canvas_matrix: np.ndarray, canvas_size: tuple[int, int], near_mm: float,
                     far_mm: float) -> np.ndarray:
    """(4, 4) float64 OpenGL clip coordinates from OpenCV camera-frame mm (see module docstring)."""
    wc, hc = canvas_size
    k = canvas_matrix
    n, f = float(near_mm), float(far_mm)
    return np.array([
        [2.0 * k[0, 0] / wc, 2.0 * k[0, 1] / wc, 2.0 * (k[0, 2] + 0.5) / wc - 1.0, 0.0],
        [0.0, 2.0 * k[1, 1] / hc, 2.0 * (k[1, 2] + 0.5) / hc - 1.0, 0.0],
        [0.0, 0.0, (f + n) / (f - n), -2.0 * f * n / (f - n)],
        [0.0, 0.0, 1.0, 0.0],
    ])


def clip_from_gl_camera(canvas_matrix, canvas_size, near_mm, far_mm) -> np.ndarray:
    """The same projection for OpenGL's eye frame (y up, z back): the usual glFrustum form."""
    return clip_from_camera(canvas_matrix, canvas_size, near_mm, far_mm) @ GL_CAMERA_FROM_CAMERA


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N, 3) float32 unit vertex normals, area-weighted from the faces' winding."""
    v = np.asarray(vertices, dtype=np.float64)
    tri = v[faces]
    face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = 2 * area
    n = np.zeros_like(v)
    for c in range(3):
        n[:, c] = np.bincount(faces.ravel(), weights=np.repeat(face_n[:, c], 3), minlength=len(v))
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


def is_closed_and_oriented(faces: np.ndarray) -> bool:
    """True if every directed edge appears once and its reverse once (a closed, consistently
    wound surface): only then can back-face culling not open holes in it."""
    f = np.asarray(faces, dtype=np.int64)
    a = f.ravel()
    b = np.roll(f, -1, axis=1).ravel()
    n = int(a.max()) + 1 if a.size else 1
    directed = a * n + b
    uniq = np.unique(directed)
    if uniq.size != directed.size:
        return False
    return bool(np.isin(b * n + a, uniq, assume_unique=False).all())


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Signed volume (mm^3) enclosed by the faces; negative when they wind inwards."""
    tri = np.asarray(vertices, dtype=np.float64)[faces]
    return float(np.einsum("ij,ij->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])) / 6.0)


_VERTEX_SHADER = """
#version 330
uniform mat4 clip_from_ct;
uniform mat4 camera_from_ct;
uniform vec3 color;
uniform vec4 light;  // ambient, diffuse, specular, shininess
in vec3 in_position;
in vec3 in_normal;
out vec3 v_rgb;
void main() {
    vec3 p = (camera_from_ct * vec4(in_position, 1.0)).xyz;
    vec3 n = normalize(mat3(camera_from_ct) * in_normal);
    // Headlight: the light sits at the camera centre, so light = view direction and H = L.
    // Two-sided (abs) so that open or inward-wound meshes still read.  Per-vertex (Gouraud):
    // on llvmpipe it halves the fill cost of per-fragment lighting, and anatomy meshes are
    // dense enough that it looks the same.
    float d = abs(dot(n, normalize(-p)));
    v_rgb = min(color * (light.x + light.y * d) + vec3(light.z * pow(d, light.w)), vec3(1.0));
    gl_Position = clip_from_ct * vec4(in_position, 1.0);
}
"""

_SHADED_FRAGMENT = """
#version 330
uniform float alpha;
in vec3 v_rgb;
out vec4 f_color;
void main() {
    f_color = vec4(v_rgb * alpha, alpha);   // premultiplied
}
"""

_POSITION_VERTEX = """
#version 330
uniform mat4 clip_from_ct;
uniform mat4 camera_from_ct;
in vec3 in_position;
out vec3 v_position;
void main() {
    v_position = (camera_from_ct * vec4(in_position, 1.0)).xyz;
    gl_Position = clip_from_ct * vec4(in_position, 1.0);
}
"""

_POSITION_FRAGMENT = """
#version 330
in vec3 v_position;
out vec4 f_position;
void main() {
    f_position = vec4(v_position, 1.0);     // OpenCV camera frame, mm; w = coverage
}
"""


class AnatomyRenderer:
    """Draws MeshLayers as seen by a calibrated camera, distortion included.

    camera : CameraModel with image_size (the output size)
    layers : meshes, in CT coordinates; kept in GPU buffers
    ctx : a moderngl context (default: :func:`ar_guide.render.gl.create_context`, owned and
        released by the renderer)

    Per frame, only what can hold anatomy is worked on: layers whose bounding box projects
    outside the canvas are not drawn, and clearing, readback and remap are limited to the
    projected bounding box of the drawn layers (the box's 8 corners under the pinhole canvas
    bound it exactly; the box's edge is then carried through the distortion to the image).
    """

    def __init__(self, camera: CameraModel, layers: list[MeshLayer], ctx=None,
                 settings: RenderSettings = RenderSettings()):
        import moderngl

        names = [layer.name for layer in layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise InputError(f"anatomy layer names must be unique; repeated: {', '.join(dup)}",
                             key="anatomy")
        self._moderngl = moderngl
        self.camera = camera
        self.settings = settings
        self.layers = list(layers)
        self.canvas = distortion_canvas(camera, settings)
        self.image_size = tuple(camera.image_size)
        clip_from_gl = clip_from_gl_camera(self.canvas.canvas_matrix, self.canvas.canvas_size,
                                           settings.near_mm, settings.far_mm)
        self._clip_from_camera = clip_from_gl @ GL_CAMERA_FROM_CAMERA
        self._bbox_ok = _distortion_monotonic(camera, self.canvas)
        wc, hc = self.canvas.canvas_size
        w, h = self.image_size
        self._read_flat = np.zeros(wc * hc * 4, np.uint8)
        self._map_flat = np.zeros((2, w * h), np.float32)
        self._image_rgba = np.zeros((h, w, 4), np.uint8)
        self._dirty = (0, 0, w, h)  # region of _image_rgba that may be non-zero
        self._centroids_ct = np.array([np.asarray(l.vertices_ct, np.float64).mean(axis=0) for l in layers]
                                      ).reshape(-1, 3)
        self._corners_ct = np.array([_box_corners(np.asarray(l.vertices_ct, np.float64)) for l in layers]
                                    ).reshape(-1, 8, 3)
        self.last_timings = RenderTimings(0.0, 0.0, 0.0)
        self._owns_ctx = ctx is None
        if ctx is None:
            from ar_guide.render.gl import create_context

            ctx = create_context()
        self.ctx = ctx
        self._position_fbo = None
        self._gpu = []
        with self.ctx:
            self._shaded = ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_SHADED_FRAGMENT)
            self._position = ctx.program(vertex_shader=_POSITION_VERTEX, fragment_shader=_POSITION_FRAGMENT)
            s = settings
            self._shaded["light"].value = (s.ambient, s.diffuse, s.specular, s.shininess)
            self._color_rb = ctx.renderbuffer((wc, hc), components=4)
            self._depth_rb = ctx.depth_renderbuffer((wc, hc))
            self._fbo = ctx.framebuffer(color_attachments=[self._color_rb], depth_attachment=self._depth_rb)
            for layer in self.layers:
                self._gpu.append(self._upload(layer))

    def _upload(self, layer: MeshLayer):
        v = np.asarray(layer.vertices_ct, dtype=np.float64)
        f = np.asarray(layer.faces, dtype=np.int64)
        # Topology on merged positions: STL and meshes loaded with process=False repeat each
        # vertex per face, which would hide that the surface is closed and smooth.
        first, remap = np.unique(v, axis=0, return_index=True, return_inverse=True)[1:]
        shared = remap.ravel()[f]
        closed = is_closed_and_oriented(shared)
        if closed and signed_volume(v, f) < 0:
            f = f[:, ::-1]  # wind outwards so that back-face culling removes the far side
            shared = shared[:, ::-1]
        normals = vertex_normals(v[first], shared)[remap.ravel()]
        data = np.hstack([v.astype(np.float32), normals]).astype(np.float32)
        vbo = self.ctx.buffer(data.tobytes())
        ibo = self.ctx.buffer(np.ascontiguousarray(f, dtype=np.uint32).tobytes())
        vaos = {
            "shaded": self.ctx.vertex_array(self._shaded, [(vbo, "3f 3f", "in_position", "in_normal")],
                                            index_buffer=ibo, index_element_size=4),
            # The position shader does not read normals: skip their 12 bytes.
            "position": self.ctx.vertex_array(self._position, [(vbo, "3f 12x", "in_position")],
                                              index_buffer=ibo, index_element_size=4),
        }
        return {"vbo": vbo, "ibo": ibo, "vaos": vaos, "cull": closed}

    # -- per frame -------------------------------------------------------------------------

    def _selected(self, visible):
        if visible is None:
            return list(range(len(self.layers)))
        unknown = set(visible) - {l.name for l in self.layers}
        if unknown:
            raise ValueError(f"unknown anatomy layers {sorted(unknown)}; known: "
                             f"{[l.name for l in self.layers]}")
        return [i for i, l in enumerate(self.layers) if l.name in visible]

    def _set_matrices(self, program, camera_from_ct):
        clip_from_ct = self._clip_from_camera @ camera_from_ct
        # moderngl matrices are column-major: write the transpose.
        program["clip_from_ct"].write(clip_from_ct.T.astype(np.float32).tobytes())
        program["camera_from_ct"].write(camera_from_ct.T.astype(np.float32).tobytes())

    def _canvas_bbox(self, camera_from_ct, indices):
        """Layers that may be seen, and the canvas box (x0, y0, x1, y1) px that holds them."""
        wc, hc = self.canvas.canvas_size
        if not indices:
            return [], None
        corners = self._corners_ct[indices] @ camera_from_ct[:3, :3].T + camera_from_ct[:3, 3]
        z = corners[..., 2]
        kc = self.canvas.canvas_matrix
        near = self.settings.near_mm
        kept, box = [], None
        for j, i in enumerate(indices):
            if np.all(z[j] <= near):
                continue  # wholly behind the near plane
            if np.any(z[j] <= near):
                b = (0, 0, wc, hc)  # straddles the camera plane: no finite projected bound
            else:
                c = corners[j]
                u = (kc[0, 0] * c[:, 0] + kc[0, 1] * c[:, 1]) / c[:, 2] + kc[0, 2]
                v = kc[1, 1] * c[:, 1] / c[:, 2] + kc[1, 2]
                # Pixel centres inside the projected hull, plus a pixel for safety.
                b = (max(0, int(np.floor(u.min())) - 1), max(0, int(np.floor(v.min())) - 1),
                     min(wc, int(np.ceil(u.max())) + 2), min(hc, int(np.ceil(v.max())) + 2))
                if b[0] >= b[2] or b[1] >= b[3]:
                    continue  # outside the field of view
            kept.append(i)
            box = b if box is None else (min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]),
                                         max(box[3], b[3]))
        return kept, box

    def _image_bbox(self, canvas_box):
        """Image box (x0, y0, x1, y1) px whose pixels sample the canvas box (plus margin)."""
        w, h = self.image_size
        wc, hc = self.canvas.canvas_size
        if not self._bbox_ok or canvas_box == (0, 0, wc, hc):
            return (0, 0, w, h)
        x0, y0, x1, y1 = canvas_box
        t = np.linspace(0.0, 1.0, 33)
        xs = (x0 - 1.0) + t * (x1 - x0 + 1.0)
        ys = (y0 - 1.0) + t * (y1 - y0 + 1.0)
        border = np.vstack([np.column_stack([xs, np.full_like(xs, y0 - 1.0)]),
                            np.column_stack([xs, np.full_like(xs, float(y1))]),
                            np.column_stack([np.full_like(ys, x0 - 1.0), ys]),
                            np.column_stack([np.full_like(ys, float(x1)), ys])])
        kc = self.canvas.canvas_matrix
        yn = (border[:, 1] - kc[1, 2]) / kc[1, 1]
        xn = (border[:, 0] - kc[0, 2] - kc[0, 1] * yn) / kc[0, 0]
        uv = projection.project_points(np.column_stack([xn, yn, np.ones_like(xn)]),
                                       self.camera.camera_matrix, self.camera.distortion)
        return (max(0, int(np.floor(uv[:, 0].min())) - 2), max(0, int(np.floor(uv[:, 1].min())) - 2),
                min(w, int(np.ceil(uv[:, 0].max())) + 3), min(h, int(np.ceil(uv[:, 1].max())) + 3))

    def render(self, camera_from_ct: np.ndarray, opacity_scale: float = 1.0,
               visible: set[str] | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Render the layers seen from ``camera_from_ct``.

        camera_from_ct : (4, 4) float64, maps CT mm to OpenCV camera mm
        opacity_scale : multiplies every layer's opacity (0..1)
        visible : names of the layers to draw (None: all)
        out : optional (H, W, 4) uint8 destination
        Returns (H, W, 4) uint8 premultiplied RGBA in the distorted image.  Without ``out`` the
        array is the renderer's own buffer, overwritten by the next call.
        Timings of the call are kept in ``self.last_timings``.
        """
        camera_from_ct = np.asarray(camera_from_ct, dtype=np.float64)
        if camera_from_ct.shape != (4, 4):
            raise ValueError(f"camera_from_ct must be (4, 4), got {camera_from_ct.shape}")
        if not 0.0 <= opacity_scale <= 1.0:
            raise ValueError(f"opacity_scale must lie in 0..1, got {opacity_scale}")
        w, h = self.image_size
        if out is not None and (out.shape != (h, w, 4) or out.dtype != np.uint8):
            raise ValueError(f"out must be ({h}, {w}, 4) uint8, got {out.shape} {out.dtype}")
        mgl = self._moderngl
        t0 = time.perf_counter()
        alphas = {i: self.layers[i].opacity * opacity_scale for i in self._selected(visible)}
        kept, cbox = self._canvas_bbox(camera_from_ct, [i for i, a in alphas.items() if a > 0.0])
        opaque = [i for i in kept if alphas[i] >= self.settings.opaque_alpha]
        transparent = [i for i in kept if alphas[i] < self.settings.opaque_alpha]
        ctx = self.ctx
        t1 = t2 = t0
        if cbox is not None:
            x0, y0, x1, y1 = cbox
            with ctx:
                self._fbo.use()
                self._fbo.depth_mask = True  # glClear honours the depth mask
                ctx.clear(0.0, 0.0, 0.0, 0.0, depth=1.0, viewport=(x0, y0, x1 - x0, y1 - y0))
                # Scissoring to the box also lets llvmpipe skip the empty tiles (~2 ms at 720p).
                ctx.scissor = (x0, y0, x1 - x0, y1 - y0)
                ctx.front_face = "cw"  # rows are not flipped, so front faces wind clockwise (see above)
                ctx.blend_func = mgl.ONE, mgl.ONE_MINUS_SRC_ALPHA
                self._set_matrices(self._shaded, camera_from_ct)
                for i in opaque:
                    self._draw(i, 1.0, mgl.DEPTH_TEST)
                if transparent:
                    z = self._centroids_ct[transparent] @ camera_from_ct[2, :3] + camera_from_ct[2, 3]
                    self._fbo.depth_mask = False
                    for j in np.argsort(-z, kind="stable"):  # back to front
                        i = transparent[j]
                        self._draw(i, alphas[i], mgl.DEPTH_TEST | mgl.BLEND)
                    self._fbo.depth_mask = True
                ctx.finish()
                ctx.scissor = None
                t1 = time.perf_counter()
                bw, bh = x1 - x0, y1 - y0
                canvas = self._read_flat[:bw * bh * 4].reshape(bh, bw, 4)
                self._fbo.read_into(canvas, viewport=(x0, y0, bw, bh), components=4, alignment=1)
                t2 = time.perf_counter()
        dst = self._image_rgba if out is None else out
        # Clear what an earlier call may have left (all of a caller's array).
        if out is None:
            dx0, dy0, dx1, dy1 = self._dirty
            dst[dy0:dy1, dx0:dx1] = 0
        else:
            dst[...] = 0
        if cbox is not None:
            ix0, iy0, ix1, iy1 = self._image_bbox(cbox)
            if ix1 > ix0 and iy1 > iy0:
                map_x = self.canvas.map_x[iy0:iy1, ix0:ix1]
                map_y = self.canvas.map_y[iy0:iy1, ix0:ix1]
                if x0 or y0:  # the canvas read back starts at (x0, y0)
                    n = map_x.size
                    sx = self._map_flat[0, :n].reshape(map_x.shape)
                    sy = self._map_flat[1, :n].reshape(map_y.shape)
                    cv2.subtract(map_x, float(x0), dst=sx)  # in place, no per-frame allocation
                    cv2.subtract(map_y, float(y0), dst=sy)
                    map_x, map_y = sx, sy
                cv2.remap(canvas, map_x, map_y, cv2.INTER_LINEAR, dst=dst[iy0:iy1, ix0:ix1],
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
            if out is None:
                self._dirty = (ix0, iy0, ix1, iy1)
        elif out is None:
            self._dirty = (0, 0, 0, 0)
        t3 = time.perf_counter()
        self.last_timings = RenderTimings((t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - max(t2, t0)) * 1e3)
        return dst

    def _draw(self, i: int, alpha: float, flags: int) -> None:
        # Closed, outward-wound meshes drop their back faces (half the fill work); open ones
        # are drawn two-sided, since either side of them may face the camera.
        if self._gpu[i]["cull"]:
            flags |= self._moderngl.CULL_FACE
        self.ctx.enable_only(flags)
        self._shaded["color"].value = self.layers[i].color_rgb
        self._shaded["alpha"].value = alpha
        self._gpu[i]["vaos"]["shaded"].render(self._moderngl.TRIANGLES)

    def render_positions(self, camera_from_ct: np.ndarray, visible: set[str] | None = None) -> np.ndarray:
        """(H, W, 4) float32: the camera-frame point (mm) seen at each pixel of the distorted
        image, and its coverage in the last channel (1 inside a surface, 0 outside, between
        on silhouettes, where the xyz are blended with zeros: divide by the coverage).

        The nearest surface of all visible layers, opacity ignored.  A debug and test mode that
        goes through the same projection and remap maps as :meth:`render` (whole image).
        """
        camera_from_ct = np.asarray(camera_from_ct, dtype=np.float64)
        selected = self._selected(visible)
        ctx = self.ctx
        wc, hc = self.canvas.canvas_size
        with ctx:
            if self._position_fbo is None:
                self._position_tex = ctx.texture((wc, hc), 4, dtype="f4")
                self._position_depth = ctx.depth_renderbuffer((wc, hc))
                self._position_fbo = ctx.framebuffer(color_attachments=[self._position_tex],
                                                     depth_attachment=self._position_depth)
            self._position_fbo.use()
            ctx.scissor = None
            self._position_fbo.depth_mask = True
            ctx.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
            ctx.enable_only(self._moderngl.DEPTH_TEST)
            self._set_matrices(self._position, camera_from_ct)
            for i in selected:
                self._gpu[i]["vaos"]["position"].render(self._moderngl.TRIANGLES)
            canvas = np.empty((hc, wc, 4), np.float32)
            self._position_fbo.read_into(canvas, components=4, dtype="f4", alignment=1)
        return cv2.remap(canvas, self.canvas.map_x, self.canvas.map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def render_depth(self, camera_from_ct: np.ndarray, visible: set[str] | None = None) -> np.ndarray:
        """(H, W) float32 camera-frame depth z (mm) of the nearest surface, NaN where there is
        none or on silhouette pixels (coverage below 0.999)."""
        pos = self.render_positions(camera_from_ct, visible)
        cover = pos[..., 3]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cover >= 0.999, pos[..., 2] / cover, np.nan).astype(np.float32)

    def release(self) -> None:
        """Free the GPU buffers (and the context if the renderer made it)."""
        if self.ctx is None:
            return
        with self.ctx:
            for gpu in self._gpu:
                for vao in gpu["vaos"].values():
                    vao.release()
                gpu["vbo"].release()
                gpu["ibo"].release()
            objs = [self._fbo, self._color_rb, self._depth_rb, self._shaded, self._position]
            if self._position_fbo is not None:
                objs += [self._position_fbo, self._position_tex, self._position_depth]
            for obj in objs:
                obj.release()
        self._gpu = []
        if self._owns_ctx:
            self.ctx.release()
        self.ctx = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()


def _box_corners(points: np.ndarray) -> np.ndarray:
    """(8, 3) corners of the axis-aligned bounding box of (N, 3) points."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _distortion_monotonic(camera: CameraModel, canvas: DistortionCanvas) -> bool:
    """True if the distortion keeps increasing in radius over the whole canvas, so that the
    image of a canvas rectangle's edge bounds the image of the rectangle (needed to restrict
    the remap to a box); otherwise every frame is remapped whole."""
    wc, hc = canvas.canvas_size
    kc = canvas.canvas_matrix
    corners = np.array([[-0.5, -0.5], [wc - 0.5, -0.5], [-0.5, hc - 0.5], [wc - 0.5, hc - 0.5]])
    yn = (corners[:, 1] - kc[1, 2]) / kc[1, 1]
    xn = (corners[:, 0] - kc[0, 2] - kc[0, 1] * yn) / kc[0, 0]
    r_max = float(np.max(np.hypot(xn, yn)))
    r = np.linspace(0.0, r_max, 1001)[1:]
    for angle in np.linspace(0.0, 2.0 * np.pi, 32, endpoint=False):
        xy = np.column_stack([r * np.cos(angle), r * np.sin(angle)])
        d = projection.distort_normalized(xy, camera.distortion)
        if np.any(np.diff(np.hypot(d[:, 0], d[:, 1])) <= 0.0):
            return False
    return True
