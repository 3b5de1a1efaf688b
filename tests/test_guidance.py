"""The pointer's guidance to a planned path: known answers (geometry.guidance), and the bull's-eye
inset drawn by the pipeline from given tracking states (a fake pointer: the demo scene has none)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ar_guide.camera import load_camera
from ar_guide.constants import GuidanceSettings
from ar_guide.geometry.guidance import (anatomical_letter, angle_between_deg, level, path_basis,
                                        pointer_guidance)
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec, transform_points
from ar_guide.pipeline import OverlayPipeline, ToolOverlay
from ar_guide.render import annotations
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence, load_ground_truth
from ar_guide.tracking.bodies import marker_map_body
from ar_guide.tracking.status import BodyState, TrackingStatus

OK, STALE, LOST = TrackingStatus.OK, TrackingStatus.STALE, TrackingStatus.LOST
GREEN, YELLOW, RED = annotations.LEVEL_COLOURS_BGR


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


# ------------------------------------------------------------------------------- the basis

def test_basis_of_an_anterior_posterior_path_known_answer():
    # Path straight in from the front (LPS: +y is posterior).  "up" = superior (+z) is already
    # across the path; right = d x up = y x z = +x, the patient's left: seen from the front, the
    # patient's left is on the viewer's right.
    basis = path_basis([0.0, -50.0, 0.0], [0.0, 50.0, 0.0])
    np.testing.assert_allclose(basis.direction, [0, 1, 0], atol=1e-15)
    np.testing.assert_allclose(basis.up, [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(basis.right, [1, 0, 0], atol=1e-15)
    assert basis.length_mm == 100.0
    assert basis.labels() == {"right": "L", "left": "R", "up": "S", "down": "I"}


def test_basis_of_a_superior_inferior_path_uses_anterior_as_up():
    # Within 30 deg of the S-I axis superior cannot be "up": anterior (-y) is.  Path 20 deg off
    # the -z axis (head to feet) towards +x: d = (sin 20, 0, -cos 20); -y is already across it,
    # right = d x up = (s, 0, -c) x (0, -1, 0) = (-c, 0, -s): mostly the patient's right.
    a = math.radians(20.0)
    basis = path_basis([0.0, 0.0, 0.0], [100 * math.sin(a), 0.0, -100 * math.cos(a)])
    np.testing.assert_allclose(basis.up, [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(basis.right, [-math.cos(a), 0, -math.sin(a)], atol=1e-15)
    assert basis.labels() == {"right": "R", "left": "L", "up": "A", "down": "P"}


def test_basis_is_orthonormal_and_does_not_spin():
    rng = np.random.default_rng(5)
    for _ in range(200):
        entry = rng.uniform(-200, 200, 3)
        target = entry + unit(rng.normal(size=3)) * rng.uniform(20, 200)
        b = path_basis(entry, target)
        frame = np.column_stack([b.right, -b.up, b.direction])
        np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-12)
        assert np.linalg.det(frame) == pytest.approx(1.0, abs=1e-12)     # like the camera's x, y, z
        # A path turned by 0.5 deg turns its basis by about as much (no flip, no spin), away from
        # the switch between superior and anterior "up" (30 deg from the S-I axis).
        if abs(angle_between_deg(b.direction, [0, 0, 1]) - 90) < 55:
            turned = rotation_from_rotvec(math.radians(0.5) * unit(rng.normal(size=3)))
            b2 = path_basis(entry, entry + turned @ (target - entry))
            assert angle_between_deg(b.up, b2.up) < 1.0
            assert angle_between_deg(b.right, b2.right) < 1.0


def test_anatomical_letters_and_bad_paths():
    assert [anatomical_letter(v) for v in ([2, 1, 0], [-2, 1, 0], [0, 3, -1], [0, -3, 1], [1, 1, 4], [0, 0, -1])] == \
        ["L", "R", "P", "A", "S", "I"]
    with pytest.raises(ValueError, match="distinct, finite entry and target"):
        path_basis([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


# ------------------------------------------------------------------------------- guidance figures

BASIS = path_basis([0.0, 0.0, 0.0], [0.0, 100.0, 0.0])   # d = +y, right = +x, up = +z


def test_guidance_known_answers():
    # Tip at (3, 60, 4): 40 mm short of the target's plane (y = 100), 3 mm right (+x), 4 mm up
    # (+z): lateral sqrt(9 + 16) = 5; straight to the target sqrt(3^2 + 40^2 + 4^2) = sqrt(1625).
    tip = np.array([3.0, 60.0, 4.0])
    g = pointer_guidance(tip, [0.0, 1.0, 0.0], BASIS)
    assert g.depth_to_go_mm == pytest.approx(40.0, abs=1e-12)
    assert g.along_path_mm == pytest.approx(60.0, abs=1e-12)
    assert g.lateral_mm == pytest.approx(5.0, abs=1e-12)
    assert g.tip_to_target_mm == pytest.approx(math.sqrt(1625.0), abs=1e-12)
    np.testing.assert_allclose(g.offset_mm, [3.0, 4.0], atol=1e-12)
    # An axis parallel to the path: angle 0, and it meets the target's plane with the tip's offset.
    assert g.angle_deg == pytest.approx(0.0, abs=1e-12)
    np.testing.assert_allclose(g.axis_offset_mm, [3.0, 4.0], atol=1e-12)
    # Aimed at the target: it reaches the centre; the angle is atan(5 / 40) = 7.125 deg.
    g = pointer_guidance(tip, [-3.0, 40.0, -4.0], BASIS)
    np.testing.assert_allclose(g.axis_offset_mm, [0.0, 0.0], atol=1e-12)
    assert g.angle_deg == pytest.approx(math.degrees(math.atan(5.0 / 40.0)), abs=1e-12)
    # Tilted by tan = 0.1 towards +x: over the 40 mm to go it drifts 4 mm more to the right; any
    # length of axis vector gives the same.
    g = pointer_guidance(tip, [0.5, 5.0, 0.0], BASIS)
    np.testing.assert_allclose(g.axis_offset_mm, [7.0, 4.0], atol=1e-12)
    assert g.angle_deg == pytest.approx(math.degrees(math.atan(0.1)), abs=1e-12)


def test_guidance_past_the_target_and_axes_that_do_not_reach_its_plane():
    g = pointer_guidance([0.0, 110.0, 0.0], [0.0, 1.0, 0.0], BASIS)
    assert g.depth_to_go_mm == pytest.approx(-10.0) and g.lateral_mm == 0.0 and g.tip_to_target_mm == 10.0
    assert g.axis_offset_mm is None                      # the plane is behind the tip
    tip = [0.0, 50.0, 0.0]
    # 61 deg off the path (beyond max_extension_deg = 60), perpendicular, backwards.
    tilted = [math.sin(math.radians(61)), math.cos(math.radians(61)), 0.0]
    assert pointer_guidance(tip, tilted, BASIS).axis_offset_mm is None
    almost = [math.sin(math.radians(59)), math.cos(math.radians(59)), 0.0]
    np.testing.assert_allclose(pointer_guidance(tip, almost, BASIS).axis_offset_mm,
                               [50.0 * math.tan(math.radians(59)), 0.0], atol=1e-9)
    assert pointer_guidance(tip, [1.0, 0.0, 0.0], BASIS).angle_deg == pytest.approx(90.0)
    backwards = pointer_guidance(tip, [0.0, -1.0, 0.0], BASIS)
    assert backwards.angle_deg == pytest.approx(180.0) and backwards.axis_offset_mm is None
    # No axis (a tool without a shaft): position figures only.
    bare = pointer_guidance([1.0, 50.0, 0.0], None, BASIS)
    assert math.isnan(bare.angle_deg) and bare.axis_offset_mm is None and bare.lateral_mm == 1.0
    with pytest.raises(ValueError, match="need a non-zero, finite axis"):
        pointer_guidance(tip, [0.0, 0.0, 0.0], BASIS)
    with pytest.raises(ValueError, match="need a finite tip"):
        pointer_guidance([np.nan, 0.0, 0.0], [0.0, 1.0, 0.0], BASIS)


def test_guidance_recovers_a_constructed_tip_and_is_frame_independent():
    """Seeded: place the tip at a known depth and offset in a random path's basis and read them
    back; the scalar figures do not change when everything is moved by a rigid transform."""
    rng = np.random.default_rng(11)
    for _ in range(100):
        entry = rng.uniform(-150, 150, 3)
        target = entry + unit(rng.normal(size=3)) * rng.uniform(30, 150)
        b = path_basis(entry, target)
        depth, right, up = rng.uniform(-20, 120), rng.uniform(-15, 15), rng.uniform(-15, 15)
        tip = target - depth * b.direction + right * b.right + up * b.up
        axis = unit(b.direction + 0.05 * rng.normal(size=3))
        g = pointer_guidance(tip, axis, b)
        assert g.depth_to_go_mm == pytest.approx(depth, abs=1e-9)
        np.testing.assert_allclose(g.offset_mm, [right, up], atol=1e-9)
        assert g.angle_deg == pytest.approx(math.degrees(math.acos(np.clip(axis @ b.direction, -1, 1))), abs=1e-6)
        if g.axis_offset_mm is not None:
            # The extended axis point lies on the tool's line and in the target's plane.
            point = target + g.axis_offset_mm[0] * b.right + g.axis_offset_mm[1] * b.up
            assert np.linalg.norm(np.cross(point - tip, axis)) < 1e-8
        moved = make_transform(rotation_from_rotvec(rng.normal(size=3)), rng.uniform(-500, 500, 3))
        e2, t2, tip2 = transform_points(moved, np.stack([entry, target, tip]))
        g2 = pointer_guidance(tip2, moved[:3, :3] @ axis, path_basis(e2, t2))
        for name in ("tip_to_target_mm", "depth_to_go_mm", "along_path_mm", "lateral_mm", "angle_deg"):
            assert getattr(g2, name) == pytest.approx(getattr(g, name), abs=1e-8), name


def test_colour_classes():
    # Under 2 mm green, under 5 mm yellow, beyond red (2 mm / 2 deg, Perez-Pachon et al. 2021).
    assert [level(v, 2.0, 5.0) for v in (0.0, 1.99, 2.0, 4.99, 5.0, 30.0)] == [0, 0, 1, 1, 2, 2]


# ------------------------------------------------------------------------------- the inset, drawn

TIP_BODY = np.array([-100.0, 0.0, 0.0])     # SciKit-Surgery's pointer: the tip 100 mm along -x


def _pointer_body():
    markers = {}
    for i, (cx, cy) in enumerate(((-17.5, -8.75), (0.0, -8.75), (17.5, -8.75), (-17.5, 8.75))):
        markers[i] = np.array([[cx - 7.25, cy - 7.25, 0], [cx + 7.25, cy - 7.25, 0],
                               [cx + 7.25, cy + 7.25, 0], [cx - 7.25, cy + 7.25, 0]], dtype=np.float64)
    return marker_map_body("pointer", "DICT_4X4_50", markers)


@pytest.fixture(scope="module")
def demo():
    """The test phantom's scene with a pointer added, and the true camera pose of one frame."""
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    scene = load_scene(sequence.scene)
    camera = load_camera(sequence.calibration)
    base = build_pipeline(scene, camera, render=False)
    truth = load_ground_truth(sequence.ground_truth)
    camera_from_reference = truth.camera_from_reference[len(truth.camera_from_reference) // 2]
    return scene, camera, base, camera_from_reference


def _pipeline(demo):
    _scene, camera, base, _ = demo
    tool = ToolOverlay(_pointer_body(), TIP_BODY.reshape(1, 3))
    return OverlayPipeline(camera, base.reference, base.reference_from_ct, targets=base.targets, paths=base.paths,
                           tools={"pointer": tool}, registration=base.registration)


def _pointer_pose(pipeline, camera_from_reference, tip_ct, axis_ct, body):
    """camera_from_pointer that puts the tip at tip_ct with the shaft (markers' centre -> tip)
    along axis_ct."""
    shaft_body = unit(TIP_BODY - body.centre_body)
    axis_ct = unit(axis_ct)
    turn = np.cross(shaft_body, axis_ct)
    angle = math.atan2(np.linalg.norm(turn), shaft_body @ axis_ct)
    rotation = rotation_from_rotvec(unit(turn) * angle) if np.linalg.norm(turn) > 1e-12 else np.eye(3)
    ct_from_pointer = make_transform(rotation, tip_ct - rotation @ TIP_BODY)
    return camera_from_reference @ pipeline.reference_from_ct @ ct_from_pointer


def _state(name, status, pose):
    return BodyState(name, status, None if status is LOST else pose, 1.0, None if status is LOST else 1.0,
                     0.3, 4, "ok" if status is OK else "not seen")


def _draw(pipeline, camera, states):
    image = np.full((camera.image_size[1], camera.image_size[0], 3), 90, np.uint8)
    return pipeline.draw_states(0, 1.0, image, states)


def _near(image, uv, colour, radius=2, tol=40):
    u, v = np.round(uv).astype(int)
    patch = image[v - radius:v + radius + 1, u - radius:u + radius + 1].reshape(-1, 3).astype(int)
    return int(np.sum(np.abs(patch - np.array(colour)).max(axis=1) < tol))


def test_bullseye_inset_shows_the_pointer_against_the_path(demo):
    _scene, camera, _base, camera_from_reference = demo
    pipeline = _pipeline(demo)
    path = pipeline.paths[0]
    assert path.target_name == "tumour" and pipeline.active_target_name == "tumour"
    basis = path_basis(path.entry_ct, path.target_ct)
    # The tip 30 mm short of the tumour along the path, 1.5 mm to the right (green), its shaft
    # 3 deg off the path towards "up" (yellow): extended over the 30 mm to go it reaches
    # 1.5 mm right, 30 tan 3 deg = 1.572 mm up.
    tip_ct = path.target_ct - 30.0 * basis.direction + 1.5 * basis.right
    a = math.radians(3.0)
    axis_ct = math.cos(a) * basis.direction + math.sin(a) * basis.up
    body = pipeline.tools["pointer"].body
    camera_from_pointer = _pointer_pose(pipeline, camera_from_reference, tip_ct, axis_ct, body)
    states = {"reference": _state("reference", OK, camera_from_reference),
              "pointer": _state("pointer", OK, camera_from_pointer)}
    result = _draw(pipeline, camera, states)
    readout = result.guidance
    g = readout.guidance
    assert (readout.tool, readout.target, readout.path) == ("pointer", "tumour", "needle")
    np.testing.assert_allclose(readout.tip_ct, tip_ct, atol=1e-9)
    assert g.depth_to_go_mm == pytest.approx(30.0, abs=1e-9) and g.lateral_mm == pytest.approx(1.5, abs=1e-9)
    assert g.angle_deg == pytest.approx(3.0, abs=1e-9)
    np.testing.assert_allclose(g.axis_offset_mm, [1.5, 30.0 * math.tan(a)], atol=1e-9)
    # Readouts: sqrt(30^2 + 1.5^2) = 30.037; the second line is yellow (the 3 deg angle).
    assert readout.lines == (("tip 30.0 mm to tumour", (230, 230, 230)),
                             ("1.5 mm off path, 3.0 deg", YELLOW),
                             ("30.0 mm to go along path", (230, 230, 230)))
    assert pipeline._target_detail(0, None, readout) == "30.0 mm from tip along path"

    inset = readout.inset
    x0, y0, x1, y1 = inset.box
    h, w = result.image_bgr.shape[:2]
    assert (x0 < w / 3 or x1 > 2 * w / 3) and (y0 < h / 3 or y1 > 2 * h / 3)      # in a corner
    target_uv = result.targets_uv_px[0]
    tip_uv = camera.project(transform_points(camera_from_pointer, TIP_BODY)[None])[0]
    for uv in (target_uv, tip_uv):                                                 # covers neither
        assert not (x0 <= uv[0] <= x1 and y0 <= uv[1] <= y1)
    image = result.image_bgr
    # The tip's dot 1.5 mm right of the centre, in green; the axis ring in yellow, up and right.
    dot = inset.to_px(g.offset_mm)
    assert inset.to_px([1.0, 0.0])[0] - inset.centre_px[0] == pytest.approx(inset.px_per_mm)
    assert _near(image, dot, GREEN) >= 20
    ring_centre = inset.to_px(g.axis_offset_mm)
    dot_r = max(3.0, 0.045 * (inset.box[3] - inset.box[1] - 0))   # upper bound; the ring lies within
    ring = [ring_centre + r * np.array([math.cos(t), math.sin(t)])
            for t in np.linspace(0, 2 * math.pi, 24, endpoint=False) for r in np.linspace(2.0, dot_r, 6)]
    yellow_hits = sum(_near(image, p, YELLOW, radius=0, tol=45) for p in ring)
    assert yellow_hits >= 10
    assert _near(image, dot, YELLOW, radius=1, tol=45) == 0                    # the dot itself is not yellow
    # Without the inset (guidance toggled off) those pixels are the plain background.
    pipeline.toggles.guidance = False
    hidden = _draw(pipeline, camera, states)
    assert hidden.guidance.inset is None
    assert _near(hidden.image_bgr, dot, GREEN) == 0


def test_bullseye_dot_colour_follows_the_lateral_offset(demo):
    _scene, camera, _base, camera_from_reference = demo
    pipeline = _pipeline(demo)
    path = pipeline.paths[0]
    basis = path_basis(path.entry_ct, path.target_ct)
    for lateral, colour, text in ((3.5, YELLOW, "3.5 mm off path, 0.0 deg"), (7.0, RED, "7.0 mm off path, 0.0 deg")):
        tip_ct = path.target_ct - 20.0 * basis.direction - lateral * basis.up      # below the path
        pose = _pointer_pose(pipeline, camera_from_reference, tip_ct, basis.direction, pipeline.tools["pointer"].body)
        result = _draw(pipeline, camera, {"reference": _state("reference", OK, camera_from_reference),
                                          "pointer": _state("pointer", OK, pose)})
        readout = result.guidance
        assert readout.lines[1] == (text, colour)
        dot = readout.inset.to_px([0.0, -lateral])
        assert dot[1] > readout.inset.centre_px[1]                                    # "down" is +v
        assert _near(result.image_bgr, dot, colour) >= 20


def test_no_guidance_from_a_stale_or_lost_pose(demo):
    _scene, camera, _base, camera_from_reference = demo
    pipeline = _pipeline(demo)
    path = pipeline.paths[0]
    tip_ct = path.target_ct - 25.0 * path_basis(path.entry_ct, path.target_ct).direction
    pose = _pointer_pose(pipeline, camera_from_reference, tip_ct, path.target_ct - path.entry_ct,
                         pipeline.tools["pointer"].body)
    cases = (
        ((OK, STALE), "pointer STALE: no guidance", (0, 200, 255)),
        ((OK, LOST), "pointer LOST: no guidance", (60, 60, 255)),
        ((STALE, OK), "reference STALE: no guidance", (0, 200, 255)),
        ((LOST, OK), "reference LOST: no guidance", (60, 60, 255)),
    )
    for (reference_status, pointer_status), text, colour in cases:
        states = {"reference": _state("reference", reference_status, camera_from_reference),
                  "pointer": _state("pointer", pointer_status, pose)}
        result = _draw(pipeline, camera, states)
        readout = result.guidance
        assert readout.guidance is None and readout.tip_ct is None
        assert readout.lines == ((text, colour),)
        assert readout.inset is not None                # the inset says so instead
        x0, y0, x1, y1 = readout.inset.box
        panel = result.image_bgr[y0:y1, x0:x1].reshape(-1, 3).astype(int)
        assert not np.any(np.abs(panel - np.array(GREEN)).max(axis=1) < 40)   # no dot
        if reference_status is OK:                       # the target shows its depth from the camera
            distance = np.linalg.norm(transform_points(camera_from_reference @ pipeline.reference_from_ct,
                                                       pipeline.targets[0].position_ct)[0])
            detail = pipeline._target_detail(0, transform_points(
                camera_from_reference @ pipeline.reference_from_ct, pipeline.targets[0].position_ct)[0], readout)
            assert detail == f"{distance:.0f} mm from camera"


def test_no_inset_without_a_tool_or_with_the_hud_off(demo):
    _scene, camera, base, camera_from_reference = demo
    result = _draw(base, camera, {"reference": _state("reference", OK, camera_from_reference)})
    assert result.guidance is None
    pipeline = _pipeline(demo)
    pipeline.toggles.hud = False
    states = {"reference": _state("reference", OK, camera_from_reference),
              "pointer": _state("pointer", OK, _pointer_pose(pipeline, camera_from_reference,
                                                             pipeline.paths[0].entry_ct, [0, 1.0, 0],
                                                             pipeline.tools["pointer"].body))}
    result = _draw(pipeline, camera, states)
    assert result.guidance.guidance is not None and result.guidance.inset is None


def test_target_without_a_path_gets_distance_only(demo):
    _scene, camera, base, camera_from_reference = demo
    tool = ToolOverlay(_pointer_body(), TIP_BODY.reshape(1, 3))
    pipeline = OverlayPipeline(camera, base.reference, base.reference_from_ct, targets=base.targets, paths=(),
                               tools={"pointer": tool})
    target_ct = pipeline.targets[0].position_ct
    tip_ct = target_ct + np.array([3.0, 4.0, 12.0])          # 13 mm away (3-4-12 triangle)
    pose = _pointer_pose(pipeline, camera_from_reference, tip_ct, [0.0, 1.0, 0.0], tool.body)
    result = _draw(pipeline, camera, {"reference": _state("reference", OK, camera_from_reference),
                                      "pointer": _state("pointer", OK, pose)})
    assert result.guidance.guidance is None and result.guidance.path is None
    assert result.guidance.lines == (("tip 13.0 mm to tumour", (230, 230, 230)),
                                     ("no planned path to tumour", (0, 200, 255)))
    assert pipeline._target_detail(0, None, result.guidance) == "13.0 mm from tip"


def test_guidance_settings_are_used(demo):
    """A stricter tolerance turns the same 1.5 mm offset yellow."""
    _scene, camera, base, camera_from_reference = demo
    tool = ToolOverlay(_pointer_body(), TIP_BODY.reshape(1, 3))
    pipeline = OverlayPipeline(camera, base.reference, base.reference_from_ct, targets=base.targets,
                               paths=base.paths, tools={"pointer": tool},
                               guidance_settings=GuidanceSettings(lateral_ok_mm=1.0))
    path = pipeline.paths[0]
    basis = path_basis(path.entry_ct, path.target_ct)
    pose = _pointer_pose(pipeline, camera_from_reference, path.target_ct - 30 * basis.direction + 1.5 * basis.right,
                         basis.direction, tool.body)
    result = _draw(pipeline, camera, {"reference": _state("reference", OK, camera_from_reference),
                                      "pointer": _state("pointer", OK, pose)})
    assert result.guidance.lines[1] == ("1.5 mm off path, 0.0 deg", YELLOW)
    assert _near(result.image_bgr, result.guidance.inset.to_px([1.5, 0.0]), YELLOW) >= 20


def test_tool_without_a_shaft_gets_no_angle(demo):
    """A tool whose tip is at its markers' centre (tip offset 0) has no axis: no angle, no crash."""
    _scene, camera, base, camera_from_reference = demo
    body = _pointer_body()
    tool = ToolOverlay(body, body.centre_body.reshape(1, 3))
    pipeline = OverlayPipeline(camera, base.reference, base.reference_from_ct, targets=base.targets,
                               paths=base.paths, tools={"pointer": tool})
    path = pipeline.paths[0]
    basis = path_basis(path.entry_ct, path.target_ct)
    tip_ct = path.target_ct - 30 * basis.direction + 1.5 * basis.right
    ct_from_pointer = make_transform(np.eye(3), tip_ct - body.centre_body)
    pose = camera_from_reference @ pipeline.reference_from_ct @ ct_from_pointer
    result = _draw(pipeline, camera, {"reference": _state("reference", OK, camera_from_reference),
                                      "pointer": _state("pointer", OK, pose)})
    assert result.guidance.lines[1] == ("1.5 mm off path", GREEN)
    assert math.isnan(result.guidance.guidance.angle_deg) and result.guidance.guidance.axis_offset_mm is None
