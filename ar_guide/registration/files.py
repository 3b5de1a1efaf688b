"""The registration file and the tool file (YAML): write, and read back with every check.

Registration file (``ar-guide register``; a scene refers to it as ``registration: {file: reg.yaml}``)::

    reference_from_ct: [[...], [...], [...], [0.0, 0.0, 0.0, 1.0]]   # CT (LPS, mm) -> reference mm
    method: paired-point (Arun 1987)
    fre_mm: 0.42                   # fiducial registration error (RMS)
    fle_mm: 0.35                   # the FLE used for the predictions ...
    fle_source: --fle-mm           # ... and where it came from
    residuals_mm: {F1: 0.3, F2: 0.5}
    leave_one_out_mm: {F1: 0.6, F2: 0.9}     # null where it cannot be computed (3 fiducials)
    predicted_tre_mm: {tumour: 0.8, "needle:entry": 1.1, "needle:max": 1.1}
    excluded: [F4]
    inputs: {ct: ct.csv, patient: patient.csv}
    surface: {...}                 # only after ``register surface``: its figures, accepted or not
    notes: [...]
    date: '2026-11-27T12:00:00+00:00'
    ar_guide_version: 0.1.0

Tool file (``ar-guide pivot``; a scene refers to it as ``tools: [{file: pointer.yaml}]``)::

    name: pointer
    body: {type: sksurgery, file: pointer.txt, dictionary: DICT_ARUCO_ORIGINAL}
    tip_mm: [-100.0, 0.0, 0.0]     # the tip in the body's frame
    pivot_rms_mm: 0.25
    pivot_method: algebraic
    poses: 120
    spread_deg: 38.5
    date: '2026-11-27T12:00:00+00:00'

A relative file name inside ``body`` is relative to the tool file's folder.  Reading checks every
key (unknown keys and keys given twice are errors, as in scene files) and raises
:class:`InputError` naming the file and the key.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
from pathlib import Path

import numpy as np

from ar_guide import __version__
from ar_guide.constants import SceneLimits
from ar_guide.errors import InputError
from ar_guide.geometry.transforms import check_transform
from ar_guide.io.textfiles import load_yaml

REGISTRATION_KEYS = ("reference_from_ct", "method", "fre_mm", "fle_mm", "fle_source", "residuals_mm",
                     "leave_one_out_mm", "predicted_tre_mm", "excluded", "inputs", "surface", "notes",
                     "date", "ar_guide_version")
SURFACE_KEYS = ("accepted", "reason", "rms_mm", "initial_rms_mm", "inlier_fraction", "converged",
                "iterations", "correction_mm", "correction_deg", "points", "mesh", "point_count",
                "max_correction_mm")
TOOL_KEYS = ("name", "body", "tip_mm", "pivot_rms_mm", "pivot_method", "poses", "spread_deg",
             "pivot_point_mm", "date", "ar_guide_version", "description")

#: Digits kept for error figures (0.1 um); matrices are written exactly (shortest repr).
_FIGURE_DIGITS = 4


def now_iso() -> str:
    """The current UTC date and time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def path_from(folder: str | os.PathLike, target: str | os.PathLike) -> str:
    """How a file in ``folder`` refers to ``target``: relative when the two share more than the
    file system's root (a folder moved whole keeps working), else absolute."""
    here, there = Path(folder).resolve(), Path(target).resolve()
    shared = Path(os.path.commonpath([here, there]))
    return str(there) if shared == Path(shared.anchor) else os.path.relpath(there, here)


def nearest_rigid(m: np.ndarray) -> np.ndarray:
    """Project the rotation block onto the nearest rotation (SVD), removing print rounding.

    m : (4, 4) float64, already checked rigid to a tolerance; returns a read-only copy.
    """
    u, _, vt = np.linalg.svd(m[:3, :3])
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = m[:3, 3]
    out.setflags(write=False)
    return out


# ----------------------------------------------------------------------------------------------
# Records


@dataclasses.dataclass(frozen=True, eq=False)
class RegistrationRecord:
    """A registration as written by ``ar-guide register`` (see the module docstring).

    reference_from_ct : (4, 4) float64, maps CT (LPS, mm) to reference-body mm, rigid
    residuals_mm, leave_one_out_mm : mm by fiducial name (leave-one-out None where undefined)
    predicted_tre_mm : mm by target name; paths as "<path>:entry", "<path>:target", "<path>:max"
    surface : the figures of ``register surface`` (keys SURFACE_KEYS), or None
    path : the file it was read from (None for a record not read from a file)
    """

    reference_from_ct: np.ndarray
    method: str
    fre_mm: float | None = None
    fle_mm: float | None = None
    fle_source: str | None = None
    residuals_mm: dict = dataclasses.field(default_factory=dict)
    leave_one_out_mm: dict = dataclasses.field(default_factory=dict)
    predicted_tre_mm: dict = dataclasses.field(default_factory=dict)
    excluded: tuple[str, ...] = ()
    inputs: dict = dataclasses.field(default_factory=dict)
    surface: dict | None = None
    notes: tuple[str, ...] = ()
    date: str | None = None
    ar_guide_version: str | None = None
    path: Path | None = None


