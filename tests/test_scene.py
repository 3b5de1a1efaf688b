"""Scene files: the version-1 format, every validation message, Slicer markups, the example."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from ar_guide.errors import InputError
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from ar_guide.scene import ROLE_COLORS_RGB, load_anatomy_meshes, load_scene, read_slicer_markups

PROJECT = Path(__file__).resolve().parents[1]
EXAMPLE = PROJECT / "assets" / "examples" / "multipattern" / "scene.yaml"
CUBE = PROJECT / "tests" / "data" / "meshes" / "cube_ascii_42.vtk"

# The example of the format (docs/scene-format.md), as the synthetic demo writes it.
SCHEMA_EXAMPLE = """\
version: 1
units: mm
reference:
  type: charuco
  squares: [7, 5]
  square_mm: 25
  marker_mm: 18
  dictionary: DICT_5X5_100
registration:
  reference_from_ct: [[1,0,0,0],[0,1,0,0],[0,0,1,0],[0,0,0,1]]
  method: synthetic ground truth
  fre_mm: 0.0
  predicted_tre_mm: {tumour: 0.0}
  date: 2026-11-27
anatomy:
  - name: liver
    mesh: meshes/liver.ply
    color: [0.85, 0.45, 0.35]
    opacity: 0.45
    role: organ
    scale: 1.0
targets:
  - name: tumour
    position: [12.0, -30.5, 88.0]
    radius_mm: 8
    color: [1.0, 0.9, 0.1]
paths:
  - name: needle
    entry: [40.0, -95.0, 60.0]
    target: tumour
    diameter_mm: 1.2
