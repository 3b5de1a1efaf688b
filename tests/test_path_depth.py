"""The depth cue of planned paths: where a path runs inside closed anatomy meshes (computed once,
geometry.guidance + session.path_depth) and how it is drawn (annotations.draw_path segments)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import trimesh

from ar_guide.camera import CameraModel, load_camera
from ar_guide.geometry.guidance import (PathSegment, describe_segments, inside_intervals, line_crossings,
                                        path_segments, signed_volume)
from ar_guide.io.meshes import Mesh
from ar_guide.render import annotations as an
from ar_guide.scene import load_anatomy_meshes, load_scene
from ar_guide.session import build_pipeline, path_depth
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence


def box(half=10.0, centre=(0.0, 0.0, 0.0)):
    m = trimesh.creation.box(extents=(2 * half,) * 3)
    return np.asarray(m.vertices) + centre, np.asarray(m.faces)


def sphere(radius, centre=(0.0, 0.0, 0.0), subdivisions=4):
    m = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return np.asarray(m.vertices) + centre, np.asarray(m.faces)


def intervals(entry, target, mesh):
    vertices, faces = mesh
    t, sense = line_crossings(entry, target, vertices, faces)
    return inside_intervals(t, sense, signed_volume(vertices, faces) > 0)


# ------------------------------------------------------------------------------- crossings

def test_path_into_a_box_known_answer():
    # From x = -30 to x = +5 through a cube of half-size 10: enters at x = -10 (t = 20/35), leaves
    # beyond the target at x = +10 (t = 40/35).  Flat faces: exact.
    t, sense = line_crossings([-30.0, 1.0, 2.0], [5.0, 1.0, 2.0], *box())
    np.testing.assert_allclose(t, [20 / 35, 40 / 35], atol=1e-14)
    assert sense.tolist() == [1, -1]
    np.testing.assert_allclose(intervals([-30.0, 1.0, 2.0], [5.0, 1.0, 2.0], box()), [(20 / 35, 40 / 35)], atol=1e-14)


def test_path_through_corners_and_grazing_an_edge():
    # The box's diagonal goes in and out through two corners (each shared by 3-6 triangles):
    # one crossing each, at t = 1/3 and 2/3.
    t, sense = line_crossings([-30.0] * 3, [30.0] * 3, *box())
    np.testing.assert_allclose(t, [1 / 3, 2 / 3], atol=1e-14)
    assert sense.tolist() == [1, -1]
    # A line touching the edge x = y = 10 from outside (direction (1, -1, 0)) enters nothing.
    t, _ = line_crossings([0.0, 20.0, 0.0], [20.0, 0.0, 0.0], *box())
    assert t.size == 0
    # Through the middle of a face diagonal (an edge between the face's two triangles).
    t, sense = line_crossings([0.0, 0.0, -30.0], [0.0, 0.0, 30.0], *box())
    np.testing.assert_allclose(t, [1 / 3, 2 / 3], atol=1e-14)


def test_path_through_a_sphere_gives_the_entry_and_exit():
    """A sphere of radius 12 centred 40 mm along a path of 60 mm, the line 5 mm off its centre:
    it enters at 40 - sqrt(12^2 - 5^2) = 40 - sqrt(119) mm and leaves at 40 + sqrt(119) mm.  The
    icosphere (subdivision 5, 20480 faces) is within 0.003 mm of the sphere (sagitta r(1 - cos
    of half an edge's angle)); along a line 25 deg from the normal that moves a crossing < 0.004 mm."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        side = np.cross(d, rng.normal(size=3))
        side /= np.linalg.norm(side)
        entry = rng.uniform(-50, 50, 3)
        target = entry + 60.0 * d
        centre = entry + 40.0 * d + 5.0 * side
        found = intervals(entry, target, sphere(12.0, centre, subdivisions=5))
        half = math.sqrt(12.0**2 - 5.0**2)
        assert len(found) == 1
        np.testing.assert_allclose(np.array(found[0]) * 60.0, [40.0 - half, 40.0 + half], atol=0.01)


def test_inward_faces_and_holes():
    vertices, faces = box()
    flipped = faces[:, ::-1]
    assert signed_volume(vertices, faces) == pytest.approx(8000.0)
    assert signed_volume(vertices, flipped) == pytest.approx(-8000.0)
    t, sense = line_crossings([-30.0, 1.0, 2.0], [5.0, 1.0, 2.0], vertices, flipped)
    assert sense.tolist() == [-1, 1]
    np.testing.assert_allclose(inside_intervals(t, sense, outward=False), [(20 / 35, 40 / 35)], atol=1e-14)
    # A box without its x = +10 face: the line goes in and never out.
    normals = trimesh.Trimesh(vertices, faces, process=False).face_normals
    open_faces = faces[~np.isclose(normals[:, 0], 1.0)]
    t, sense = line_crossings([-30.0, 1.0, 2.0], [5.0, 1.0, 2.0], vertices, open_faces)
    with pytest.raises(ValueError, match="do not pair up"):
        inside_intervals(t, sense)


def test_segments_of_nested_meshes_name_them():
    # Liver: box of half-size 30 at the origin; tumour: sphere of radius 8 at x = 20.  Path from
    # x = -50 to the tumour's centre (x = 20): outside to x = -30 (t = 20/70), inside the liver,
    # inside both from x = 12 (t = 62/70, to within the icosphere's 0.003 mm).
    entry, target = np.array([-50.0, 0.3, 0.2]), np.array([20.0, 0.3, 0.2])
    liver = intervals(entry, target, box(30.0))
    tumour = intervals(entry, target, sphere(8.0, (20.0, 0.0, 0.0), subdivisions=5))
    segments = path_segments([("liver", liver), ("tumour", tumour)])
    assert [(s.inside, s.meshes) for s in segments] == [(False, ()), (True, ("liver",)), (True, ("liver", "tumour"))]
    assert segments[0].t0 == 0.0 and segments[-1].t1 == 1.0
    assert segments[1].t0 == pytest.approx(20 / 70, abs=1e-14)
    x_in = 20.0 - math.sqrt(64.0 - 0.3**2 - 0.2**2)
    assert segments[2].t0 * 70.0 - 50.0 == pytest.approx(x_in, abs=0.005)
    assert describe_segments(segments, 70.0) == (f"outside 0.0-20.0 mm; inside liver 20.0-{x_in + 50:.1f} mm; "
                                                 f"inside liver, tumour {x_in + 50:.1f}-70.0 mm")
    # No meshes: one outside segment.
    assert path_segments([]) == (PathSegment(0.0, 1.0, False, ()),)


# ------------------------------------------------------------------------------- session: which meshes

def _item(name, role):
    return SimpleNamespace(name=name, role=role)


def test_path_depth_uses_closed_meshes_of_the_inside_roles():
    path = SimpleNamespace(name="needle", entry_ct=np.array([-50.0, 0.3, 0.2]), target_ct=np.array([20.0, 0.3, 0.2]))
    vertices, faces = box(30.0)
    normals = trimesh.Trimesh(vertices, faces, process=False).face_normals
    # Split vertices (every triangle its own three, as files with per-face normals are written)
    # still make a closed surface; faces wound inward are fine too.
    split = Mesh(vertices[faces].reshape(-1, 3), np.arange(3 * len(faces)).reshape(-1, 3))
    inward = Mesh(vertices, faces[:, ::-1])
    skin_vertices, skin_faces = box(45.0)
    open_skin = Mesh(skin_vertices, skin_faces[~np.isclose(normals[:, 0], 1.0)])     # same faces, one side off
    vessel = Mesh(*box(40.0))
    anatomy = [_item("liver", "organ"), _item("liver2", "target"), _item("skin", "skin"), _item("vessel", "vessel")]
    depth = path_depth([path], anatomy, [split, inward, open_skin, vessel])
    assert depth.used == ("liver", "liver2")
    assert depth.notes == ("skin: not a closed surface (open edges or inconsistent winding): not used for the "
                           "paths' depth cue",)
    segments = depth.segments["needle"]
    assert [(s.inside, s.meshes) for s in segments] == [(False, ()), (True, ("liver", "liver2"))]
    assert segments[1].t0 == pytest.approx(20 / 70, abs=1e-14)


def test_demo_scene_path_runs_into_liver_then_tumour():
    """The phantom's needle path from the skin to the tumour's centre, checked against an
    independent inside test: the generalised winding number (sum of the solid angles of the
    triangles, Van Oosterom and Strackee 1983) at the middle of each segment is 1 inside, 0 outside."""
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    scene = load_scene(sequence.scene)
    meshes = dict(zip([a.name for a in scene.anatomy], load_anatomy_meshes(scene)))
    pipeline = build_pipeline(scene, load_camera(sequence.calibration), render=False)
    path = pipeline.paths[0]
    assert pipeline.path_depth_notes == ()
    assert [(s.inside, s.meshes) for s in path.segments] == [(False, ()), (True, ("liver",)),
                                                             (True, ("liver", "tumour"))]
    for segment in path.segments:
        for name in ("liver", "tumour"):
            for frac in (0.02, 0.5, 0.98):
                t = segment.t0 + frac * (segment.t1 - segment.t0)
                point = path.entry_ct + t * (path.target_ct - path.entry_ct)
                w = _winding_number(point, meshes[name])
                assert w == pytest.approx(1.0 if name in segment.meshes else 0.0, abs=1e-6), (segment, name)
    # The path ends at the tumour's centre: its last part is inside the tumour.
    target = next(t for t in scene.targets if t.name == "tumour")
    tumour_part = (path.segments[-1].t1 - path.segments[-1].t0) * np.linalg.norm(path.target_ct - path.entry_ct)
    assert 0.7 * target.radius_mm < tumour_part < 1.3 * target.radius_mm


def _winding_number(point, mesh):
    a, b, c = (mesh.vertices[mesh.faces[:, k]] - point for k in range(3))
    la, lb, lc = (np.linalg.norm(x, axis=1) for x in (a, b, c))
    numerator = np.einsum("ij,ij->i", a, np.cross(b, c))
    denominator = (la * lb * lc + np.einsum("ij,ij->i", a, b) * lc + np.einsum("ij,ij->i", b, c) * la
                   + np.einsum("ij,ij->i", c, a) * lb)
    return float(np.sum(2.0 * np.arctan2(numerator, denominator)) / (4.0 * math.pi))


# ------------------------------------------------------------------------------- drawing

CAMERA = CameraModel(np.array([[400.0, 0.0, 159.5], [0.0, 400.0, 59.5], [0.0, 0.0, 1.0]]), np.zeros(5), (320, 120))


def _profile(frame, entry, target, n=400):
    """Green channel sampled along the projected path (pinhole: a straight image line)."""
    s = np.linspace(0.0, 1.0, n)[:, None]
    uv = CAMERA.project(entry + s * (target - entry))
    u, v = np.round(uv).astype(int).T
    return s[:, 0], frame[v, u, 1]


def test_inside_part_is_dashed_outside_solid():
    # A horizontal path across the image at 500 mm: u from 39.5 to 279.5 px (240 px).
    entry, target = np.array([-150.0, 0.0, 500.0]), np.array([150.0, 0.0, 500.0])
    frame = np.zeros((120, 320, 3), np.uint8)
    assert an.draw_path(frame, CAMERA, entry, target, 2.0, "", (0, 255, 0),
                        segments=(PathSegment(0.0, 0.5, False), PathSegment(0.5, 1.0, True, ("liver",))))
    s, g = _profile(frame, entry, target)
    # Away from the entry ring and the target dot (about 8 px each), and from the boundary.
    outside = g[(s > 0.08) & (s < 0.48)]
    inside = g[(s > 0.52) & (s < 0.92)]
    assert outside.min() > 200                      # solid
    lit = inside > 200
    assert 0.3 < lit.mean() < 0.75                  # dashed: lit and dark in turn
    assert np.count_nonzero(np.diff(lit.astype(int)) == 1) >= 3
    assert inside.min() < 30                        # the gaps are empty (black background)
    # Triples and segments: the same drawing.
    again = np.zeros_like(frame)
    an.draw_path(again, CAMERA, entry, target, 2.0, "", (0, 255, 0), segments=((0.0, 0.5, False), (0.5, 1.0, True)))
    np.testing.assert_array_equal(again, frame)
    # Without segments (or all outside) the whole path is solid, as before.
    plain = np.zeros_like(frame)
    an.draw_path(plain, CAMERA, entry, target, 2.0, "", (0, 255, 0))
    s, g = _profile(plain, entry, target)
    assert g[(s > 0.08) & (s < 0.92)].min() > 200


def test_dash_boundary_is_placed_at_the_segment_boundary():
    """The solid part ends where the segment does (t = 0.3, not at a sample of the 64)."""
    s, inside = an._path_parameters(64, ((0.0, 0.3, True), (0.3, 0.6, False), (0.6, 1.0, True)))
    assert 0.3 in s and 0.6 in s and len(s) == 67
    mid = 0.5 * (s[:-1] + s[1:])
    np.testing.assert_array_equal(inside, (mid < 0.3) | (mid > 0.6))
    entry, target = np.array([-150.0, 0.0, 500.0]), np.array([150.0, 0.0, 500.0])
    frame = np.zeros((120, 320, 3), np.uint8)
    an.draw_path(frame, CAMERA, entry, target, 2.0, "", (0, 255, 0),
                 segments=((0.0, 0.3, True), (0.3, 0.6, False), (0.6, 1.0, True)))
    s, g = _profile(frame, entry, target, n=2400)
    solid = g[(s > 0.3 + 0.01) & (s < 0.6 - 0.01)]
    assert solid.min() > 200
    assert g[(s > 0.08) & (s < 0.29)].min() < 30 and g[(s > 0.61) & (s < 0.92)].min() < 30   # dashed
    # Stale: dashed and grey throughout, whatever the segments.
    stale = np.zeros_like(frame)
    an.draw_path(stale, CAMERA, entry, target, 2.0, "", (0, 255, 0), style="stale",
                 segments=((0.0, 0.3, True), (0.3, 0.6, False), (0.6, 1.0, True)))
    s, g = _profile(stale, entry, target, n=2400)
    assert g[(s > 0.32) & (s < 0.58)].min() < 30
    assert np.all(stale[..., 0] == stale[..., 1]) and np.all(stale[..., 1] == stale[..., 2])
