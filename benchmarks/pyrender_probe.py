"""Why ar_guide renders with its own moderngl renderer instead of pyrender (docs/benchmarks.md).

Times pyrender's OffscreenRenderer and ar_guide's AnatomyRenderer on the same 100k-triangle mesh
at 1280x720, same camera, same pose, in one process.  pyrender is not a dependency: run this in an
environment that has `pyrender-maintained` next to ar_guide, e.g.

    python -m venv /tmp/pr && /tmp/pr/bin/pip install -e . pyrender-maintained
    PYOPENGL_PLATFORM=egl /tmp/pr/bin/python benchmarks/pyrender_probe.py
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")

import numpy as np  # noqa: E402
import pyrender  # noqa: E402
import trimesh  # noqa: E402

from ar_guide.camera import CameraModel  # noqa: E402
from ar_guide.geometry.transforms import GL_CAMERA_FROM_CAMERA, invert_transform, make_transform  # noqa: E402
from ar_guide.render.anatomy import AnatomyRenderer, MeshLayer  # noqa: E402

W, H, RUNS = 1280, 720, 30


def median_ms(fn) -> float:
    fn()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times))


def main() -> None:
    mesh = trimesh.creation.icosphere(subdivisions=6)            # 81,920 triangles
    mesh = trimesh.Trimesh(*trimesh.remesh.subdivide(mesh.vertices, mesh.faces, face_index=np.arange(6028)),
                           process=False)
    mesh.apply_scale(80.0)                                          # 160 mm organ-sized sphere
    print(f"triangles: {len(mesh.faces)}")
    camera = CameraModel(np.array([[1000.0, 0, 639.5], [0, 1000.0, 359.5], [0, 0, 1]]), np.zeros(5), (W, H))
    camera_from_ct = make_transform(np.eye(3), [0.0, 0.0, 500.0])

    scene = pyrender.Scene(bg_color=[0, 0, 0, 0], ambient_light=[0.3, 0.3, 0.3])
    material = pyrender.MetallicRoughnessMaterial(baseColorFactor=[0.85, 0.45, 0.35, 0.5], alphaMode="BLEND")
    scene.add(pyrender.Mesh.from_trimesh(mesh, material=material, smooth=True))
    cam = pyrender.IntrinsicsCamera(1000.0, 1000.0, 639.5, 359.5, znear=10.0, zfar=5000.0)
    # pyrender's camera pose is world_from_gl_camera.
    scene.add(cam, pose=invert_transform(GL_CAMERA_FROM_CAMERA @ camera_from_ct))
    scene.add(pyrender.DirectionalLight(intensity=3.0), pose=invert_transform(GL_CAMERA_FROM_CAMERA @ camera_from_ct))
    renderer = pyrender.OffscreenRenderer(W, H)
    flags = pyrender.RenderFlags
    for label, f in (("pyrender RGBA (default shading)", flags.RGBA),
                     ("pyrender RGBA, flat shading", flags.RGBA | flags.FLAT),
                     ("pyrender RGBA, no face culling", flags.RGBA | flags.SKIP_CULL_FACES)):
        print(f"{label}: {median_ms(lambda: renderer.render(scene, flags=f)):.1f} ms")
    renderer.delete()

    ours = AnatomyRenderer(camera, [MeshLayer("organ", mesh.vertices, mesh.faces, (0.85, 0.45, 0.35), 0.5)])
    print(f"ar_guide AnatomyRenderer (premultiplied RGBA, distortion remap): "
          f"{median_ms(lambda: ours.render(camera_from_ct)):.1f} ms")


if __name__ == "__main__":
    main()
