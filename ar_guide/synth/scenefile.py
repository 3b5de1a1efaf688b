"""Write the phantom's scene file (``scene.yaml``, version 1) and its meshes (PLY).

The format is the shared contract of DESIGN.md ("Scene"): reference body shorthand, exact
registration, anatomy meshes (paths relative to the scene file), targets and planned paths, all
in the CT frame (LPS, mm).  Numbers are written with ``repr`` (shortest exact form), so the
registration reads back rigid to machine precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ar_guide.synth.meshes import Mesh
from ar_guide.synth.phantom import (BOARD_DICTIONARY, BOARD_MARKER_MM, BOARD_SQUARE_MM, BOARD_SQUARES,
                                    NEEDLE_DIAMETER_MM, Phantom)

#: (name, phantom attribute, colour, opacity, role) of the anatomy written to the scene.
ANATOMY = (
    ("liver", "liver", (0.85, 0.45, 0.35), 0.45, "organ"),
    ("tumour", "tumour", (1.0, 0.85, 0.1), 0.9, "target"),
    ("vessel", "vessel", (0.25, 0.45, 0.9), 0.8, "vessel"),
)


def write_mesh_ply(path: Path, mesh: Mesh) -> None:
    """Binary PLY (vertices and faces only) through trimesh, without its vertex merging."""
    import trimesh

    trimesh.Trimesh(vertices=mesh.vertices, faces=mesh.faces, process=False).export(str(path), file_type="ply")


def _num(value: float) -> str:
    return repr(float(value))


def _vec(values) -> str:
    return "[" + ", ".join(_num(v) for v in np.asarray(values, dtype=np.float64).ravel()) + "]"


def write_scene(folder: Path, phantom: Phantom, note: str = "") -> Path:
    """Write ``folder/scene.yaml`` and ``folder/meshes/*.ply``; returns the scene path."""
    folder = Path(folder)
    (folder / "meshes").mkdir(parents=True, exist_ok=True)
    for name, attr, _c, _o, _r in ANATOMY:
        write_mesh_ply(folder / "meshes" / f"{name}.ply", getattr(phantom, attr))
    matrix = phantom.reference_from_ct
    rows = ", ".join(_vec(r) for r in matrix)
    lines = [
        "# Synthetic phantom written by ar_guide.synth" + (f" ({note})" if note else "") + ".",
        "# Positions in the CT frame (LPS, mm); the registration is the exact synthetic ground truth.",
        "version: 1",
        "units: mm",
        "reference:",
        "  type: charuco",
        f"  squares: [{BOARD_SQUARES[0]}, {BOARD_SQUARES[1]}]",
        f"  square_mm: {_num(BOARD_SQUARE_MM)}",
        f"  marker_mm: {_num(BOARD_MARKER_MM)}",
        f"  dictionary: {BOARD_DICTIONARY}",
        "registration:",
        f"  reference_from_ct: [{rows}]",
        "  method: synthetic ground truth",
        "  fre_mm: 0.0",
        "  predicted_tre_mm: {tumour: 0.0}",
        "anatomy:",
    ]
    for name, _attr, colour, opacity, role in ANATOMY:
        lines += [
            f"  - name: {name}",
            f"    mesh: meshes/{name}.ply",
            f"    color: {_vec(colour)}",
            f"    opacity: {_num(opacity)}",
            f"    role: {role}",
        ]
    lines += [
        "targets:",
        "  - name: tumour",
        f"    position: {_vec(phantom.tumour_centre_ct)}",
        f"    radius_mm: {_num(phantom.tumour_radius_mm)}",
        "    color: [1.0, 0.9, 0.1]",
        "paths:",
        "  - name: needle",
        f"    entry: {_vec(phantom.entry_ct)}",
        "    target: tumour",
        f"    diameter_mm: {_num(NEEDLE_DIAMETER_MM)}",
        "tools: []",
        "markups: []",
    ]
    path = folder / "scene.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
