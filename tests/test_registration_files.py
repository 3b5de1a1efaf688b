"""Registration and tool files: round trips, every check, and their use from a scene and the HUD."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from ar_guide.camera import CameraModel
from ar_guide.errors import InputError
from ar_guide.pipeline import RegistrationOverlay, TargetOverlay, registration_hud_text, target_label
from ar_guide.registration.files import (RegistrationRecord, ToolRecord, read_registration_file,
                                         read_tool_file, write_registration_file, write_tool_file)
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from registration_synth import TRUE_REFERENCE_FROM_CT

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_TXT = "video/sksurgery_aruco/reference.txt"


def _record(**changes) -> RegistrationRecord:
    fields = dict(
        reference_from_ct=TRUE_REFERENCE_FROM_CT,
        method="paired-point (Arun 1987)",
        fre_mm=0.4213456,
        fle_mm=0.35,
        fle_source="pivot RMS of pointer.yaml",
        residuals_mm={"F1": 0.3, "F2": 0.5, "F3": 0.25},
        leave_one_out_mm={"F1": 0.6, "F2": float("nan"), "F3": None},
        predicted_tre_mm={"tumour": 0.8, "needle:entry": 1.1, "needle:target": 0.8, "needle:max": 1.1},
        excluded=("F4",),
        inputs={"ct": "ct.csv", "patient": "patient.csv"},
        notes=("a note",),
        date="2026-11-27T12:00:00+00:00",
    )
    fields.update(changes)
    return RegistrationRecord(**fields)


# ----------------------------------------------------------------------------------------------
# Registration file


def test_registration_round_trip(tmp_path):
    path = write_registration_file(tmp_path / "sub" / "reg.yaml", _record())
    back = read_registration_file(path)
    # The matrix is written in full (shortest repr), so it reads back to machine precision.
    np.testing.assert_allclose(back.reference_from_ct, TRUE_REFERENCE_FROM_CT, rtol=0, atol=1e-12)
    assert back.method == "paired-point (Arun 1987)"
    assert back.fre_mm == 0.4213  # figures are kept to 0.1 um
    assert back.fle_mm == 0.35 and back.fle_source == "pivot RMS of pointer.yaml"
    assert back.residuals_mm == {"F1": 0.3, "F2": 0.5, "F3": 0.25}
    assert back.leave_one_out_mm == {"F1": 0.6, "F2": None, "F3": None}  # NaN is written as null
    assert back.predicted_tre_mm == {"tumour": 0.8, "needle:entry": 1.1, "needle:target": 0.8,
                                     "needle:max": 1.1}
    assert back.excluded == ("F4",) and back.notes == ("a note",)
    assert back.inputs == {"ct": "ct.csv", "patient": "patient.csv"}
    assert back.date == "2026-11-27T12:00:00+00:00"
    assert back.ar_guide_version == "0.1.0" and back.surface is None and back.path == path
    text = path.read_text()
    assert text.startswith("# ar_guide registration")
    assert "Fitzpatrick 2009" in text.splitlines()[2]
    assert not list(path.parent.glob("*.tmp"))  # written atomically


def test_registration_file_is_plain_yaml_with_the_agreed_keys(tmp_path):
    data = yaml.safe_load(write_registration_file(tmp_path / "reg.yaml", _record()).read_text())
    assert list(data) == ["reference_from_ct", "method", "fre_mm", "fle_mm", "fle_source", "residuals_mm",
                          "leave_one_out_mm", "predicted_tre_mm", "excluded", "inputs", "notes", "date",
                          "ar_guide_version"]
    assert np.array(data["reference_from_ct"]).shape == (4, 4)


def test_date_written_unquoted_reads_as_text(tmp_path):
    path = write_registration_file(tmp_path / "reg.yaml", _record())
    path.write_text(path.read_text().replace("'2026-11-27T12:00:00+00:00'", "2026-11-27T12:00:00+00:00"))
    assert read_registration_file(path).date == "2026-11-27T12:00:00+00:00"


def _edited(tmp_path, edit) -> Path:
    path = write_registration_file(tmp_path / "reg.yaml", _record(surface={"accepted": True, "rms_mm": 0.2}))
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.pop("reference_from_ct"), "'reference_from_ct': missing"),
    (lambda d: d.pop("method"), "'method': missing"),
    (lambda d: d.update(fre=1.0), "'fre': unknown key; did you mean 'fre_mm'?"),
    (lambda d: d.update(reference_from_ct=[[1, 0, 0], [0, 1, 0], [0, 0, 1]]),
     "'reference_from_ct': expected a 4x4 matrix as 4 rows of 4 numbers"),
    (lambda d: d["reference_from_ct"][0].__setitem__(0, 2.0), "'reference_from_ct': not a rigid transform"),
    (lambda d: d.update(fre_mm=-0.1), "'fre_mm': expected a number >= 0, got -0.1"),
    (lambda d: d["predicted_tre_mm"].update(tumour="small"), "'predicted_tre_mm.tumour': expected a number >= 0"),
    (lambda d: d.update(excluded="F4"), "'excluded': expected a list of fiducial names, got 'F4'"),
    (lambda d: d["surface"].update(accepted="yes"), "'surface.accepted': expected true or false, got 'yes'"),
    (lambda d: d["surface"].update(rmse=1), "'surface.rmse': unknown key"),
])
def test_registration_file_errors_name_file_and_key(tmp_path, edit, message):
    path = _edited(tmp_path, edit)
    with pytest.raises(InputError) as info:
        read_registration_file(path)
    assert str(info.value).startswith(f"{path}: ")
    assert message in str(info.value)


def test_registration_file_empty_missing_and_repeated_keys(tmp_path):
    with pytest.raises(InputError, match="registration file not found"):
        read_registration_file(tmp_path / "none.yaml")
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    with pytest.raises(InputError, match="the registration file is empty"):
        read_registration_file(tmp_path / "empty.yaml")
    path = write_registration_file(tmp_path / "reg.yaml", _record())
    path.write_text(path.read_text() + "fre_mm: 0.1\n")
    with pytest.raises(InputError, match="key 'fre_mm' appears twice"):
        read_registration_file(path)


def test_unwritable_registration_file_is_an_input_error(tmp_path):
    (tmp_path / "blocker").write_text("a file, not a folder")
    with pytest.raises(InputError, match="cannot write registration file"):
        write_registration_file(tmp_path / "blocker" / "reg.yaml", _record())


# ----------------------------------------------------------------------------------------------
# Tool file


def test_tool_round_trip_rebases_the_body_file(tmp_path):
    (tmp_path / "bodies").mkdir()
    (tmp_path / "bodies" / "pointer.txt").write_text("rows")
    record = ToolRecord("pointer", {"type": "sksurgery", "file": "pointer.txt", "dictionary": "DICT_ARUCO_ORIGINAL"},
                        np.array([-100.0, 0.0, 0.0]), pivot_rms_mm=0.2512345, pivot_method="algebraic", poses=120,
                        spread_deg=38.456, pivot_point_mm=np.array([1.0, 2.0, 3.0]), base_dir=tmp_path / "bodies")
    path = write_tool_file(tmp_path / "tools" / "pointer.yaml", record)
    data = yaml.safe_load(path.read_text())
    assert data["body"]["file"] == "../bodies/pointer.txt"
    back = read_tool_file(path)
    assert back.name == "pointer" and back.pivot_method == "algebraic" and back.poses == 120
    np.testing.assert_array_equal(back.tip_mm, [-100.0, 0.0, 0.0])
    np.testing.assert_array_equal(back.pivot_point_mm, [1.0, 2.0, 3.0])
    assert back.pivot_rms_mm == 0.2512 and back.spread_deg == 38.46
    assert (back.base_dir / back.body["file"]).resolve() == (tmp_path / "bodies" / "pointer.txt").resolve()
    assert back.date is not None and back.ar_guide_version == "0.1.0"


@pytest.mark.parametrize("text, message", [
    ("name: p\nbody: {type: charuco}\n", "'tip_mm': missing"),
    ("body: {type: charuco}\ntip_mm: [0, 0, 1]\n", "'name': missing"),
    ("name: p\nbody: charuco\ntip_mm: [0, 0, 1]\n", "'body': expected a body: a mapping with 'type'"),
    ("name: p\nbody: {type: charuco}\ntip_mm: [0, 1]\n", "'tip_mm': expected a point [x, y, z]"),
    ("name: p\nbody: {type: charuco}\ntip_mm: [0, 0, 1]\nposes: 2.5\n", "'poses': expected a whole number >= 0"),
    ("name: p\nbody: {type: charuco}\ntip_mm: [0, 0, 1]\ntip: 1\n", "'tip': unknown key; did you mean 'tip_mm'?"),
])
def test_tool_file_errors(tmp_path, text, message):
    path = tmp_path / "tool.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        read_tool_file(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_tool_file_without_tip_for_pivot_calibration(tmp_path):
    path = tmp_path / "tool.yaml"
    path.write_text("name: p\nbody: {file: board.yaml}\n")
    record = read_tool_file(path, require_tip=False)
    assert record.tip_mm is None and record.body == {"file": "board.yaml"}


# ----------------------------------------------------------------------------------------------
# Scenes that refer to the files


SCENE = """\
version: 1
units: mm
reference: {type: charuco, squares: [7, 5], square_mm: 30, marker_mm: 22, dictionary: DICT_5X5_100}
registration: {file: reg/registration.yaml}
targets:
  - {name: tumour, position: [-40.0, 10.0, 130.0]}
  - {name: cyst, position: [0.0, 0.0, 100.0]}
