"""Textured scene rendering with moderngl on the pinhole canvas, with sub-frame accumulation.

One frame is the mean of K sub-frame renders (Haeberli and Akeley, "The accumulation buffer:
hardware support for high-quality rendering", SIGGRAPH 1990): each sub-frame is drawn at its own
time inside the exposure (motion blur) and with its own sub-pixel offset (antialiasing; offsets
from a rotated grid with zero mean, so the average is not shifted).  Shading is linear-light
Lambert + Blinn-Phong with one point lamp, a soft fill from the ceiling and ambient light;
textures are sRGB and decoded in the shader.

Projection (same derivation as ar_guide.render.anatomy): with OpenCV camera coordinates
(X, Y, Z), canvas intrinsics fx, fy, cx, cy and canvas size Wc x Hc,

    x_c = (2 fx / Wc) X + (2 (cx + 0.5) / Wc - 1) Z
    y_c = (2 fy / Hc) Y + (2 (cy + 0.5) / Hc - 1) Z
    z_c = (f + n) / (f - n) Z - 2 f n / (f - n),   w_c = Z

so that window pixel i (spanning [i, i + 1]) is OpenCV pixel i (centre i) and rows read back
top-first.  The matrix is applied to ``GL_CAMERA_FROM_CAMERA @ gl_camera`` coordinates, i.e. the
vertex goes through ``clip_from_camera @ GL_CAMERA_FROM_CAMERA @ GL_CAMERA_FROM_CAMERA @
camera_from_object``; the flip is its own inverse, so the upload is ``clip_from_camera @
camera_from_object``.  Sub-pixel jitter (jx, jy) shifts cx, cy by (-jx, -jy): pixel i then
samples the scene at i + jx.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.geometry.transforms import GL_CAMERA_FROM_CAMERA
from ar_guide.synth.meshes import Mesh

_VERTEX_SHADER = """
#version 330
uniform mat4 u_clip_from_object;
uniform mat4 u_camera_from_object;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
out vec3 v_position;  // camera frame (OpenCV), mm
out vec3 v_normal;
out vec2 v_uv;
void main() {
    vec4 p = u_camera_from_object * vec4(in_position, 1.0);
    v_position = p.xyz;
    v_normal = mat3(u_camera_from_object) * in_normal;
    v_uv = in_uv;
    gl_Position = u_clip_from_object * vec4(in_position, 1.0);
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D u_texture;
uniform vec3 u_tint;
uniform float u_specular;
uniform float u_shininess;
uniform float u_lod_bias;
uniform vec3 u_lamp_camera;    // mm
uniform float u_lamp_power;    // irradiance at 1000 mm
uniform vec3 u_fill_camera;    // unit direction towards the fill light
uniform float u_fill;
uniform float u_ambient;
in vec3 v_position;
in vec3 v_normal;
in vec2 v_uv;
out vec4 f_color;
void main() {
    vec3 albedo = pow(texture(u_texture, v_uv, u_lod_bias).rgb, vec3(2.2)) * u_tint;
    vec3 n = normalize(v_normal);
    vec3 v = normalize(-v_position);
    if (dot(n, v) < 0.0) n = -n;  // two-sided (the room is seen from inside)
    vec3 to_lamp = u_lamp_camera - v_position;
    float dist = length(to_lamp);
    vec3 l = to_lamp / dist;
    float irradiance = u_lamp_power * (1.0e6 / (dist * dist));
    float diffuse = max(dot(n, l), 0.0) * irradiance + max(dot(n, u_fill_camera), 0.0) * u_fill;
    vec3 h = normalize(l + v);
    float spec = u_specular * pow(max(dot(n, h), 0.0), u_shininess) * irradiance * step(0.0, dot(n, l));
    f_color = vec4(albedo * (u_ambient + diffuse) + vec3(spec), 1.0);
}
"""


@dataclasses.dataclass(frozen=True, eq=False)
class Material:
    """texture : (H, W, 3) uint8 sRGB; tint : linear RGB multiplier; specular strength and
    shininess (Blinn-Phong); lod_bias : mip-level bias (negative = sharper under minification)."""

    texture: np.ndarray
    tint: tuple = (1.0, 1.0, 1.0)
    specular: float = 0.0
    shininess: float = 16.0
    lod_bias: float = 0.0
    mipmaps: bool = True
    repeat: bool = False


@dataclasses.dataclass(frozen=True, eq=False)
class SceneObject:
    """A mesh with its material; ``dynamic`` objects get a pose per sub-frame (``world_from_object``).

    ``closed`` meshes (outward-facing, watertight) are drawn with back-face culling.  Objects are
    drawn in list order: put near, occluding objects first, so that llvmpipe's early depth test
    skips shading what they hide (the floor alone costs as much as a full-canvas draw).
    """

    name: str
    mesh: Mesh
    material: Material
    dynamic: bool = False
    closed: bool = False


@dataclasses.dataclass(frozen=True)
class SubFrame:
    """One render of the accumulation.

    camera_from_world : (4, 4) float64; jitter_px : (2,) sub-pixel offset of the samples;
    object_poses : {name: world_from_object (4, 4)} for dynamic objects (absent = not drawn).
    """

    camera_from_world: np.ndarray
    jitter_px: tuple[float, float]
    object_poses: dict


@dataclasses.dataclass(frozen=True)
class Lights:
    """Lighting of one frame, world frame: lamp position (mm) and power; fill direction (unit,
    towards the light), fill and ambient levels (linear)."""

    lamp_world: np.ndarray
    lamp_power: float = 1.0
    fill_direction_world: np.ndarray = dataclasses.field(default_factory=lambda: np.array([0.0, -1.0, 0.0]))
    fill: float = 0.25
    ambient: float = 0.12


def jitter_pattern(count: int) -> np.ndarray:
    """(count, 2) sub-pixel offsets with zero mean: a rotated grid (n-rooks) inside one pixel."""
    if count <= 1:
        return np.zeros((1, 2))
    i = np.arange(count)
    # Rooks pattern: distinct columns and rows, rows permuted by a coprime stride.
    stride = next(s for s in range(max(1, count // 2 - 1), count + 1) if np.gcd(s, count) == 1 and s > 1) \
        if count > 2 else 1
    x = (i + 0.5) / count - 0.5
    y = ((i * stride) % count + 0.5) / count - 0.5
    pts = np.column_stack([x, y])
    return pts - pts.mean(axis=0)


def clip_from_camera(camera_matrix: np.ndarray, size: tuple[int, int], near: float, far: float,
                     jitter_px=(0.0, 0.0)) -> np.ndarray:
    """(4, 4) OpenGL clip coordinates from OpenCV camera coordinates (see the module docstring)."""
    wc, hc = size
    fx, fy = camera_matrix[0, 0], camera_matrix[1, 1]
    cx = camera_matrix[0, 2] - jitter_px[0]
    cy = camera_matrix[1, 2] - jitter_px[1]
    m = np.zeros((4, 4))
    m[0, 0] = 2 * fx / wc
    m[0, 2] = 2 * (cx + 0.5) / wc - 1
    m[1, 1] = 2 * fy / hc
    m[1, 2] = 2 * (cy + 0.5) / hc - 1
    m[2, 2] = (far + near) / (far - near)
    m[2, 3] = -2 * far * near / (far - near)
    m[3, 2] = 1.0
    return m


class SceneRenderer:
    """Renders :class:`SceneObject` lists on a pinhole canvas and averages sub-frames.

    camera_matrix : (3, 3) canvas intrinsics (px); size : (Wc, Hc).  Output of :meth:`render`:
    (Hc, Wc, 3) float32 linear RGB, rows top-first (OpenCV pixel centres).
    """

    def __init__(self, camera_matrix: np.ndarray, size: tuple[int, int], objects: list[SceneObject],
                 near_mm: float = 20.0, far_mm: float = 20000.0, ctx=None):
        import moderngl

        from ar_guide.render.gl import create_context

        self.camera_matrix = np.asarray(camera_matrix, dtype=np.float64)
        self.size = (int(size[0]), int(size[1]))
        self.near, self.far = float(near_mm), float(far_mm)
        self._own_ctx = ctx is None
        self.ctx = create_context() if ctx is None else ctx
        with self.ctx:
            # Two variants: sampling with an explicit LOD bias costs llvmpipe ~10 % more per
            # fragment, so only materials that ask for a bias use it.
            self.programs = {
                False: self.ctx.program(vertex_shader=_VERTEX_SHADER,
                                        fragment_shader=_FRAGMENT_SHADER.replace(", u_lod_bias)", ")")),
                True: self.ctx.program(vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER),
            }
            self._draws = []
            for obj in objects:
                self._draws.append((obj, *self._upload(obj, moderngl)))
        self._targets = {}

    def level_geometry(self, level: int) -> tuple[np.ndarray, tuple[int, int]]:
        """Camera matrix and size of the canvas at ``level`` (0 full, 1 half, ... resolution).

        Scaling by s keeps OpenCV's pixel centres: u' = (u + 0.5) s - 0.5.
        """
        s = 0.5 ** int(level)
        k = self.camera_matrix.copy()
        k[0, 0] *= s
        k[1, 1] *= s
        k[0, 2] = (k[0, 2] + 0.5) * s - 0.5
        k[1, 2] = (k[1, 2] + 0.5) * s - 0.5
        size = (int(np.ceil(self.size[0] * s)), int(np.ceil(self.size[1] * s)))
        return k, size

    def _target(self, level: int):
        target = self._targets.get(level)
        if target is None:
            k, size = self.level_geometry(level)
            with self.ctx:
                fbo = self.ctx.framebuffer(
                    color_attachments=[self.ctx.renderbuffer(size, 4, dtype="f4")],
                    depth_attachment=self.ctx.depth_renderbuffer(size),
                )
            # Float32 throughout: reading RGB float from a float buffer is a copy (half floats
            # and 8-bit formats cost a conversion per pixel on the CPU).
            target = (fbo, k, size, np.empty((size[1], size[0], 3), np.float32),
                      np.empty((size[1], size[0], 3), np.float32))
            self._targets[level] = target
        return target

    def _upload(self, obj: SceneObject, moderngl):
        m = obj.mesh
        uv = m.uv if m.uv is not None else np.zeros((m.vertices.shape[0], 2))
        data = np.hstack([m.vertices, m.normals, uv]).astype("f4")
        vbo = self.ctx.buffer(data.tobytes())
        ibo = self.ctx.buffer(np.ascontiguousarray(m.faces, dtype="i4").tobytes())
        program = self.programs[obj.material.lod_bias != 0.0]
        vao = self.ctx.vertex_array(program, [(vbo, "3f 3f 2f", "in_position", "in_normal", "in_uv")], ibo)
        img = np.ascontiguousarray(obj.material.texture, dtype=np.uint8)
        tex = self.ctx.texture((img.shape[1], img.shape[0]), 3, img.tobytes(), alignment=1)
        if obj.material.mipmaps:
            tex.build_mipmaps()
            tex.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        else:
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
        tex.repeat_x = bool(obj.material.repeat)
        tex.repeat_y = bool(obj.material.repeat)
        return vao, tex, (vbo, ibo)

    def render(self, subframes: list[SubFrame], lights: Lights, level: int = 0) -> np.ndarray:
        """Mean of the sub-frames: (Hc, Wc, 3) float32 linear RGB (a reused buffer: copy to keep).

        ``level`` 1 renders at half resolution (see :meth:`level_geometry`), for frames so
        blurred by motion that the finer sampling would be invisible.
        """
        import moderngl

        fbo, k, size, read, total = self._target(level)
        total[:] = 0.0
        with self.ctx:
            fbo.use()
            self.ctx.enable(moderngl.DEPTH_TEST)
            self.ctx.disable(moderngl.BLEND)
            # Rows are not flipped (module docstring), so outward faces wind clockwise on screen.
            self.ctx.front_face = "cw"
            for sub in subframes:
                fbo.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
                self._draw(sub, lights, k, size)
                fbo.read_into(read, components=3, dtype="f4")
                np.add(total, read, out=total)
        total *= 1.0 / len(subframes)
        return total

    def _draw(self, sub: SubFrame, lights: Lights, camera_matrix: np.ndarray, size: tuple[int, int]) -> None:
        import moderngl

        camera_from_world = np.asarray(sub.camera_from_world, dtype=np.float64)
        proj = clip_from_camera(camera_matrix, size, self.near, self.far, sub.jitter_px)
        # The GL_CAMERA_FROM_CAMERA flips of the module docstring cancel; kept explicit here.
        gl_flip = GL_CAMERA_FROM_CAMERA @ GL_CAMERA_FROM_CAMERA
        lamp = camera_from_world[:3, :3] @ lights.lamp_world + camera_from_world[:3, 3]
        fill = camera_from_world[:3, :3] @ np.asarray(lights.fill_direction_world, dtype=np.float64)
        for p in self.programs.values():
            _set(p, "u_lamp_camera", tuple(lamp.astype(np.float32)))
            _set(p, "u_lamp_power", float(lights.lamp_power))
            _set(p, "u_fill_camera", tuple((fill / np.linalg.norm(fill)).astype(np.float32)))
            _set(p, "u_fill", float(lights.fill))
            _set(p, "u_ambient", float(lights.ambient))
        for obj, vao, tex, _buffers in self._draws:
            p = vao.program
            if obj.dynamic:
                world_from_object = sub.object_poses.get(obj.name)
                if world_from_object is None:
                    continue
                camera_from_object = camera_from_world @ world_from_object
            else:
                camera_from_object = camera_from_world
            clip = proj @ gl_flip @ camera_from_object
            # moderngl takes column-major matrices: upload the transpose.
            p["u_clip_from_object"].write(clip.T.astype("f4").tobytes())
            p["u_camera_from_object"].write(camera_from_object.T.astype("f4").tobytes())
            mat = obj.material
            _set(p, "u_tint", tuple(float(c) for c in mat.tint))
            _set(p, "u_specular", float(mat.specular))
            _set(p, "u_shininess", float(mat.shininess))
            _set(p, "u_lod_bias", float(mat.lod_bias))
            tex.use(0)
            _set(p, "u_texture", 0)
            if obj.closed:
                self.ctx.enable(moderngl.CULL_FACE)
            else:
                self.ctx.disable(moderngl.CULL_FACE)
            vao.render()

    def release(self) -> None:
        with self.ctx:
            for _obj, vao, tex, buffers in self._draws:
                vao.release()
                tex.release()
                for b in buffers:
                    b.release()
            for target in self._targets.values():
                target[0].release()
            for p in self.programs.values():
                p.release()
        if self._own_ctx:
            self.ctx.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
        return False


def _set(program, name: str, value) -> None:
    # The GLSL compiler drops unused uniforms; setting one that is gone is not an error.
    member = program._members.get(name)
    if member is not None:
        member.value = value