@dataclasses.dataclass(frozen=True, eq=False)
class ToolRecord:
    """A tracked tool (see the module docstring).

    body : the body shorthand as in scenes (resolved by ar_guide.tracking.bodies.body_from_config
        against ``base_dir``)
    tip_mm : (3,) float64, the tip in the body's frame (mm), or None before pivot calibration
    pivot_point_mm : (3,) float64, where the pivot was in the tracking (camera) frame, or None
    base_dir : the folder a relative file name in ``body`` is relative to
    """

    name: str
    body: dict
    tip_mm: np.ndarray | None = None
    pivot_rms_mm: float | None = None
    pivot_method: str | None = None
    poses: int | None = None
    spread_deg: float | None = None
    pivot_point_mm: np.ndarray | None = None
    date: str | None = None
    ar_guide_version: str | None = None
    description: str | None = None
    base_dir: Path = Path(".")
    path: Path | None = None


# ----------------------------------------------------------------------------------------------
# Writing


def _figure(value):
    if value is None:
        return None
    value = float(value)
    return round(value, _FIGURE_DIGITS) if math.isfinite(value) else None


def _exact(values) -> list:
    return [float(v) for v in np.asarray(values, dtype=np.float64).ravel()]


def _dump(data: dict, header: str) -> str:
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def represent_list(dumper, items):
        flow = all(not isinstance(v, (list, dict)) for v in items)
        return dumper.represent_sequence("tag:yaml.org,2002:seq", items, flow_style=flow)

    def represent_dict(dumper, mapping):
        flow = bool(mapping) and len(mapping) <= 8 and all(
            not isinstance(v, (list, dict)) for v in mapping.values()) and all(
            len(str(k)) + len(str(v)) < 40 for k, v in mapping.items())
        return dumper.represent_mapping("tag:yaml.org,2002:map", mapping, flow_style=flow)

    _Dumper.add_representer(list, represent_list)
    _Dumper.add_representer(dict, represent_dict)
    body = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100,
                     default_flow_style=False)
    return header + body


def _write_text(path: Path, text: str, what: str) -> Path:
    """Write atomically (a temporary file, then rename): a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise InputError(f"cannot write {what}: {exc.strerror or exc}", path=path) from None
    return path


def registration_to_dict(record: RegistrationRecord) -> dict:
    """The mapping written to the registration file (also used in JSON reports)."""
    m = np.asarray(record.reference_from_ct, dtype=np.float64)
    data = {"reference_from_ct": [_exact(row) for row in m], "method": record.method}
    if record.fre_mm is not None:
        data["fre_mm"] = _figure(record.fre_mm)
    if record.fle_mm is not None:
        data["fle_mm"] = _figure(record.fle_mm)
    if record.fle_source:
        data["fle_source"] = record.fle_source
    for key in ("residuals_mm", "leave_one_out_mm", "predicted_tre_mm"):
        values = getattr(record, key)
        if values:
            data[key] = {str(k): _figure(v) for k, v in values.items()}
    if record.excluded:
        data["excluded"] = [str(n) for n in record.excluded]
    if record.inputs:
        data["inputs"] = {str(k): str(v) for k, v in record.inputs.items()}
    if record.surface is not None:
        data["surface"] = {k: (_figure(v) if isinstance(v, float) else v)
                           for k, v in record.surface.items()}
    if record.notes:
        data["notes"] = [str(n) for n in record.notes]
    data["date"] = record.date or now_iso()
    data["ar_guide_version"] = record.ar_guide_version or __version__
    return data


def write_registration_file(path: str | os.PathLike, record: RegistrationRecord) -> Path:
    """Write ``record`` as YAML to ``path`` (atomically); InputError when it cannot be written."""
    header = ("# ar_guide registration (docs/registration.md).  reference_from_ct maps CT (LPS, mm)\n"
              "# to the patient reference body (mm).  FRE and TRE are uncorrelated: read the\n"
              "# predicted TRE at the target, not only the FRE (Fitzpatrick 2009).\n")
    return _write_text(Path(path), _dump(registration_to_dict(record), header), "registration file")


def tool_to_dict(record: ToolRecord, folder: Path | None = None) -> dict:
    """The mapping written to a tool file in ``folder`` (a relative body file is re-based there)."""
    body = dict(record.body)
    if folder is not None and isinstance(body.get("file"), str) and not Path(body["file"]).is_absolute():
        body["file"] = path_from(folder, Path(record.base_dir) / body["file"])
    data = {"name": record.name, "body": body}
    if record.description:
        data["description"] = record.description
    if record.tip_mm is not None:
        data["tip_mm"] = [round(v, 6) for v in _exact(record.tip_mm)]
    if record.pivot_rms_mm is not None:
        data["pivot_rms_mm"] = _figure(record.pivot_rms_mm)
    if record.pivot_method:
        data["pivot_method"] = record.pivot_method
    if record.poses is not None:
        data["poses"] = int(record.poses)
    if record.spread_deg is not None:
        data["spread_deg"] = round(float(record.spread_deg), 2)
    if record.pivot_point_mm is not None:
        data["pivot_point_mm"] = [round(v, 6) for v in _exact(record.pivot_point_mm)]
    data["date"] = record.date or now_iso()
    data["ar_guide_version"] = record.ar_guide_version or __version__
    return data


def write_tool_file(path: str | os.PathLike, record: ToolRecord) -> Path:
    """Write ``record`` as YAML to ``path`` (atomically); a relative file name in the body is
    rewritten relative to the new file's folder.  InputError when it cannot be written."""
    path = Path(path)
    header = "# ar_guide tool (docs/registration.md): tip_mm is the tip in the body's frame, mm.\n"
    return _write_text(path, _dump(tool_to_dict(record, path.parent), header), "tool file")


