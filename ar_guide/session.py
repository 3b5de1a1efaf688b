"""Builds an OverlayPipeline from a scene and a calibration (the wiring that play, demo and live share).

Also prepares, once at startup, the depth cue of each planned path: where it runs inside the
closed anatomy meshes (``path_depth``), so that the per-frame drawing only splits a line.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ar_guide.camera import CameraModel
from ar_guide.constants import GuidanceSettings
from ar_guide.geometry.guidance import inside_intervals, line_crossings, path_segments, signed_volume
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


@dataclasses.dataclass(frozen=True)
class PathDepth:
    """Where the planned paths run inside the anatomy (CT frame).

    segments : by path name, (PathSegment, ...) covering the path from entry (0) to target (1)
    used : names of the meshes that took part (closed, of a role in GuidanceSettings.inside_roles)
    notes : one line per mesh left out for a reason other than its role ("skin: not a closed
        surface (open edges or inconsistent winding): not used for the paths' depth cue")
    """

    segments: dict
    used: tuple[str, ...]
    notes: tuple[str, ...]


def _closed_surface(vertices, faces):
    """(vertices, faces) with duplicate vertices merged, or None when not a closed, consistently
    wound surface (trimesh: every edge shared by exactly two faces, in opposite directions)."""
    import trimesh

    mesh = trimesh.Trimesh(vertices=np.asarray(vertices, dtype=np.float64), faces=np.asarray(faces), process=False)
    mesh.merge_vertices()        # files often split vertices (per-face normals); edges must be shared
    if not (mesh.is_watertight and mesh.is_winding_consistent):
        return None
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces)


def path_depth(paths, anatomy, meshes, settings: GuidanceSettings = GuidanceSettings()) -> PathDepth:
    """The depth cue of each planned path (see :class:`PathDepth`).

    paths : scene.PlannedPath items (entry_ct, target_ct, name)
    anatomy, meshes : scene.AnatomyItem items and their loaded meshes (vertices in CT mm), in order
    A path's line is crossed with each closed mesh of an "inside" role; the parts of the path inside
    any of them are marked inside, with the meshes' names (geometry.guidance.path_segments).
    """
    notes = []
    closed = []
    for item, mesh in zip(anatomy, meshes):
        if item.role not in settings.inside_roles:
            continue
        surface = _closed_surface(mesh.vertices, mesh.faces)
        if surface is None:
            notes.append(f"{item.name}: not a closed surface (open edges or inconsistent winding): "
                         "not used for the paths' depth cue")
            continue
        volume = signed_volume(*surface)
        if volume == 0.0:
            notes.append(f"{item.name}: encloses no volume: not used for the paths' depth cue")
            continue
        closed.append((item.name, surface, volume > 0.0))
    segments = {}
    for path in paths:
        named = []
        for name, (vertices, faces), outward in closed:
            t, sense = line_crossings(path.entry_ct, path.target_ct, vertices, faces, settings.crossing_merge_mm)
            try:
                named.append((name, inside_intervals(t, sense, outward)))
            except ValueError as exc:
                notes.append(f"{name}: path {path.name}: {exc}: not used for its depth cue")
        segments[path.name] = path_segments(named)
    return PathDepth(segments, tuple(name for name, _, _ in closed), tuple(notes))


def build_pipeline(scene: Scene, camera: CameraModel, *, render: bool = True, gl_context=None,
                   guidance_settings: GuidanceSettings = GuidanceSettings(),
                   **pipeline_options) -> OverlayPipeline:
    """Resolves bodies, loads meshes and creates the renderer; raises InputError on bad files.

    The meshes are read once, for the renderer and for the paths' depth cue (:func:`path_depth`);
    without ``render`` they are read only when the scene has planned paths.
    """
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
    meshes = None
    if scene.anatomy and (render or scene.paths):
        meshes = load_anatomy_meshes(scene)
    if render and scene.anatomy:
        from ar_guide.render.anatomy import AnatomyRenderer, MeshLayer

        layers = []
        for item, mesh in zip(scene.anatomy, meshes):
            layers.append(MeshLayer(name=item.name, vertices_ct=mesh.vertices, faces=mesh.faces,
                                    color_rgb=tuple(item.color_rgb), opacity=float(item.opacity), role=item.role))
        renderer = AnatomyRenderer(camera, layers, ctx=gl_context)
    tre = scene.registration.predicted_tre_mm
    targets = [TargetOverlay(t.name, np.asarray(t.position_ct, dtype=np.float64), float(t.radius_mm),
                             _bgr(t.color_rgb or DEFAULT_TARGET_RGB), tre.get(t.name)) for t in scene.targets]
    depth = path_depth(scene.paths, scene.anatomy, meshes or (), guidance_settings)
    paths = [PathOverlay(p.name, np.asarray(p.entry_ct, dtype=np.float64), np.asarray(p.target_ct, dtype=np.float64),
                         float(p.diameter_mm), _bgr(DEFAULT_PATH_RGB), target_name=p.target_name,
                         segments=depth.segments.get(p.name, ()))
             for p in scene.paths]
    pipeline = OverlayPipeline(camera, reference, scene.registration.reference_from_ct, renderer=renderer,
                               targets=targets, paths=paths, tools=tools, registration=registration_overlay(scene),
                               guidance_settings=guidance_settings, **pipeline_options)
    pipeline.path_depth_notes = depth.notes
    return pipeline