paths:
  - {name: needle, entry: [-70.0, -100.0, 120.0], target: tumour}
tools:
  - {file: tools/pointer.yaml}
"""


@pytest.fixture
def scene_folder(tmp_path):
    write_registration_file(tmp_path / "reg" / "registration.yaml", _record())
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "pointer.yaml").write_text(
        "name: pointer\nbody: {type: aruco_grid, markers: [2, 1], marker_mm: 20, separation_mm: 5, "
        "dictionary: DICT_4X4_50}\ntip_mm: [0, 0, -120]\npivot_rms_mm: 0.3\n")
    (tmp_path / "scene.yaml").write_text(SCENE)
    return tmp_path


def test_scene_reads_the_registration_file(scene_folder):
    scene = load_scene(scene_folder / "scene.yaml")
    reg = scene.registration
    np.testing.assert_allclose(reg.reference_from_ct, TRUE_REFERENCE_FROM_CT, atol=1e-12)
    assert reg.method == "paired-point (Arun 1987)" and reg.fre_mm == 0.4213
    assert reg.predicted_tre_mm["tumour"] == 0.8 and reg.predicted_tre_mm["needle:max"] == 1.1
    assert reg.date == "2026-11-27T12:00:00+00:00"
    assert reg.provenance["file"] == str((scene_folder / "reg" / "registration.yaml").resolve())
    assert reg.provenance["fle_mm"] == 0.35 and reg.provenance["excluded"] == ["F4"]
    assert reg.provenance["residuals_mm"]["F2"] == 0.5


def test_scene_registration_file_shorthand_and_errors(scene_folder):
    path = scene_folder / "scene.yaml"
    path.write_text(SCENE.replace("registration: {file: reg/registration.yaml}",
                                  "registration: reg/registration.yaml"))
    assert load_scene(path).registration.fre_mm == 0.4213
    path.write_text(SCENE.replace("reg/registration.yaml", "reg/gone.yaml"))
    with pytest.raises(InputError, match=r"scene.yaml: 'registration.file': registration file not found: .*gone.yaml"):
        load_scene(path)
    path.write_text(SCENE.replace("{file: reg/registration.yaml}", "{file: reg/registration.yaml, fre_mm: 1}"))
    with pytest.raises(InputError, match="'registration.fre_mm': a registration given as 'file' holds only 'file'"):
        load_scene(path)
    # The file's own mistakes name the file, not the scene.
    reg = scene_folder / "reg" / "registration.yaml"
    reg.write_text(reg.read_text().replace("fre_mm: 0.4213", "fre_mm: -1"))
    path.write_text(SCENE)
    with pytest.raises(InputError) as info:
        load_scene(path)
    assert str(info.value).startswith(f"{reg}: 'fre_mm': expected a number >= 0")


def test_register_can_read_a_scene_whose_registration_file_is_not_written_yet(scene_folder):
    path = scene_folder / "scene.yaml"
    path.write_text(SCENE.replace("reg/registration.yaml", "reg/next.yaml"))
    scene = load_scene(path, read_registration=False)
    assert scene.registration is None and [t.name for t in scene.targets] == ["tumour", "cyst"]


def test_inline_registration_accepts_path_predictions(scene_folder):
    path = scene_folder / "scene.yaml"
    inline = ("registration:\n  reference_from_ct: [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]\n"
              "  predicted_tre_mm: {tumour: 0.8, 'needle:max': 1.2}\n")
    path.write_text(SCENE.replace("registration: {file: reg/registration.yaml}\n", inline))
    assert load_scene(path).registration.predicted_tre_mm == {"tumour": 0.8, "needle:max": 1.2}
    path.write_text(SCENE.replace("registration: {file: reg/registration.yaml}\n",
                                  inline.replace("needle:max", "needle:middle")))
    with pytest.raises(InputError, match=r"'registration.predicted_tre_mm.needle:middle': no target of this name "
                                         r"\(targets: tumour, cyst\); a planned path's is '<path>:entry'"):
        load_scene(path)


def test_scene_tool_file(scene_folder):
    scene = load_scene(scene_folder / "scene.yaml")
    (tool,) = scene.tools
    assert tool.name == "pointer" and tool.pivot_rms_mm == 0.3
    np.testing.assert_array_equal(tool.tip_mm, [0, 0, -120])
    assert tool.source == (scene_folder / "tools" / "pointer.yaml").resolve()
    assert scene.tool_base_dir(tool) == (scene_folder / "tools").resolve()
    path = scene_folder / "scene.yaml"
    path.write_text(SCENE.replace("{file: tools/pointer.yaml}", "{file: tools/pointer.yaml, name: probe}"))
    assert load_scene(path).tools[0].name == "probe"
    path.write_text(SCENE.replace("{file: tools/pointer.yaml}", "{file: tools/pointer.yaml, tip_mm: [0, 0, 1]}"))
    with pytest.raises(InputError, match="'tools\\[0\\].tip_mm': a tool given as 'file' holds only 'file'"):
        load_scene(path)
    (scene_folder / "tools" / "pointer.yaml").write_text("name: pointer\nbody: {type: charuco}\n")
    path.write_text(SCENE)
    with pytest.raises(InputError, match=r"pointer.yaml: 'tip_mm': missing"):
        load_scene(path)


def test_tool_body_files_resolve_next_to_the_tool_file(shared_data, scene_folder):
    """A tool file's ``body: {file: ...}`` is relative to the tool file, not to the scene."""
    shutil.copy(shared_data / "video" / "sksurgery_aruco" / "pointer.txt", scene_folder / "tools" / "pointer.txt")
    (scene_folder / "tools" / "pointer.yaml").write_text(
        "name: pointer\nbody: {type: sksurgery, file: pointer.txt, dictionary: DICT_ARUCO_ORIGINAL}\n"
        "tip_mm: [-100, 0, 0]\n")
    scene = load_scene(scene_folder / "scene.yaml")
    camera = CameraModel(np.array([[560.0, 0, 320], [0, 560.0, 240], [0, 0, 1]]), np.zeros(5), (640, 480))
    pipeline = build_pipeline(scene, camera, render=False)
    assert len(pipeline.tools["pointer"].body.marker_ids) == 6
    (scene_folder / "tools" / "pointer.txt").unlink()
    with pytest.raises(InputError) as info:
        build_pipeline(scene, camera, render=False)
    assert str(info.value).startswith(str((scene_folder / "tools" / "pointer.yaml").resolve()))