# ----------------------------------------------------------------------------------------------
# Reading


def _describe(value) -> str:
    if value is None:
        return "nothing (null)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """Checks of one file's values; every failure names the file and the key."""

    def __init__(self, path: Path):
        self.path = path

    def fail(self, key, message):
        raise InputError(message, path=self.path, key=key)

    def mapping(self, value, key, allowed, required=()) -> dict:
        if not isinstance(value, dict):
            what = "the file" if key is None else "this entry"
            self.fail(key, f"expected a mapping ('key: value' lines) for {what}, got {_describe(value)}")
        for k in value:
            if k not in allowed:
                close = difflib.get_close_matches(str(k), allowed, n=1)
                hint = f"; did you mean '{close[0]}'?" if close else ""
                self.fail(self.sub(key, k), f"unknown key{hint} (expected one of: {', '.join(allowed)})")
        for k in required:
            if value.get(k) is None:
                self.fail(self.sub(key, k), "missing")
        return value

    @staticmethod
    def sub(key, name) -> str:
        return str(name) if key is None else f"{key}.{name}"

    def number(self, value, key, low=None) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not ok or (low is not None and value < low):
            expect = "a number" if low is None else f"a number >= {low:g}"
            self.fail(key, f"expected {expect}, got {_describe(value)}")
        return float(value)

    def optional_number(self, data, key, name, low=None):
        return None if data.get(name) is None else self.number(data[name], self.sub(key, name), low)

    def text(self, value, key) -> str:
        if not isinstance(value, str) or not value.strip():
            self.fail(key, f"expected non-empty text, got {_describe(value)}")
        return value.strip()

    def optional_text(self, data, key, name):
        return None if data.get(name) is None else self.text(str(data[name]), self.sub(key, name))

    def figures(self, value, key, allow_null=False) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"expected a mapping 'name: mm', got {_describe(value)}")
        out = {}
        for name, v in value.items():
            if v is None and allow_null:
                out[str(name)] = None
            else:
                out[str(name)] = self.number(v, f"{key}.{name}", low=0.0)
        return out

    def point(self, value, key) -> np.ndarray:
        ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value)
        if not ok:
            self.fail(key, f"expected a point [x, y, z] of 3 numbers (mm), got {_describe(value)}")
        p = np.array(value, dtype=np.float64)
        p.setflags(write=False)
        return p

    def date(self, value, key):
        if value is None:
            return None
        if isinstance(value, (datetime.date, datetime.datetime)):
            return value.isoformat()
        return self.text(str(value), key)

    def rigid(self, value, key, atol: float) -> np.ndarray:
        shape_ok = isinstance(value, list) and len(value) == 4 and all(
            isinstance(r, list) and len(r) == 4 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in r) for r in value)
        if not shape_ok:
            self.fail(key, f"expected a 4x4 matrix as 4 rows of 4 numbers, got {_describe(value)}")
        try:
            matrix = check_transform(value, name=key, atol=atol)
        except ValueError as exc:
            detail = str(exc).split(": ", 1)[-1]
            self.fail(key, f"not a rigid transform: {detail} (tolerance {atol:g}; write the matrix "
                           "with at least 6 decimals)")
        return nearest_rigid(matrix)


