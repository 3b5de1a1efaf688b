"""Builds an OverlayPipeline from a scene and a calibration (the wiring that play, demo and live share)."""

from __future__ import annotations

import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.pipeline import OverlayPipeline, PathOverlay, RegistrationOverlay, TargetOverlay, ToolOverlay
from ar_guide.scene import Scene, load_anatomy_meshes
from ar_guide.tracking.bodies import body_from_config

DEFAULT_TARGET_RGB = (1.0, 0.85, 0.1)
DEFAULT_PATH_RGB = (0.2, 0.9, 1.0)


def _bgr(rgb) -> tuple[int, int, int]:
    r, g, b = (int(round(255 * float(c))) for c in rgb)
    return (b, g, r)


def registration_overlay(scene: Scene) -> RegistrationOverlay:
    """What the HUD shows about the scene's registration (method, FRE, predicted TRE by target)."""
    reg = scene.registration
    return RegistrationOverlay(reg.method, reg.fre_mm, dict(reg.predicted_tre_mm))


def build_pipeline(scene: Scene, camera: CameraModel, *, render: bool = True, gl_context=None,
                   **pipeline_options) -> OverlayPipeline:
    """Resolves bodies, loads meshes and creates the renderer; raises InputError on bad files."""
    base_dir = scene.path.parent
    reference = body_from_config(scene.reference, base_dir, name="reference", source=scene.path)
    tools = {}
    for i, tool in enumerate(scene.tools):
        # A tool from a tool file: its body's relative file names and its errors belong to that file.
        body = body_from_config(tool.body, scene.tool_base_dir(tool), name=tool.name,
                                source=tool.source or scene.path,
                                key="body" if tool.source is not None else f"tools[{i}].body")
        tools[tool.name] = ToolOverlay(body=body, tip_body=np.asarray(tool.tip_mm, dtype=np.float64).reshape(1, 3))
    renderer = None
    if render and scene.anatomy:
        from ar_guide.render.anatomy import AnatomyRenderer, MeshLayer

        layers = []
        for item, mesh in zip(scene.anatomy, load_anatomy_meshes(scene)):
            layers.append(MeshLayer(name=item.name, vertices_ct=mesh.vertices, faces=mesh.faces,
                                    color_rgb=tuple(item.color_rgb), opacity=float(item.opacity), role=item.role))
        renderer = AnatomyRenderer(camera, layers, ctx=gl_context)
    tre = scene.registration.predicted_tre_mm
    targets = [TargetOverlay(t.name, np.asarray(t.position_ct, dtype=np.float64), float(t.radius_mm),
                             _bgr(t.color_rgb or DEFAULT_TARGET_RGB), tre.get(t.name)) for t in scene.targets]
    paths = [PathOverlay(p.name, np.asarray(p.entry_ct, dtype=np.float64), np.asarray(p.target_ct, dtype=np.float64),
                         float(p.diameter_mm), _bgr(DEFAULT_PATH_RGB)) for p in scene.paths]
    return OverlayPipeline(camera, reference, scene.registration.reference_from_ct, renderer=renderer,
                           targets=targets, paths=paths, tools=tools,
                           registration=registration_overlay(scene), **pipeline_options)