# ----------------------------------------------------------------------------------------------
# The overlay: HUD line and target labels


def test_hud_text_and_target_labels():
    reg = RegistrationOverlay("surface ICP (open3d, point-to-plane, Tukey) after paired-point", 0.4213,
                              {"tumour": 0.8049})
    assert registration_hud_text(reg, "tumour") == \
        "registration: surface ICP  FRE 0.42 mm  predicted TRE at tumour 0.80 mm"
    assert registration_hud_text(reg, "cyst") == \
        "registration: surface ICP  FRE 0.42 mm  predicted TRE at cyst: not computed"
    assert registration_hud_text(RegistrationOverlay("made-up identity"), None) == "registration: made-up identity"
    target = TargetOverlay("tumour", np.zeros(3), 5.0, (0, 255, 255), 0.8049)
    assert target_label(target) == "tumour  TRE 0.8 mm"
    assert target_label(TargetOverlay("cyst", np.zeros(3), 5.0, (0, 255, 255))) == "cyst"


def test_pipeline_shows_the_active_targets_prediction(scene_folder):
    scene = load_scene(scene_folder / "scene.yaml")
    camera = CameraModel(np.array([[560.0, 0, 320], [0, 560.0, 240], [0, 0, 1]]), np.zeros(5), (640, 480))
    pipeline = build_pipeline(scene, camera, render=False)
    assert [(t.name, t.tre_mm) for t in pipeline.targets] == [("tumour", 0.8), ("cyst", None)]
    assert pipeline.active_target == 0 and pipeline.active_target_name == "tumour"
    # A blank frame: nothing tracked, but the registration's figures are on the HUD all the same.
    result = pipeline.process(0, 0.0, np.zeros((480, 640, 3), np.uint8))
    lines = [text for text, _ in pipeline._hud_lines(result.states, result.timings_ms, 0.004)]
    assert "registration: paired-point  FRE 0.42 mm  predicted TRE at tumour 0.80 mm" in lines
    pipeline.active_target = 1
    lines = [text for text, _ in pipeline._hud_lines(result.states, result.timings_ms, 0.004)]
    assert "registration: paired-point  FRE 0.42 mm  predicted TRE at cyst: not computed" in lines
