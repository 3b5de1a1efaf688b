"""Benchmark of anatomy rendering and compositing (not a test: run it by hand).

    .venv/bin/python benchmarks/render_stages.py [--frames 40] [--backend egl|osmesa] [--canvas-scale 1.0]

Scenes: a ~100k-triangle organ-like closed mesh (a bumpy ellipsoid) filling much of the frame,
opaque; the same at opacity 0.4 with an opaque 5k-triangle tumour inside; the organ so near
that it fills the frame; and the organ far away (small on screen).  Camera: fx = 1000 px at 1280x720 (1500 px at 1920x1080), distortion
k1 -0.28, k2 0.09, p1 1e-3, p2 -5e-4, k3 -0.01.  The pose turns a little every frame.  Prints
the median over the frames of each stage (ms).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import trimesh

from ar_guide.camera import CameraModel
from ar_guide.constants import RenderSettings
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from ar_guide.render.anatomy import AnatomyRenderer, MeshLayer
from ar_guide.render.compose import compose_premultiplied
from ar_guide.render.gl import backend_of, create_context

DISTORTION = np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01])


def organ(n_triangles: int = 100_000) -> trimesh.Trimesh:
    count = int(round(np.sqrt(n_triangles / 4.0)))
    m = trimesh.creation.uv_sphere(radius=1.0, count=[count, count])
    v = m.vertices.copy()
    bumps = 1.0 + 0.08 * np.sin(3 * v[:, 0]) * np.cos(4 * v[:, 1]) + 0.05 * np.sin(5 * v[:, 2])
    v *= bumps[:, None]
    v *= [140.0, 90.0, 70.0]
    return trimesh.Trimesh(v, m.faces, process=False)


def camera_for(width: int, height: int) -> CameraModel:
    f = 1000.0 * width / 1280.0
    k = np.array([[f, 0.0, (width - 1) / 2 + 3.2], [0.0, f * 1.001, (height - 1) / 2 - 2.1], [0.0, 0.0, 1.0]])
    return CameraModel(k, DISTORTION, (width, height))


def scenes():
    o = organ()
    t = trimesh.creation.icosphere(subdivisions=4, radius=18.0)
    t.vertices += [20.0, 10.0, -10.0]
    return {
        "organ 100k opaque, near": ([MeshLayer("organ", o.vertices, o.faces, (0.8, 0.45, 0.4), 1.0)], 330.0),
        "organ 100k @0.4 + tumour": ([MeshLayer("organ", o.vertices, o.faces, (0.8, 0.45, 0.4), 0.4),
                                      MeshLayer("tumour", t.vertices, t.faces, (0.9, 0.9, 0.2), 1.0,
                                                role="target")], 330.0),
        "organ 100k opaque, fills": ([MeshLayer("organ", o.vertices, o.faces, (0.8, 0.45, 0.4), 1.0)], 220.0),
        "organ 100k opaque, far": ([MeshLayer("organ", o.vertices, o.faces, (0.8, 0.45, 0.4), 1.0)], 1100.0),
    }


def run(frames: int, backend: str | None, canvas_scale: float = 1.0) -> None:
    ctx = create_context(backend)
    print(f"machine: {platform.processor() or platform.machine()}, backend {backend_of(ctx)}, "
          f"{ctx.info['GL_RENDERER']}, canvas_scale {canvas_scale}")
    print(f"{'scene':28s} {'size':>9s} {'tris':>7s} {'cover':>6s} {'gl':>6s} {'read':>6s} {'remap':>6s} "
          f"{'render':>7s} {'compose':>7s}")
    rng = np.random.default_rng(0)
    for (w, h) in ((1280, 720), (1920, 1080)):
        cam = camera_for(w, h)
        frame = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        out = np.empty_like(frame)
        for name, (layers, distance) in scenes().items():
            r = AnatomyRenderer(cam, layers, ctx=ctx, settings=RenderSettings(canvas_scale=canvas_scale))
            rows = []
            for i in range(frames + 3):
                pose = make_transform(rotation_from_rotvec([0.3 + 0.01 * i, 0.2, 0.05 * i]), [5.0, -3.0, distance])
                img = r.render(pose)
                t0 = time.perf_counter()
                compose_premultiplied(frame, img, out=out)
                t1 = time.perf_counter()
                if i >= 3:  # warm-up frames excluded
                    tm = r.last_timings
                    rows.append((tm.gl_ms, tm.readback_ms, tm.remap_ms, tm.total_ms, (t1 - t0) * 1e3))
            med = np.median(np.array(rows), axis=0)
            cover = float(np.mean(img[..., 3] > 0))
            tris = sum(len(l.faces) for l in layers)
            print(f"{name:28s} {w:4d}x{h:<4d} {tris:7d} {cover:6.2f} {med[0]:6.2f} {med[1]:6.2f} {med[2]:6.2f} "
                  f"{med[3]:7.2f} {med[4]:7.2f}")
            r.release()
    ctx.release()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--backend", choices=("egl", "osmesa"), default=None)
    parser.add_argument("--canvas-scale", type=float, default=1.0)
    args = parser.parse_args()
    run(args.frames, args.backend, args.canvas_scale)
