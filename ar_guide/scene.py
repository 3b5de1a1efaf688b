"""The scene file: reference body, registration, anatomy, targets, planned paths and tools.

Format: docs/scene-format.md (YAML, version 1).  :func:`load_scene` validates the whole file once,
at the boundary (STYLE.md): every problem is an :class:`InputError` naming the file and the key,
e.g. ``scene.yaml: 'anatomy[1].opacity': expected a number in [0, 1], got 1.5``.  Unknown keys are
errors too, so that a typo (``opactiy``) cannot pass silently, and so are repeated keys (YAML itself
keeps the last one without a word).

Positions are in the CT frame (LPS, mm).  Slicer markups (``.mrk.json``) in RAS are converted to
LPS by negating x and y.  Meshes are checked to exist but read only by
:func:`load_anatomy_meshes`; the reference and tool bodies are kept as the raw shorthand mappings
and resolved by ``ar_guide.tracking.bodies.body_from_config`` (relative to :attr:`Scene.base_dir`,
or to the tool file's folder for a tool given as ``{file: pointer.yaml}``).

The registration may be inline or a registration file written by ``ar-guide register``
(``registration: {file: reg.yaml}``, ar_guide.registration.files); its own errors name that file.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
import re
from pathlib import Path

import numpy as np

from ar_guide.constants import SceneLimits
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import check_transform
from ar_guide.io.textfiles import load_yaml
from ar_guide.registration.files import nearest_rigid
from ar_guide.registration.points import read_slicer_markups  # noqa: F401 - part of this module's API

SCENE_VERSION = 1
ROLES = ("organ", "target", "vessel", "risk", "skin", "other")

#: Colour of an anatomy item without 'color', by role (RGB, 0..1).
ROLE_COLORS_RGB = {
    "organ": (0.85, 0.45, 0.35),
    "target": (1.0, 0.85, 0.1),
    "vessel": (0.8, 0.15, 0.15),
    "risk": (0.95, 0.25, 0.65),
    "skin": (0.93, 0.78, 0.68),
    "other": (0.7, 0.7, 0.7),
}
#: Opacity of an anatomy item without 'opacity'.
DEFAULT_OPACITY = 0.5

_TOP_KEYS = ("version", "units", "description", "calibration", "reference", "registration",
             "anatomy", "targets", "paths", "tools", "markups")
_REGISTRATION_KEYS = ("reference_from_ct", "method", "fre_mm", "predicted_tre_mm", "date",
                      "provenance")
_ANATOMY_KEYS = ("name", "mesh", "color", "opacity", "role", "scale")
_TARGET_KEYS = ("name", "position", "radius_mm", "color")
_PATH_KEYS = ("name", "entry", "target", "diameter_mm")
_TOOL_KEYS = ("name", "body", "tip_mm")
_TOOL_FILE_KEYS = ("file", "name")
#: Keys of predicted_tre_mm for a planned path: "<path>:entry" and so on (ar-guide register).
PATH_TRE_SUFFIXES = ("entry", "target", "max")
_MARKUP_KEYS = ("file", "radius_mm", "color")


@dataclasses.dataclass(frozen=True, eq=False)
class Registration:
    """Places the CT on the reference body.

    reference_from_ct : (4, 4) float64, maps CT (LPS, mm) to reference-body mm; rigid
    method : how it was obtained (free text)
    fre_mm : fiducial registration error (RMS, mm), or None if not given
    predicted_tre_mm : predicted target registration error (mm) by target name; planned paths
        as "<path>:entry", "<path>:target" and "<path>:max" (the largest along the path)
    date : ISO date or date-time as written, or None
    provenance : anything else the registration tool recorded (free-form mapping); for a
        registration file, its path under "file" and its other figures (fle_mm, residuals_mm ...)
    """

    reference_from_ct: np.ndarray
    method: str
    fre_mm: float | None = None
    predicted_tre_mm: dict = dataclasses.field(default_factory=dict)
    date: str | None = None
    provenance: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True, eq=False)
class AnatomyItem:
    """A segmented structure: mesh file (CT frame) and how to draw it."""

    name: str
    mesh_path: Path
    color_rgb: tuple[float, float, float]
    opacity: float
    role: str
    scale: float = 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class Target:
    """position_ct : (3,) float64, CT (LPS) mm.  color_rgb is None when the scene gives none."""

    name: str
    position_ct: np.ndarray
    radius_mm: float
    color_rgb: tuple[float, float, float] | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class PlannedPath:
    """A planned needle path: entry_ct, target_ct : (3,) float64, CT (LPS) mm."""

    name: str
    entry_ct: np.ndarray
    target_ct: np.ndarray
    target_name: str | None
    diameter_mm: float

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(self.target_ct - self.entry_ct))


@dataclasses.dataclass(frozen=True, eq=False)
class ToolSpec:
    """A tracked tool: body shorthand (raw mapping) and tip_mm : (3,) float64 in the body frame.

    source : the tool file it came from (None: inline in the scene); relative file names in
        ``body`` are then relative to ``source``'s folder
    pivot_rms_mm : the pivot calibration's RMS residual (mm) when the tool file gives it
    """

    name: str
    body: dict
    tip_mm: np.ndarray
    source: Path | None = None
    pivot_rms_mm: float | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """A validated scene file.  ``reference`` and tool bodies are raw shorthand mappings whose
    relative file names are relative to :attr:`base_dir`."""

    path: Path
    version: int
    reference: dict
    registration: Registration | None
    anatomy: tuple[AnatomyItem, ...] = ()
    targets: tuple[Target, ...] = ()
    paths: tuple[PlannedPath, ...] = ()
    tools: tuple[ToolSpec, ...] = ()
    calibration_path: Path | None = None
    description: str | None = None

    @property
    def base_dir(self) -> Path:
        """Folder of the scene file: relative paths inside it start here."""
        return self.path.parent

    def tool_base_dir(self, tool: ToolSpec) -> Path:
        """Folder that relative file names in ``tool.body`` start from."""
        return tool.source.parent if tool.source is not None else self.base_dir

    def target(self, name: str) -> Target:
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


def load_scene(path: str | os.PathLike, limits: SceneLimits = SceneLimits(), *,
               read_registration: bool = True) -> Scene:
    """Read and validate a scene file (docs/scene-format.md); InputError on any problem.

    read_registration : False leaves ``Scene.registration`` None without reading it: ``ar-guide
        register`` needs the targets and paths of a scene whose registration file it is about to
        write (it may not exist yet).
    """
    path = Path(path)
    data = load_yaml(path, "scene file")
    return _SceneReader(path, limits).read(data, read_registration=read_registration)


def load_anatomy_meshes(scene: Scene) -> list:
    """The meshes of ``scene.anatomy``, in the same order (``ar_guide.io.meshes.Mesh``, CT mm).

    Scaled by each item's ``scale``.  InputError naming the mesh file on failure.
    """
    from ar_guide.io.meshes import load_mesh

    return [load_mesh(item.mesh_path, scale=item.scale) for item in scene.anatomy]


# ----------------------------------------------------------------------------------------------
# YAML with line numbers for repeated keys


# ----------------------------------------------------------------------------------------------
# Validation


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _SceneReader:
    def __init__(self, path: Path, limits: SceneLimits):
        self.path = path
        self.limits = limits

    # -- primitives ------------------------------------------------------------------------

    def fail(self, key: str | None, message: str, path: Path | None = None):
        raise InputError(message, path=path or self.path, key=key)

    def mapping(self, value, key: str | None, allowed: tuple[str, ...], required: tuple[str, ...] = (),
                path: Path | None = None) -> dict:
        if not isinstance(value, dict):
            what = "the file" if key is None else "this entry"
            self.fail(key, f"expected a mapping ('key: value' lines) for {what}, got {_describe(value)}",
                      path)
        for k in value:
            if not isinstance(k, str):
                self.fail(key, f"keys must be text, got {_describe(k)}", path)
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.fail(self.sub(key, k), f"unknown key{hint} (expected one of: "
                                            f"{', '.join(allowed)})", path)
        for k in required:
            if k not in value:
                self.fail(self.sub(key, k), "missing", path)
        return value

    @staticmethod
    def sub(key: str | None, name: str) -> str:
        return name if key is None else f"{key}.{name}"

    def number(self, value, key: str, low=None, high=None, low_open=False) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if ok:
            value = float(value)
            ok = (low is None or (value > low if low_open else value >= low)) and \
                 (high is None or value <= high)
        if not ok:
            if low is not None and high is not None:
                expect = f"a number in [{low:g}, {high:g}]"
            elif low is not None:
                expect = f"a number > {low:g}" if low_open else f"a number >= {low:g}"
            else:
                expect = "a number"
            self.fail(key, f"expected {expect}, got {_describe(value)}")
        return value

    def text(self, value, key: str) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected non-empty text, got {_describe(value)}")
        return value.strip()

    def point(self, value, key: str, path: Path | None = None) -> np.ndarray:
        ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok:
            self.fail(key, f"expected a point [x, y, z] of 3 numbers (mm), got {_describe(value)}", path)
        p = np.array(value, dtype=np.float64)
        p.setflags(write=False)
        return p

    def color(self, value, key: str, path: Path | None = None) -> tuple[float, float, float]:
        if isinstance(value, str):
            m = re.fullmatch(r"#([0-9a-fA-F]{6})", value.strip())
            if m:
                h = m.group(1)
                return tuple(int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4))
        elif isinstance(value, (list, tuple)) and len(value) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            if all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in value):
                return tuple(float(v) for v in value)
            self.fail(key, f"expected RGB numbers in [0, 1] (or \"#rrggbb\"), got {_describe(value)}",
                      path)
        hint = " (a # starts a YAML comment: quote it, \"#d97359\")" if value is None else ""
        self.fail(key, f"expected a colour [r, g, b] with numbers in [0, 1] or \"#rrggbb\", got "
                       f"{_describe(value)}{hint}", path)

    def items(self, value, key: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(key, f"expected a list ('- ...' entries), got {_describe(value)}")
        return value

    def unique(self, names: list[str], key_of, what: str) -> None:
        seen = {}
        for i, name in enumerate(names):
            if name in seen:
                self.fail(key_of(i), f"duplicate {what} name {name!r} (also {key_of(seen[name])})")
            seen[name] = i

    def file(self, value, key: str, what: str) -> Path:
        name = self.text(value, key)
        resolved = (self.path.parent / name).resolve()
        if not resolved.is_file():
            self.fail(key, f"{what} not found: {resolved}")
        return resolved

    # -- sections --------------------------------------------------------------------------

    def read(self, data, read_registration: bool = True) -> Scene:
        if data is None:
            self.fail(None, "the scene file is empty")
        required = ("version", "units", "reference") + (("registration",) if read_registration else ())
        top = self.mapping(data, None, _TOP_KEYS, required=required)
        version = top["version"]
        if isinstance(version, bool) or not isinstance(version, int):
            self.fail("version", f"expected the number {SCENE_VERSION}, got {_describe(version)}")
        if version != SCENE_VERSION:
            self.fail("version", f"unsupported scene version {version}; this ar_guide reads "
                                 f"version {SCENE_VERSION}")
        units = top["units"]
        if units != "mm":
            self.fail("units", f"only mm is supported, got {_describe(units)} (convert positions "
                               "to mm; meshes in other units take 'scale')")
        description = None
        if top.get("description") is not None:
            description = self.text(top["description"], "description")
        calibration = None
        if top.get("calibration") is not None:
            calibration = self.file(top["calibration"], "calibration", "calibration file")
        reference = self.body(top["reference"], "reference")
        anatomy = [self.anatomy_item(v, f"anatomy[{i}]")
                   for i, v in enumerate(self.items(top.get("anatomy"), "anatomy"))]
        self.unique([a.name for a in anatomy], lambda i: f"anatomy[{i}].name", "anatomy")
        targets = [self.target(v, f"targets[{i}]")
                   for i, v in enumerate(self.items(top.get("targets"), "targets"))]
        self.unique([t.name for t in targets], lambda i: f"targets[{i}].name", "target")
        for i, v in enumerate(self.items(top.get("markups"), "markups")):
            new = self.markup(v, f"markups[{i}]")
            known = {t.name for t in targets}
            for t in new:
                if t.name in known:
                    self.fail(f"markups[{i}]", f"control point {t.name!r} has the name of a target "
                                               "already defined; rename one of them")
                known.add(t.name)
            targets.extend(new)
        by_name = {t.name: t for t in targets}
        paths = [self.planned_path(v, f"paths[{i}]", by_name)
                 for i, v in enumerate(self.items(top.get("paths"), "paths"))]
        self.unique([p.name for p in paths], lambda i: f"paths[{i}].name", "path")
        tools = [self.tool(v, f"tools[{i}]")
                 for i, v in enumerate(self.items(top.get("tools"), "tools"))]
        self.unique([t.name for t in tools], lambda i: f"tools[{i}].name", "tool")
        registration = None
        if read_registration:
            registration = self.registration(top["registration"], by_name, {p.name for p in paths})
        return Scene(path=self.path.resolve(), version=version, reference=reference,
                     registration=registration, anatomy=tuple(anatomy), targets=tuple(targets),
                     paths=tuple(paths), tools=tuple(tools), calibration_path=calibration,
                     description=description)

    def body(self, value, key: str) -> dict:
        """A body shorthand: checked only for shape here; tracking.bodies resolves it."""
        if not isinstance(value, dict) or not value:
            self.fail(key, "expected a body: a mapping with 'type' (charuco, aruco_grid, marker_map, "
                           f"sksurgery) or 'file', got {_describe(value)}")
        if "type" not in value and "file" not in value:
            self.fail(key, "expected 'type' (charuco, aruco_grid, marker_map, sksurgery) or 'file'")
        return dict(value)

    def registration(self, value, targets: dict, paths: set) -> Registration:
        key = "registration"
        if isinstance(value, str) or (isinstance(value, dict) and "file" in value):
            return self.registration_file(value, key)
        reg = self.mapping(value, key, _REGISTRATION_KEYS, required=("reference_from_ct",))
        m = reg["reference_from_ct"]
        k = f"{key}.reference_from_ct"
        shape_ok = isinstance(m, list) and len(m) == 4 and all(
            isinstance(r, list) and len(r) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in m)
        if not shape_ok:
            self.fail(k, f"expected a 4x4 matrix as 4 rows of 4 numbers, got {_describe(m)}")
        try:
            matrix = check_transform(m, name="reference_from_ct", atol=self.limits.rigid_atol)
        except ValueError as exc:
            detail = str(exc).split(": ", 1)[-1]
            self.fail(k, f"not a rigid transform: {detail} (tolerance {self.limits.rigid_atol:g}; "
                         "write the matrix with at least 6 decimals)")
        matrix = nearest_rigid(matrix)
        method = self.text(reg.get("method") or "unspecified", f"{key}.method")
        fre = None
        if reg.get("fre_mm") is not None:
            fre = self.number(reg["fre_mm"], f"{key}.fre_mm", low=0.0)
        tre = {}
        raw_tre = reg.get("predicted_tre_mm")
        if raw_tre is not None:
            if not isinstance(raw_tre, dict):
                self.fail(f"{key}.predicted_tre_mm",
                          f"expected a mapping 'target name: mm', got {_describe(raw_tre)}")
            for name, v in raw_tre.items():
                sub = f"{key}.predicted_tre_mm.{name}"
                path_name, _, suffix = str(name).rpartition(":")
                is_path = path_name in paths and suffix in PATH_TRE_SUFFIXES
                if name not in targets and not is_path:
                    known = ", ".join(targets) or "none defined"
                    hint = ""
                    if ":" in str(name):
                        hint = (f"; a planned path's is '<path>:entry', '<path>:target' or '<path>:max' "
                                f"(paths: {', '.join(sorted(paths)) or 'none defined'})")
                    self.fail(sub, f"no target of this name (targets: {known}){hint}")
                tre[name] = self.number(v, sub, low=0.0)
        date = reg.get("date")
        if isinstance(date, (datetime.date, datetime.datetime)):
            date = date.isoformat()
        elif date is not None:
            date = self.text(str(date), f"{key}.date")
        provenance = reg.get("provenance") or {}
        if isinstance(provenance, str):
            provenance = {"note": provenance}
        if not isinstance(provenance, dict):
            self.fail(f"{key}.provenance", f"expected a mapping or text, got {_describe(provenance)}")
        return Registration(matrix, method, fre, tre, date, dict(provenance))

    def registration_file(self, value, key: str) -> Registration:
        """``registration: {file: reg.yaml}`` (or just the file name): a file written by
        ``ar-guide register``, read into the same Registration; its errors name that file."""
        from ar_guide.registration.files import read_registration_file

        if isinstance(value, str):
            value = {"file": value}
        others = sorted(set(value) - {"file"}, key=str)
        if others:
            self.fail(f"{key}.{others[0]}", "a registration given as 'file' holds only 'file': the "
                                            "figures are in that file (or give the registration "
                                            "inline, without 'file')")
        path = self.file(value["file"], f"{key}.file", "registration file")
        record = read_registration_file(path, self.limits)
        provenance = {"file": str(path)}
        for name in ("fle_mm", "fle_source", "residuals_mm", "leave_one_out_mm", "excluded", "inputs",
                     "surface", "notes", "ar_guide_version"):
            v = getattr(record, name)
            if v is not None and v != {} and v != ():
                provenance[name] = list(v) if isinstance(v, tuple) else v
        return Registration(record.reference_from_ct, record.method, record.fre_mm,
                            dict(record.predicted_tre_mm), record.date, provenance)

    def anatomy_item(self, value, key: str) -> AnatomyItem:
        item = self.mapping(value, key, _ANATOMY_KEYS, required=("name", "mesh"))
        name = self.text(item["name"], f"{key}.name")
        mesh_name = self.text(item["mesh"], f"{key}.mesh")
        from ar_guide.io.meshes import MESH_SUFFIXES

        if Path(mesh_name).suffix.lower() not in MESH_SUFFIXES:
            self.fail(f"{key}.mesh", f"unsupported mesh type {Path(mesh_name).suffix!r}; expected "
                                     f"one of {', '.join(MESH_SUFFIXES)}")
        mesh_path = self.file(mesh_name, f"{key}.mesh", "mesh file")
        role = item.get("role", "other")
        if role not in ROLES:
            self.fail(f"{key}.role", f"expected one of {', '.join(ROLES)}, got {_describe(role)}")
        color = self.color(item["color"], f"{key}.color") if "color" in item \
            else ROLE_COLORS_RGB[role]
        opacity = self.number(item.get("opacity", DEFAULT_OPACITY), f"{key}.opacity", 0.0, 1.0)
        scale = self.number(item.get("scale", 1.0), f"{key}.scale", low=0.0, low_open=True)
        return AnatomyItem(name, mesh_path, color, opacity, role, scale)

    def target(self, value, key: str) -> Target:
        item = self.mapping(value, key, _TARGET_KEYS, required=("name", "position"))
        name = self.text(item["name"], f"{key}.name")
        position = self.point(item["position"], f"{key}.position")
        radius = self.number(item.get("radius_mm", self.limits.default_target_radius_mm),
                             f"{key}.radius_mm", low=0.0, low_open=True)
        color = self.color(item["color"], f"{key}.color") if "color" in item else None
        return Target(name, position, radius, color)

    def planned_path(self, value, key: str, targets: dict) -> PlannedPath:
        item = self.mapping(value, key, _PATH_KEYS, required=("name", "entry", "target"))
        name = self.text(item["name"], f"{key}.name")
        entry = self.point(item["entry"], f"{key}.entry")
        raw_target = item["target"]
        if isinstance(raw_target, str):
            if raw_target not in targets:
                known = ", ".join(targets) or "none defined"
                self.fail(f"{key}.target", f"no target named {raw_target!r} (targets: {known})")
            target_ct = targets[raw_target].position_ct
            target_name = raw_target
        else:
            if not isinstance(raw_target, (list, tuple)):
                self.fail(f"{key}.target", "expected a target's name or a point [x, y, z], got "
                                           f"{_describe(raw_target)}")
            target_ct = self.point(raw_target, f"{key}.target")
            target_name = None
        length = float(np.linalg.norm(target_ct - entry))
        if length < self.limits.min_path_length_mm:
            self.fail(key, f"entry and target are {length:.3g} mm apart; a path needs at least "
                           f"{self.limits.min_path_length_mm:g} mm")
        diameter = self.number(item.get("diameter_mm", self.limits.default_path_diameter_mm),
                               f"{key}.diameter_mm", low=0.0, low_open=True)
        return PlannedPath(name, entry, target_ct, target_name, diameter)

    def tool(self, value, key: str) -> ToolSpec:
        if isinstance(value, dict) and "file" in value:
            return self.tool_file(value, key)
        item = self.mapping(value, key, _TOOL_KEYS, required=("name", "body", "tip_mm"))
        name = self.text(item["name"], f"{key}.name")
        body = self.body(item["body"], f"{key}.body")
        tip = self.point(item["tip_mm"], f"{key}.tip_mm")
        return ToolSpec(name, body, tip)

    def tool_file(self, value, key: str) -> ToolSpec:
        """``{file: pointer.yaml}`` (optionally with a ``name`` that replaces the file's): a tool
        file written by ``ar-guide pivot``; its errors name that file."""
        from ar_guide.registration.files import read_tool_file

        others = sorted(set(value) - set(_TOOL_FILE_KEYS), key=str)
        if others:
            self.fail(f"{key}.{others[0]}", "a tool given as 'file' holds only 'file' and optionally "
                                            "'name': body and tip are in that file")
        item = value
        path = self.file(item["file"], f"{key}.file", "tool file")
        record = read_tool_file(path, require_tip=True)
        name = self.text(item["name"], f"{key}.name") if "name" in item else record.name
        return ToolSpec(name, dict(record.body), record.tip_mm, source=path,
                        pivot_rms_mm=record.pivot_rms_mm)

    def markup(self, value, key: str) -> list[Target]:
        """Slicer markups: the defined control points of point lists become targets."""
        if isinstance(value, str):
            value = {"file": value}
        item = self.mapping(value, key, _MARKUP_KEYS, required=("file",))
        file = self.file(item["file"], f"{key}.file", "markups file")
        radius = self.number(item.get("radius_mm", self.limits.default_target_radius_mm),
                             f"{key}.radius_mm", low=0.0, low_open=True)
        color = self.color(item["color"], f"{key}.color") if "color" in item else None
        return [Target(name, position, radius, color) for name, position in read_slicer_markups(file)]