def read_registration_file(path: str | os.PathLike, limits: SceneLimits = SceneLimits()
                           ) -> RegistrationRecord:
    """Read and check a registration file; InputError naming the file and the key on any problem."""
    path = Path(path)
    data = load_yaml(path, "registration file")
    r = _Reader(path)
    if data is None:
        r.fail(None, "the registration file is empty")
    data = r.mapping(data, None, REGISTRATION_KEYS, required=("reference_from_ct", "method"))
    matrix = r.rigid(data["reference_from_ct"], "reference_from_ct", limits.rigid_atol)
    excluded = data.get("excluded") or []
    if not isinstance(excluded, list) or not all(isinstance(n, (str, int)) for n in excluded):
        r.fail("excluded", f"expected a list of fiducial names, got {_describe(excluded)}")
    inputs = data.get("inputs") or {}
    if not isinstance(inputs, dict):
        r.fail("inputs", f"expected a mapping, got {_describe(inputs)}")
    surface = data.get("surface")
    if surface is not None:
        surface = dict(r.mapping(surface, "surface", SURFACE_KEYS, required=("accepted",)))
        if not isinstance(surface["accepted"], bool):
            r.fail("surface.accepted", f"expected true or false, got {_describe(surface['accepted'])}")
    notes = data.get("notes") or []
    if not isinstance(notes, list):
        r.fail("notes", f"expected a list of text, got {_describe(notes)}")
    return RegistrationRecord(
        reference_from_ct=matrix,
        method=r.text(data["method"], "method"),
        fre_mm=r.optional_number(data, None, "fre_mm", low=0.0),
        fle_mm=r.optional_number(data, None, "fle_mm", low=0.0),
        fle_source=r.optional_text(data, None, "fle_source"),
        residuals_mm=r.figures(data.get("residuals_mm"), "residuals_mm"),
        leave_one_out_mm=r.figures(data.get("leave_one_out_mm"), "leave_one_out_mm", allow_null=True),
        predicted_tre_mm=r.figures(data.get("predicted_tre_mm"), "predicted_tre_mm"),
        excluded=tuple(str(n) for n in excluded),
        inputs={str(k): str(v) for k, v in inputs.items()},
        surface=surface,
        notes=tuple(str(n) for n in notes),
        date=r.date(data.get("date"), "date"),
        ar_guide_version=r.optional_text(data, None, "ar_guide_version"),
        path=path,
    )


def read_tool_file(path: str | os.PathLike, require_tip: bool = True) -> ToolRecord:
    """Read and check a tool file; InputError naming the file and the key on any problem.

    require_tip : False for the input of pivot calibration (a body without a tip yet)
    """
    path = Path(path)
    data = load_yaml(path, "tool file")
    r = _Reader(path)
    if data is None:
        r.fail(None, "the tool file is empty")
    required = ("name", "body", "tip_mm") if require_tip else ("name", "body")
    data = r.mapping(data, None, TOOL_KEYS, required=required)
    body = data["body"]
    if not isinstance(body, dict) or not body or ("type" not in body and "file" not in body):
        r.fail("body", "expected a body: a mapping with 'type' (charuco, aruco_grid, marker_map, "
                       f"sksurgery) or 'file', got {_describe(body)}")
    poses = data.get("poses")
    if poses is not None and (isinstance(poses, bool) or not isinstance(poses, int) or poses < 0):
        r.fail("poses", f"expected a whole number >= 0, got {_describe(poses)}")
    tip = None if data.get("tip_mm") is None else r.point(data["tip_mm"], "tip_mm")
    pivot = None if data.get("pivot_point_mm") is None else r.point(data["pivot_point_mm"], "pivot_point_mm")
    return ToolRecord(
        name=r.text(str(data["name"]), "name"),
        body=dict(body),
        tip_mm=tip,
        pivot_rms_mm=r.optional_number(data, None, "pivot_rms_mm", low=0.0),
        pivot_method=r.optional_text(data, None, "pivot_method"),
        poses=poses,
        spread_deg=r.optional_number(data, None, "spread_deg", low=0.0),
        pivot_point_mm=pivot,
        date=r.date(data.get("date"), "date"),
        ar_guide_version=r.optional_text(data, None, "ar_guide_version"),
        description=r.optional_text(data, None, "description"),
        base_dir=path.resolve().parent,
        path=path,
    )