tools: []
markups: []
"""


@pytest.fixture
def scene_dir(tmp_path) -> Path:
    (tmp_path / "meshes").mkdir()
    (tmp_path / "meshes" / "liver.ply").write_bytes(b"")  # existence is all load_scene checks
    return tmp_path


def _base() -> dict:
    return yaml.safe_load(SCHEMA_EXAMPLE)


def _write(folder: Path, data, name="scene.yaml") -> Path:
    path = folder / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return path


def test_schema_example_loads(scene_dir):
    scene = load_scene(_write(scene_dir, SCHEMA_EXAMPLE))
    assert scene.version == 1
    assert scene.reference == {"type": "charuco", "squares": [7, 5], "square_mm": 25,
                               "marker_mm": 18, "dictionary": "DICT_5X5_100"}
    assert scene.base_dir == scene_dir.resolve()
    reg = scene.registration
    np.testing.assert_array_equal(reg.reference_from_ct, np.eye(4))
    assert reg.method == "synthetic ground truth" and reg.fre_mm == 0.0
    assert reg.predicted_tre_mm == {"tumour": 0.0} and reg.date == "2026-11-27"
    (liver,) = scene.anatomy
    assert liver.name == "liver" and liver.mesh_path == (scene_dir / "meshes" / "liver.ply").resolve()
    assert liver.color_rgb == (0.85, 0.45, 0.35) and liver.opacity == 0.45
    assert liver.role == "organ" and liver.scale == 1.0
    (tumour,) = scene.targets
    np.testing.assert_array_equal(tumour.position_ct, [12.0, -30.5, 88.0])
    assert tumour.radius_mm == 8.0 and tumour.color_rgb == (1.0, 0.9, 0.1)
    (needle,) = scene.paths
    np.testing.assert_array_equal(needle.entry_ct, [40.0, -95.0, 60.0])
    np.testing.assert_array_equal(needle.target_ct, tumour.position_ct)
    assert needle.target_name == "tumour" and needle.diameter_mm == 1.2
    # sqrt(28^2 + 64.5^2 + 28^2) = 75.72 mm
    assert needle.length_mm == pytest.approx(np.sqrt(28 ** 2 + 64.5 ** 2 + 28 ** 2), abs=1e-12)
    assert scene.tools == () and scene.calibration_path is None


def test_defaults_hex_colour_point_target_and_tools(scene_dir):
    data = _base()
    del data["anatomy"][0]["color"], data["anatomy"][0]["opacity"], data["anatomy"][0]["scale"]
    data["anatomy"][0]["role"] = "vessel"
    data["anatomy"].append({"name": "skin", "mesh": "meshes/liver.ply", "color": "#d97359"})
    del data["targets"][0]["radius_mm"], data["targets"][0]["color"]
    data["paths"] = [{"name": "p", "entry": [0, 0, 0], "target": [0, 0, 10]}]
    data["tools"] = [{"name": "pointer", "body": {"type": "sksurgery", "file": "pointer.txt",
                                                  "dictionary": "DICT_ARUCO_ORIGINAL"},
                      "tip_mm": [0, 0, -120.5]}]
    del data["registration"]["fre_mm"], data["registration"]["date"]
    scene = load_scene(_write(scene_dir, data))
    vessel, skin = scene.anatomy
    assert vessel.color_rgb == ROLE_COLORS_RGB["vessel"] and vessel.opacity == 0.5
    assert vessel.scale == 1.0
    # "#d97359" = (217, 115, 89) / 255
    assert skin.color_rgb == pytest.approx((217 / 255, 115 / 255, 89 / 255), abs=1e-15)
    assert skin.role == "other"
    assert scene.targets[0].radius_mm == 5.0 and scene.targets[0].color_rgb is None
    path = scene.paths[0]
    assert path.target_name is None and path.diameter_mm == 1.0
    np.testing.assert_array_equal(path.target_ct, [0, 0, 10])
    (tool,) = scene.tools
    assert tool.body["file"] == "pointer.txt"
    np.testing.assert_array_equal(tool.tip_mm, [0, 0, -120.5])
    assert scene.registration.fre_mm is None and scene.registration.date is None


def test_rounded_rotation_is_accepted_and_made_exact(scene_dir):
    rng = np.random.default_rng(4)
    m = make_transform(rotation_from_rotvec(rng.normal(size=3)), rng.normal(size=3) * 100)
    data = _base()
    data["registration"]["reference_from_ct"] = np.round(m, 6).tolist()
    reg = load_scene(_write(scene_dir, data)).registration.reference_from_ct
    r = reg[:3, :3]
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-14)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-14)
    np.testing.assert_allclose(reg, m, atol=2e-6)


def _error(scene_dir, data) -> str:
    path = _write(scene_dir, data)
    with pytest.raises(InputError) as info:
        load_scene(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message[len(str(path)) + 2:]


def _set(data, dotted, value):
    keys = dotted.split(".")
    target = data
    for k in keys[:-1]:
        target = target[int(k)] if k.isdigit() else target[k]
    last = keys[-1]
    if value is _DELETE:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value


_DELETE = object()


@pytest.mark.parametrize("dotted, value, expected", [
    ("anatomy.0.opacity", 1.5, "'anatomy[0].opacity': expected a number in [0, 1], got 1.5"),
    ("anatomy.0.opactiy", 0.5, "'anatomy[0].opactiy': unknown key; did you mean 'opacity'? "
                               "(expected one of: name, mesh, color, opacity, role, scale)"),
    ("version", 2, "'version': unsupported scene version 2; this ar_guide reads version 1"),
    ("version", "1", "'version': expected the number 1, got '1'"),
    ("version", _DELETE, "'version': missing"),
    ("units", "m", "'units': only mm is supported, got 'm'"),
    ("reference", _DELETE, "'reference': missing"),
    ("registration", _DELETE, "'registration': missing"),
    ("reference", {"squares": [7, 5]}, "'reference': expected 'type' (charuco, aruco_grid, "
                                       "marker_map, sksurgery) or 'file'"),
    ("registration.reference_from_ct", [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
     "'registration.reference_from_ct': expected a 4x4 matrix as 4 rows of 4 numbers"),
    ("registration.reference_from_ct", [[2, 0, 0, 0], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]],
     "'registration.reference_from_ct': not a rigid transform: rotation part is not orthonormal "
     "(scaling or shear)"),
    ("registration.reference_from_ct", [[-1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
     "'registration.reference_from_ct': not a rigid transform: rotation part is a reflection"),
    ("registration.reference_from_ct", [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]],
     "'registration.reference_from_ct': not a rigid transform: last row must be [0, 0, 0, 1]"),
    ("registration.fre_mm", -1, "'registration.fre_mm': expected a number >= 0, got -1"),
    ("registration.predicted_tre_mm", {"tumor": 1.0},
     "'registration.predicted_tre_mm.tumor': no target of this name (targets: tumour)"),
    ("registration.methd", "x", "'registration.methd': unknown key; did you mean 'method'?"),
    ("anatomy.0.mesh", "meshes/missing.stl", "'anatomy[0].mesh': mesh file not found: "),
    ("anatomy.0.mesh", "meshes/liver.off", "'anatomy[0].mesh': unsupported mesh type '.off'"),
    ("anatomy.0.color", [1.0, 0.5, 2.0], "'anatomy[0].color': expected RGB numbers in [0, 1] "
                                         "(or \"#rrggbb\"), got [1.0, 0.5, 2.0]"),
    ("anatomy.0.color", [255, 128, 0], "'anatomy[0].color': expected RGB numbers in [0, 1]"),
    ("anatomy.0.color", "#d9735", "'anatomy[0].color': expected a colour [r, g, b] with numbers "
                                  "in [0, 1] or \"#rrggbb\", got '#d9735'"),
    ("anatomy.0.role", "bone", "'anatomy[0].role': expected one of organ, target, vessel, risk, "
                               "skin, other, got 'bone'"),
    ("anatomy.0.scale", 0, "'anatomy[0].scale': expected a number > 0, got 0"),
    ("anatomy.0.name", "", "'anatomy[0].name': expected non-empty text, got ''"),
    ("targets.0.position", [1, 2], "'targets[0].position': expected a point [x, y, z] of 3 "
                                   "numbers (mm), got [1, 2]"),
    ("targets.0.position", [1, 2, ".nan"], "'targets[0].position': expected a point [x, y, z]"),
    ("targets.0.radius_mm", 0, "'targets[0].radius_mm': expected a number > 0, got 0"),
    ("paths.0.target", "tumor", "'paths[0].target': no target named 'tumor' (targets: tumour)"),
    ("paths.0.entry", [12.0, -30.5, 88.0], "'paths[0]': entry and target are 0 mm apart; a path "
                                           "needs at least 1 mm"),
    ("paths.0.diameter_mm", -1, "'paths[0].diameter_mm': expected a number > 0, got -1"),
    ("paths.0.target", {"x": 1}, "'paths[0].target': expected a target's name or a point"),
    ("tools", [{"name": "p", "body": {"type": "charuco"}}], "'tools[0].tip_mm': missing"),
    ("tools", {"name": "p"}, "'tools': expected a list ('- ...' entries)"),
    ("extra", 1, "'extra': unknown key (expected one of: version, units, description, "
                 "calibration, reference, registration, anatomy, targets, paths, tools, markups)"),
    ("calibration", "cam.yaml", "'calibration': calibration file not found: "),
])
def test_every_problem_names_file_and_key(scene_dir, dotted, value, expected):
    data = _base()
    if value == [1, 2, ".nan"]:
        value = [1, 2, float("nan")]
    _set(data, dotted, value if value is _DELETE else copy.deepcopy(value))
    assert expected in _error(scene_dir, data)


def test_duplicate_names(scene_dir):
    data = _base()
    data["anatomy"].append(dict(data["anatomy"][0]))
    assert "'anatomy[1].name': duplicate anatomy name 'liver' (also anatomy[0].name)" in \
        _error(scene_dir, data)
    data = _base()
    data["targets"].append({"name": "tumour", "position": [0, 0, 0]})
    assert "'targets[1].name': duplicate target name 'tumour'" in _error(scene_dir, data)
    data = _base()
    data["paths"].append(dict(data["paths"][0]))
    assert "'paths[1].name': duplicate path name 'needle'" in _error(scene_dir, data)


def test_yaml_problems(scene_dir):
    assert _error(scene_dir, "version: 1\nunits: [mm\n").startswith(
        "not valid YAML: expected ',' or ']', but got '<stream end>' at line 3, column 1")
    assert _error(scene_dir, "- just\n- a list\n").startswith(
        "expected a mapping ('key: value' lines) for the file")
    assert _error(scene_dir, "") == "the scene file is empty"
    # YAML keeps the last of two equal keys without a word; the scene loader does not.
    text = SCHEMA_EXAMPLE.replace("    opacity: 0.45\n", "    opacity: 0.45\n    opacity: 0.9\n")
    assert _error(scene_dir, text) == ("key 'opacity' appears twice (line 19 and line 20); YAML "
                                       "would keep only the last")
    # An unquoted hex colour is a YAML comment: say so.
    text = SCHEMA_EXAMPLE.replace("color: [0.85, 0.45, 0.35]", "color: #d97359")
    assert "(a # starts a YAML comment: quote it, \"#d97359\")" in _error(scene_dir, text)


def test_missing_scene_file(tmp_path):
    with pytest.raises(InputError, match="nothere.yaml: scene file not found"):
        load_scene(tmp_path / "nothere.yaml")


def test_load_anatomy_meshes_names_the_mesh(scene_dir):
    data = _base()
    scene = load_scene(_write(scene_dir, data))
    with pytest.raises(InputError, match=r"liver.ply: mesh file is empty"):
        load_anatomy_meshes(scene)
    data["anatomy"][0]["mesh"] = str(CUBE)  # absolute paths work too
    data["anatomy"][0]["scale"] = 2.0
    scene = load_scene(_write(scene_dir, data))
    (mesh,) = load_anatomy_meshes(scene)
    assert mesh.vertices.shape == (8, 3) and mesh.faces.shape == (12, 3)
    np.testing.assert_array_equal(mesh.vertices[0], [2.0, 4.0, 6.0])


# ------------------------------------------------------------------------------------------
# Slicer markups

def _markups(system="LPS", points=None, kind="Fiducial", name="F"):
    if points is None:
        points = [{"label": "entry", "position": [10.0, -20.0, 30.0], "positionStatus": "defined"},
                  {"label": "", "position": [1.0, 2.0, 3.0]},
                  {"label": "unplaced", "position": [0.0, 0.0, 0.0], "positionStatus": "undefined"}]
    return {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/"
                       "Markups/Resources/Schema/markups-schema-v1.0.3.json#",
            "markups": [{"type": kind, "coordinateSystem": system, "coordinateUnits": "mm",
                         "name": name, "controlPoints": points}]}


def test_markups_become_targets_ras_to_lps(scene_dir):
    (scene_dir / "lps.mrk.json").write_text(json.dumps(_markups("LPS")))
    (scene_dir / "ras.mrk.json").write_text(json.dumps(_markups("RAS", name="R")))
    assert [n for n, _ in read_slicer_markups(scene_dir / "lps.mrk.json")] == ["entry", "F-2"]
    data = _base()
    data["markups"] = ["lps.mrk.json"]
    scene = load_scene(_write(scene_dir, data))
    assert [t.name for t in scene.targets] == ["tumour", "entry", "F-2"]
    np.testing.assert_array_equal(scene.target("entry").position_ct, [10.0, -20.0, 30.0])
    assert scene.target("entry").radius_mm == 5.0
    # RAS (x right, y anterior) to LPS (x left, y posterior): negate x and y.
    data["markups"] = [{"file": "ras.mrk.json", "radius_mm": 3, "color": "#00ff00"}]
    data["paths"][0]["target"] = "entry"
    scene = load_scene(_write(scene_dir, data))
    np.testing.assert_array_equal(scene.target("entry").position_ct, [-10.0, 20.0, 30.0])
    np.testing.assert_array_equal(scene.target("R-2").position_ct, [-1.0, -2.0, 3.0])
    assert scene.target("entry").radius_mm == 3.0
    assert scene.target("entry").color_rgb == (0.0, 1.0, 0.0)
    np.testing.assert_array_equal(scene.paths[0].target_ct, [-10.0, 20.0, 30.0])


@pytest.mark.parametrize("content, expected", [
    (_markups(system=None), "'markups[0].coordinateSystem': expected 'LPS' or 'RAS', got nothing"),
    (_markups(kind="Line"), "'markups[0].type': only point lists (type 'Fiducial') become targets"),
    (_markups(points=[{"label": "a", "position": [1, 2]}]),
     "'markups[0].controlPoints[0].position': expected [x, y, z] (mm), got [1, 2]"),
    (_markups(points=[{"label": "a", "position": [1, 2, 3]}, {"label": "a", "position": [1, 2, 4]}]),
     "two control points are labelled 'a'"),
    ({"nothing": []}, "'markups': not a Slicer markups file: expected a 'markups' list"),
    ("{not json", "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
])
def test_markup_errors_name_the_markups_file(scene_dir, content, expected):
    path = scene_dir / "m.mrk.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    data = _base()
    data["markups"] = ["m.mrk.json"]
    scene_path = _write(scene_dir, data)
    with pytest.raises(InputError) as info:
        load_scene(scene_path)
    assert str(info.value).startswith(f"{path}: ")
    assert expected in str(info.value)


def test_markup_name_clash_and_missing_file(scene_dir):
    (scene_dir / "m.mrk.json").write_text(json.dumps(_markups(points=[
        {"label": "tumour", "position": [1, 2, 3]}])))
    data = _base()
    data["markups"] = ["m.mrk.json"]
    assert "'markups[0]': control point 'tumour' has the name of a target already defined" in \
        _error(scene_dir, data)
    data["markups"] = ["gone.mrk.json"]
    assert "'markups[0].file': markups file not found: " in _error(scene_dir, data)


# ------------------------------------------------------------------------------------------
# The worked example (docs/scene-format.md)

def test_example_scene_loads():
    scene = load_scene(EXAMPLE)
    assert scene.reference["type"] == "marker_map"
    assert scene.reference["dictionary"] == "DICT_ARUCO_ORIGINAL"
    assert len(scene.reference["markers"]) == 12
    np.testing.assert_array_equal(scene.registration.reference_from_ct, np.eye(4))
    assert [t.name for t in scene.targets] == ["tumour", "corner_860"]
    np.testing.assert_array_equal(scene.target("tumour").position_ct, [24.75, 33.5, -50.0])
    (mesh,) = load_anatomy_meshes(scene)
    # The sphere of radius 8 mm is centred on the target.
    centre = scene.target("tumour").position_ct
    np.testing.assert_allclose(np.linalg.norm(mesh.vertices - centre, axis=1), 8.0, atol=1e-3)


def test_example_marker_map_is_reference_txt(shared_data):
    # The inline marker map must be the recording's reference.txt, corner for corner (rows:
    # id, centre xyz, then 4 corners xyz).
    rows = np.loadtxt(shared_data / "video" / "sksurgery_aruco" / "reference.txt")
    scene = load_scene(EXAMPLE)
    inline = {m["id"]: np.array(m["corners"], dtype=float) for m in scene.reference["markers"]}
    assert sorted(inline) == sorted(int(r[0]) for r in rows)
    for r in rows:
        np.testing.assert_array_equal(inline[int(r[0])], r[4:].reshape(4, 3))
        np.testing.assert_allclose(inline[int(r[0])].mean(axis=0), r[1:4], atol=1e-12)


def test_example_reference_resolves_to_a_body():
    bodies = pytest.importorskip("ar_guide.tracking.bodies")
    scene = load_scene(EXAMPLE)
    body = bodies.body_from_config(scene.reference, scene.base_dir, name="reference",
                                   source=scene.path)
    assert body.dictionary == "DICT_ARUCO_ORIGINAL"
    assert sorted(body.markers_body) == sorted(m["id"] for m in scene.reference["markers"])
