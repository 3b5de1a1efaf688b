"""Writes the registration example in this folder (run once, by hand; docs/registration.md).

    .venv/bin/python assets/examples/registration/make_example.py

Everything is SYNTHETIC: the patient is ar_guide's demo phantom (ar_guide.synth.phantom, seed 7,
the phantom of ``ar-guide demo``), whose true reference_from_ct is known.  Written here:

- ``ct_fiducials.mrk.json``: six skin fiducials as Slicer would save them (RAS, 0.01 mm);
- ``patient_fiducials.csv``: the same fiducials "digitised" on the patient (reference frame):
  the truth plus 0.5 mm RMS localisation error, and F4 digitised 4 mm off (the outlier to drop);
- ``surface_points.csv``: 300 points "traced" over the liver (reference frame, 0.3 mm noise);
- ``meshes/*.ply``: the phantom's liver, tumour and vessel (CT, LPS, mm);
- ``scene.yaml``: the phantom's reference board, anatomy, tumour, needle path and an independent
  check landmark on the skin, with ``registration: {file: registration.yaml}``.

The registration files (``registration_points.yaml``, ``registration.yaml``) are written by the
commands of docs/registration.md, not by this script.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ar_guide.geometry.transforms import transform_points
from ar_guide.registration.surface import sample_surface
from ar_guide.synth.phantom import make_phantom
from ar_guide.synth.scenefile import ANATOMY, write_mesh_ply

HERE = Path(__file__).resolve().parent
SEED = 7
#: Directions (CT, LPS) from a point inside the torso to the skin fiducials: anterior (-y), spread
#: to the patient's right (-x) and left (+x), head (+z) and feet (-z) around the liver.
FIDUCIAL_DIRECTIONS = np.array([
    [-0.8, -1.0, -0.5],
    [0.0, -1.0, -0.6],
    [0.7, -1.0, -0.4],
    [-0.9, -1.0, 0.6],
    [0.0, -1.0, 0.7],
    [0.6, -1.0, 0.5],
])
CHECK_DIRECTION = np.array([-1.0, -0.4, 0.1])
INSIDE_CT = np.array([-30.0, 0.0, 130.0])
FLE_MM = 0.5
OUTLIER = ("F4", 4.0)


def _num(v: float) -> str:
    return repr(round(float(v), 2))


def main() -> None:
    phantom = make_phantom(SEED)
    rng = np.random.default_rng(2026)
    skin = phantom.torso_shape.exit_points(INSIDE_CT, FIDUCIAL_DIRECTIONS)
    fiducials_ct = np.round(skin, 2)
    names = [f"F{i + 1}" for i in range(len(fiducials_ct))]

    # CT fiducials as Slicer saves a point list, in RAS (x and y of LPS negated).
    ras = fiducials_ct * np.array([-1.0, -1.0, 1.0])
    markups = {"@schema": "https://raw.githubusercontent.com/slicer/slicer/master/Modules/Loadable/Markups/"
                          "Resources/Schema/markups-schema-v1.0.0.json#",
               "markups": [{"type": "Fiducial", "coordinateSystem": "RAS", "coordinateUnits": "mm",
                            "name": "F", "controlPoints": [
                                {"id": str(i + 1), "label": n, "position": [round(float(v), 2) + 0.0 for v in p],
                                 "positionStatus": "defined"} for i, (n, p) in enumerate(zip(names, ras))]}]}
    (HERE / "ct_fiducials.mrk.json").write_text(json.dumps(markups, indent=2) + "\n")

    patient = transform_points(phantom.reference_from_ct, fiducials_ct)
    patient += rng.normal(0.0, FLE_MM / np.sqrt(3.0), patient.shape)
    d = rng.normal(size=3)
    patient[names.index(OUTLIER[0])] += OUTLIER[1] * d / np.linalg.norm(d)
    lines = ["name,x,y,z"] + [f"{n},{_num(p[0])},{_num(p[1])},{_num(p[2])}" for n, p in zip(names, patient)]
    (HERE / "patient_fiducials.csv").write_text("\n".join(lines) + "\n")

    points, _ = sample_surface(phantom.liver.vertices, phantom.liver.faces, 300, rng)
    traced = transform_points(phantom.reference_from_ct, points) + rng.normal(0.0, 0.3, points.shape)
    lines = ["x,y,z"] + [f"{_num(p[0])},{_num(p[1])},{_num(p[2])}" for p in traced]
    (HERE / "surface_points.csv").write_text("\n".join(lines) + "\n")

    (HERE / "meshes").mkdir(exist_ok=True)
    for name, attr, _c, _o, _r in ANATOMY:
        write_mesh_ply(HERE / "meshes" / f"{name}.ply", getattr(phantom, attr))

    check = phantom.torso_shape.exit_points(INSIDE_CT, CHECK_DIRECTION[None])[0]
    vec = lambda p: "[" + ", ".join(_num(v) for v in p) + "]"  # noqa: E731
    anatomy = "\n".join(
        f"  - {{name: {name}, mesh: meshes/{name}.ply, color: [{c[0]}, {c[1]}, {c[2]}], opacity: {o}, role: {r}}}"
        for name, _a, c, o, r in ANATOMY)
    scene = f"""\
# SYNTHETIC example (docs/registration.md): ar_guide's demo phantom (seed {SEED}).
version: 1
units: mm
description: Registration example on the synthetic demo phantom; fiducials and surface points are simulated.
reference:
  type: charuco
  squares: [7, 5]
  square_mm: 30.0
  marker_mm: 22.0
  dictionary: DICT_5X5_100
# Written by: ar-guide register points ... then ar-guide register surface ... (docs/registration.md)
registration: {{file: registration.yaml}}
anatomy:
{anatomy}
targets:
  - {{name: tumour, position: {vec(phantom.tumour_centre_ct)}, radius_mm: {phantom.tumour_radius_mm}}}
  # A skin landmark NOT used as a fiducial: touch it with the pointer to check the registration.
  - {{name: check_landmark, position: {vec(check)}, radius_mm: 2.0, color: [0.2, 1.0, 0.4]}}
paths:
  - {{name: needle, entry: {vec(phantom.entry_ct)}, target: tumour, diameter_mm: 1.2}}
"""
    (HERE / "scene.yaml").write_text(scene)
    print(f"wrote the example into {HERE}")


if __name__ == "__main__":
    main()
