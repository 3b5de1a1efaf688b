"""``ar-guide register points|surface``: place the CT on the patient reference, with its errors.

``points``: rigid paired-point registration of fiducials located in CT and on the patient
(ar_guide.geometry.registration), matched by name; each fiducial's residual and leave-one-out
error with likely outliers flagged; the FRE; the predicted TRE (Fitzpatrick, West and Maurer
1998, eq. 46) at every target and along every planned path for a stated FLE.  The patient points
come from a point file or from a pose log recorded while the pointer's tip was held on each
fiducial in turn (ar_guide.registration.points).

``surface``: refine a registration by ICP of points traced on the skin or an organ to its CT mesh
(ar_guide.registration.surface); the refinement replaces the registration only when it is
better.  Exit status 0 when accepted, 1 when refused: the output then holds the initial
registration unchanged, with the refusal recorded.

Both write the registration file of ar_guide.registration.files; a scene uses it with
``registration: {file: REG.yaml}``.  The user's scene is never edited.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

from ar_guide.constants import RegistrationWorkflow, SurfaceSettings
from ar_guide.errors import InputError

#: Method strings written to the registration file.
PAIRED_POINT_METHOD = "paired-point (Arun 1987)"
SURFACE_METHOD = "surface ICP (open3d, point-to-plane, Tukey) after paired-point"
#: Surface points from a pose log are thinned to this spacing (mm): a tip resting in one place
#: must not outweigh the rest of the trace.
TRACE_SPACING_MM = 1.0
UNCORRELATED = ("FRE and TRE are uncorrelated (Fitzpatrick 2009): a small FRE does not mean an accurate "
                "registration. Check the overlay on an independent landmark before relying on it.")


def add_parser(sub) -> None:
    p = sub.add_parser("register", help="register the CT to the patient: fiducials, then optionally surface ICP",
                       description="Register the CT (LPS, mm) to the patient reference body and report the "
                                   "errors that matter (docs/registration.md).")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    points = actions.add_parser(
        "points", help="paired-point registration of named fiducials",
        description="Rigid paired-point registration (no scaling, no reflection) of fiducials matched by "
                    "name. Reports each fiducial's residual and leave-one-out error, the FRE and the "
                    "predicted TRE at the targets; writes the registration file.")
    points.add_argument("--ct", type=Path, required=True, metavar="CT_POINTS",
                        help="fiducials in CT (LPS, mm): CSV 'name,x,y,z' or Slicer .mrk.json")
    points.add_argument("--patient", type=Path, required=True, metavar="PATIENT_POINTS",
                        help="the same fiducials on the patient (reference-body frame, mm): CSV "
                             "'name,x,y,z', or a pose log (POSES.csv from play/live) of the pointer "
                             "held on each fiducial in turn")
    points.add_argument("--output", type=Path, required=True, metavar="REG.yaml", help="registration file to write")
    points.add_argument("--targets", type=Path, metavar="TARGETS",
                        help="targets (CT, LPS, mm; CSV or .mrk.json) for the predicted TRE")
    points.add_argument("--scene", type=Path, metavar="SCENE.yaml",
                        help="predict the TRE at the scene's targets and along its planned paths; its tools "
                             "can be the pointer (the scene is not edited)")
    points.add_argument("--fle-mm", type=float, metavar="X",
                        help="fiducial localisation error (RMS, mm) for the predictions; default: the "
                             "pointer's pivot RMS (--tool), else estimated from the FRE")
    points.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="NAME",
                        help="leave these fiducials out (e.g. an outlier)")
    points.add_argument("--tool", type=Path, metavar="POINTER.yaml",
                        help="the pointer's tool file (from 'ar-guide pivot'): its tip for a pose log and "
                             "its pivot RMS as the default FLE")
    points.add_argument("--pointer", metavar="NAME",
                        help="pose log: the pointer's body name in the log (default: the tool's name)")
    points.add_argument("--names", nargs="+", metavar="NAME",
                        help="pose log: names of the digitised points in the order they were held "
                             "(default: the CT points' names in file order)")
    defaults = RegistrationWorkflow()
    points.add_argument("--still-mm", type=float, default=defaults.still_mm, metavar="MM",
                        help="pose log: the tip counts as held while it stays within this distance "
                             f"(smoothed; default {defaults.still_mm:g} mm; raise it for noisy tracking)")
    points.add_argument("--hold-s", type=float, default=defaults.hold_s, metavar="S",
                        help=f"pose log: shortest hold that is a digitised point (default {defaults.hold_s:g} s)")
    points.add_argument("--report", type=Path, metavar="REPORT.json", help="also write a JSON report")
    points.set_defaults(run=run_points)

    surface = actions.add_parser(
        "surface", help="refine a registration by ICP of traced surface points to the CT mesh",
        description="Refine a registration with points traced on the skin or an organ (reference frame) "
                    "and the matching CT mesh. Exit status 0 when the refinement is accepted; 1 when it "
                    "is refused (the initial registration is written unchanged, with the refusal).")
    surface.add_argument("--points", type=Path, required=True, metavar="SURFACE_POINTS",
                         help="traced points (reference frame, mm): CSV 'x,y,z' or 'name,x,y,z', or a "
                              "pose log of the pointer tracing the surface")
    surface.add_argument("--mesh", type=Path, required=True, metavar="MESH",
                         help="the surface in CT (LPS, mm): STL, OBJ, PLY, VTK")
    surface.add_argument("--initial", type=Path, required=True, metavar="REG.yaml",
                         help="the registration to start from (from 'register points')")
    surface.add_argument("--output", type=Path, required=True, metavar="REG.yaml", help="registration file to write")
    surface.add_argument("--max-correction-mm", type=float, metavar="X",
                         help="refuse a refinement that moves any traced point further than X mm")
    surface.add_argument("--tool", type=Path, metavar="POINTER.yaml", help="pose log: the pointer's tool file")
    surface.add_argument("--scene", type=Path, metavar="SCENE.yaml",
                         help="pose log: a scene whose tools hold the pointer")
    surface.add_argument("--pointer", metavar="NAME", help="pose log: the pointer's body name in the log")
    surface.add_argument("--report", type=Path, metavar="REPORT.json", help="also write a JSON report")
    surface.set_defaults(run=run_surface)


def note(text: str) -> None:
    print(f"ar-guide: note: {text}", file=sys.stderr)


# ----------------------------------------------------------------------------------------------
# Inputs


@dataclasses.dataclass(frozen=True)
class Pointer:
    """The pointer for a pose log: its body name in the log, tip (body frame, mm), pivot RMS."""

    name: str
    tip_mm: np.ndarray
    pivot_rms_mm: float | None
    source: str


def _positive_mm(value, option: str) -> float | None:
    if value is None:
        return None
    if not np.isfinite(value) or value <= 0:
        unit = "s" if option.endswith("-s") else "mm"
        raise InputError(f"{option}: expected a positive number of {unit}, got {value:g}")
    return float(value)


def _load_tool(args):
    if getattr(args, "tool", None) is None:
        return None
    from ar_guide.registration.files import read_tool_file

    return read_tool_file(args.tool, require_tip=True)


def _load_scene(args):
    if getattr(args, "scene", None) is None:
        return None
    from ar_guide.scene import load_scene

    return load_scene(args.scene, read_registration=False)


def resolve_pointer(args, tool, scene, log_path: Path) -> Pointer:
    """The pointer of a pose log: --tool's file, else the scene's tool (--pointer or the only one)."""
    if tool is not None:
        return Pointer(args.pointer or tool.name, tool.tip_mm, tool.pivot_rms_mm, f"{args.tool}")
    if scene is not None and scene.tools:
        names = [t.name for t in scene.tools]
        if args.pointer is None and len(names) > 1:
            raise InputError(f"the scene has several tools ({', '.join(names)}): say which is the pointer "
                             "with --pointer NAME", path=args.scene)
        name = args.pointer or names[0]
        if name not in names:
            raise InputError(f"no tool {name!r} in the scene (tools: {', '.join(names)})", path=args.scene)
        spec = scene.tools[names.index(name)]
        source = str(spec.source) if spec.source is not None else f"{args.scene}"
        return Pointer(name, spec.tip_mm, spec.pivot_rms_mm, source)
    raise InputError("this is a pose log: give the pointer's tool file (--tool POINTER.yaml) or a scene "
                     "whose tools hold it (--scene SCENE.yaml), so that its tip can be located",
                     path=log_path)


def _track(args, tool, scene, log_path: Path):
    from ar_guide.io.poselog import read_pose_log
    from ar_guide.registration.points import tip_track

    pointer = resolve_pointer(args, tool, scene, log_path)
    track = tip_track(read_pose_log(log_path), pointer.name, pointer.tip_mm, path=log_path)
    if len(track.times_s) == 0:
        raise InputError(f"no frame in which both the reference and {pointer.name!r} were tracked (OK)",
                         path=log_path)
    return pointer, track


def digitised_points(args, ct, tool, scene, settings: RegistrationWorkflow):
    """Patient fiducials from a pose log: (PointSet, Pointer, held periods)."""
    from ar_guide.registration.points import PointSet, find_held_points

    pointer, track = _track(args, tool, scene, args.patient)
    held = find_held_points(track, settings)
    if args.names:
        names = list(args.names)
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InputError(f"--names: {', '.join(twice)} given twice")
        source = "--names"
    else:
        names = list(ct.names)
        source = f"the CT points of {ct.path.name} in file order"
    if len(held) != len(names):
        periods = "; ".join(f"{i + 1}: {h.start_s:.1f}-{h.end_s:.1f} s" for i, h in enumerate(held)) or "none"
        raise InputError(f"found {len(held)} held pointer position{'s' if len(held) != 1 else ''} (tip "
                         f"still within {settings.still_mm:g} mm for {settings.hold_s:g} s or more; "
                         f"{periods}) but {len(names)} names from {source}: name the held points in "
                         "order with --names (a hold missed in noisy tracking: raise --still-mm)",
                         path=args.patient)
    positions = np.array([h.position_reference for h in held], dtype=np.float64).reshape(-1, 3)
    positions.setflags(write=False)
    note(f"digitised {len(held)} points from {args.patient.name} (pointer {pointer.name!r} held still "
         f">= {settings.hold_s:g} s), named after {source}")
    return PointSet(tuple(names), positions, (0,) * len(names), args.patient), pointer, held


def _targets(args, scene, settings: RegistrationWorkflow):
    """Prediction points in CT: {name: (3,)} and the planned paths' samples."""
    from ar_guide.registration.fiducials import path_samples
    from ar_guide.registration.points import read_points

    targets: dict[str, np.ndarray] = {}
    if args.targets is not None:
        targets.update(read_points(args.targets).by_name())
    paths = []
    if scene is not None:
        for t in scene.targets:
            known = targets.get(t.name)
            if known is not None and not np.allclose(known, t.position_ct, atol=1e-6):
                raise InputError(f"target {t.name!r} is at different places in {args.targets.name} and the "
                                 "scene; rename one", path=args.scene)
            targets[t.name] = np.asarray(t.position_ct, dtype=np.float64)
        paths = [path_samples(p.name, p.entry_ct, p.target_ct, settings.path_samples) for p in scene.paths]
    return targets, paths


# ----------------------------------------------------------------------------------------------
# register points


def run_points(args) -> int:
    from ar_guide.geometry.registration import paired_point_registration
    from ar_guide.geometry.tre import expected_fre_mm, fle_from_fre_mm
    from ar_guide.registration.fiducials import likely_outlier, predict_tre
    from ar_guide.registration.files import RegistrationRecord, registration_to_dict, write_registration_file
    from ar_guide.registration.points import is_pose_log, read_points

    fle_given = _positive_mm(args.fle_mm, "--fle-mm")
    settings = dataclasses.replace(RegistrationWorkflow(), still_mm=_positive_mm(args.still_mm, "--still-mm"),
                                   hold_s=_positive_mm(args.hold_s, "--hold-s"))
    ct = read_points(args.ct)
    tool = _load_tool(args)
    scene = _load_scene(args)
    notes: list[str] = []
    pointer = held = None
    if is_pose_log(args.patient):
        patient, pointer, held = digitised_points(args, ct, tool, scene, settings)
        notes.append(f"patient points digitised from the pose log {args.patient.name} (pointer "
                     f"{pointer.name!r}, {len(held)} held positions)")
    else:
        if args.names:
            raise InputError("--names applies to a pose log; a point file names its points itself",
                             path=args.patient)
        patient = read_points(args.patient)

    patient_names = set(patient.names)
    ct_names = set(ct.names)
    unknown = [n for n in args.exclude if n not in ct_names and n not in patient_names]
    if unknown:
        raise InputError(f"--exclude {unknown[0]}: no fiducial of this name (fiducials: "
                         f"{', '.join(ct.names)})")
    only_ct = [n for n in ct.names if n not in patient_names]
    only_patient = [n for n in patient.names if n not in ct_names]
    for names, here, there in ((only_ct, args.ct, args.patient), (only_patient, args.patient, args.ct)):
        if names:
            text = f"{', '.join(names)} only in {here.name}, not in {there.name}: left out"
            note(text)
            notes.append(text)
    excluded = [n for n in ct.names if n in args.exclude] + [n for n in only_patient if n in args.exclude]
    pairs = [n for n in ct.names if n in patient_names and n not in args.exclude]
    ct_by_name, patient_by_name = ct.by_name(), patient.by_name()
    fiducials_ct = np.array([ct_by_name[n] for n in pairs], dtype=np.float64).reshape(-1, 3)
    fiducials_patient = np.array([patient_by_name[n] for n in pairs], dtype=np.float64).reshape(-1, 3)

    t0 = time.perf_counter()
    try:
        result = paired_point_registration(pairs, fiducials_ct, fiducials_patient)
    except ValueError as exc:
        message = str(exc).replace("points_from", f"the CT points ({args.ct.name})").replace(
            "points_to", f"the patient points ({args.patient.name})")
        context = f"paired by name: {', '.join(pairs) or 'none'}"
        if excluded:
            context += f"; excluded: {', '.join(excluded)}"
        raise InputError(f"{message} ({context})") from None
    registration_ms = (time.perf_counter() - t0) * 1e3
    n = len(pairs)

    if fle_given is not None:
        fle, fle_source = fle_given, "--fle-mm"
    elif tool is not None and tool.pivot_rms_mm is not None:
        fle, fle_source = tool.pivot_rms_mm, f"pivot RMS of {args.tool.name}"
    elif pointer is not None and pointer.pivot_rms_mm is not None:
        fle, fle_source = pointer.pivot_rms_mm, f"pivot RMS of the pointer ({Path(pointer.source).name})"
    else:
        fle, fle_source = fle_from_fre_mm(result.fre_mm, n), "estimated from FRE"
        text = ("FLE estimated from this registration's own FRE: circular and weaker (one FRE is a noisy "
                "estimate); give --fle-mm or the pointer's tool file (--tool)")
        note(text)
        notes.append(text)
    if fle_source != "estimated from FRE":
        expected = expected_fre_mm(fle, n)
        if expected > 0 and result.fre_mm > 2.0 * expected:
            text = (f"the FRE ({result.fre_mm:.2f} mm) is {result.fre_mm / expected:.1f} times what an FLE of "
                    f"{fle:.2f} mm gives with {n} fiducials ({expected:.2f} mm): a fiducial is wrong, or the "
                    "FLE is larger than assumed (then the predicted TRE is too optimistic)")
            note(text)
            notes.append(text)

    targets, paths = _targets(args, scene, settings)
    tre = predict_tre(fiducials_ct, targets, paths, fle) if (targets or paths) else {}
    if not tre:
        text = "no targets: give --targets or --scene to predict the error where it matters"
        note(text)
        notes.append(text)
    known_fle = 0.0 if fle_source == "estimated from FRE" else fle
    outlier, _ = likely_outlier(result.names, fiducials_ct, fiducials_patient, result.leave_one_out_mm,
                                known_fle, settings)
    flagged = [outlier] if outlier is not None else []
    if n == 3:
        text = "with 3 fiducials no leave-one-out check is possible and an outlier cannot be told apart: add fiducials"
        note(text)
        notes.append(text)

    inputs = {"ct": str(args.ct), "patient": str(args.patient)}
    for key in ("targets", "scene", "tool"):
        if getattr(args, key) is not None:
            inputs[key] = str(getattr(args, key))
    loo = {name: (float(v) if np.isfinite(v) else None) for name, v in zip(result.names, result.leave_one_out_mm)}
    record = RegistrationRecord(
        reference_from_ct=result.to_from_from,
        method=PAIRED_POINT_METHOD,
        fre_mm=result.fre_mm,
        fle_mm=fle,
        fle_source=fle_source,
        residuals_mm={name: float(v) for name, v in zip(result.names, result.residuals_mm)},
        leave_one_out_mm=loo,
        predicted_tre_mm=tre,
        excluded=tuple(excluded),
        inputs=inputs,
        notes=tuple(notes),
    )
    print_points_report(args, record, flagged, held)
    write_registration_file(args.output, record)
    print(f"wrote {args.output}")
    if args.scene is not None:
        _print_scene_hint(args.scene, args.output)
    if args.report is not None:
        from ar_guide.io.report import write_json

        write_json(args.report, {"command": "register points", "registration": registration_to_dict(record),
                                 "outliers": flagged, "timings_ms": {"registration": registration_ms}})
    return 0


def print_points_report(args, record, flagged, held) -> None:
    """The table a person reads: fiducials, FRE, FLE, predicted TRE and the Fitzpatrick reminder."""
    n = len(record.residuals_mm)
    print(f"Paired-point registration of {n} fiducials ({args.ct.name} -> {args.patient.name}); "
          "rigid, no scaling, no reflection")
    if record.excluded:
        print(f"excluded: {', '.join(record.excluded)}")
    width = max(8, *(len(name) for name in record.residuals_mm))
    print(f"  {'fiducial':<{width}}  residual mm  leave-one-out mm")
    for name, residual in record.residuals_mm.items():
        loo = record.leave_one_out_mm.get(name)
        loo_text = f"{loo:16.2f}" if loo is not None else f"{'-':>16}"
        flag = f"  <- {name} looks like an outlier: re-digitise it or --exclude {name}" if name in flagged else ""
        print(f"  {name:<{width}}  {residual:11.2f}  {loo_text}{flag}")
    if held:
        print("  digitised (pointer held): " + ", ".join(
            f"{name} {h.start_s:.1f}-{h.end_s:.1f} s ({h.spread_mm:.2f} mm RMS)"
            for name, h in zip(record.residuals_mm, held)))
    print(f"FRE {record.fre_mm:.2f} mm (RMS of the residuals)")
    print(f"FLE {record.fle_mm:.2f} mm ({record.fle_source})")
    if record.predicted_tre_mm:
        print("predicted TRE (RMS over repeated registrations; Fitzpatrick, West and Maurer 1998, eq. 46):")
        width = max(len(k) for k in record.predicted_tre_mm)
        for name, value in record.predicted_tre_mm.items():
            print(f"  {name:<{width}}  {value:.2f} mm")
    print(UNCORRELATED)


def _print_scene_hint(scene_path: Path, output: Path) -> None:
    """Say how the scene uses the file; the user's scene is never edited."""
    from ar_guide.io.textfiles import load_yaml

    from ar_guide.registration.files import path_from

    relative = path_from(scene_path.resolve().parent, output)
    current = load_yaml(scene_path, "scene file").get("registration")
    if isinstance(current, str):
        current = {"file": current}
    if isinstance(current, dict) and isinstance(current.get("file"), str) and \
            (scene_path.resolve().parent / current["file"]).resolve() == output.resolve():
        print(f"{scene_path.name} already uses {relative}")
        return
    print(f"to use it, put this line in {scene_path} (replacing its 'registration' entry):")
    print(f"  registration: {{file: {relative}}}")


# ----------------------------------------------------------------------------------------------
# register surface


def run_surface(args) -> int:
    from ar_guide.io.meshes import load_mesh
    from ar_guide.registration.files import now_iso, read_registration_file, registration_to_dict, \
        write_registration_file
    from ar_guide.registration.points import is_pose_log, read_points, traced_points
    from ar_guide.registration.surface import refine_surface

    max_correction = _positive_mm(args.max_correction_mm, "--max-correction-mm")
    initial = read_registration_file(args.initial)
    if is_pose_log(args.points):
        pointer, track = _track(args, _load_tool(args), _load_scene(args), args.points)
        points = traced_points(track, TRACE_SPACING_MM)
        note(f"{len(points)} surface points from {args.points.name} (pointer {pointer.name!r}, tip positions "
             f"at least {TRACE_SPACING_MM:g} mm apart)")
    else:
        points = read_points(args.points, require_names=False).points
    mesh = load_mesh(args.mesh)
    t0 = time.perf_counter()
    try:
        result = refine_surface(points, mesh.vertices, mesh.faces, initial.reference_from_ct,
                                max_correction_mm=max_correction)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    surface_ms = (time.perf_counter() - t0) * 1e3
    figures = {
        "accepted": bool(result.accepted),
        "reason": result.reason,
        "rms_mm": float(result.rms_mm),
        "initial_rms_mm": float(result.initial_rms_mm),
        "inlier_fraction": float(result.inlier_fraction),
        "converged": bool(result.converged),
        "iterations": int(result.iterations),
        "correction_mm": float(result.correction_mm),
        "correction_deg": float(result.correction_deg),
        "points": str(args.points),
        "mesh": str(args.mesh),
        "point_count": int(len(points)),
    }
    if max_correction is not None:
        figures["max_correction_mm"] = max_correction
    inputs = dict(initial.inputs, initial=str(args.initial), surface_points=str(args.points), mesh=str(args.mesh))
    notes = list(initial.notes)
    if result.accepted:
        notes.append("fre_mm, residuals_mm, leave_one_out_mm and predicted_tre_mm are those of the paired-point "
                     "registration that the surface refinement started from")
        record = dataclasses.replace(initial, reference_from_ct=result.reference_from_ct, method=SURFACE_METHOD,
                                     surface=figures, inputs=inputs, notes=tuple(notes), date=now_iso(),
                                     ar_guide_version=None, path=None)
    else:
        notes.append(f"surface refinement refused: {result.reason}")
        record = dataclasses.replace(initial, surface=figures, inputs=inputs, notes=tuple(notes), date=now_iso(),
                                     ar_guide_version=None, path=None)
    print(f"Surface refinement of {args.initial.name} with {len(points)} points on {args.mesh.name}")
    # The truncated RMS (every point, distances capped) is comparable before and after; the inlier
    # RMS is taken over different sets of points and can look better before a good refinement.
    print(f"  point-to-surface RMS, all points, each capped at {SurfaceSettings().inlier_distance_mm:g} mm: "
          f"{result.initial_truncated_rms_mm:.2f} mm before, {result.truncated_rms_mm:.2f} mm after "
          f"(inliers only: {result.initial_rms_mm:.2f} -> {result.rms_mm:.2f} mm)")
    print(f"  inliers {result.inlier_fraction:.0%}; ICP {'converged' if result.converged else 'did not converge'} "
          f"({result.iterations} iterations); correction {result.correction_mm:.2f} mm, "
          f"{result.correction_deg:.2f} deg")
    write_registration_file(args.output, record)
    if args.report is not None:
        from ar_guide.io.report import write_json

        write_json(args.report, {"command": "register surface", "registration": registration_to_dict(record),
                                 "timings_ms": {"surface": surface_ms}})
    if result.accepted:
        print(f"accepted: {result.reason}")
        print(f"wrote {args.output} (method: {SURFACE_METHOD})")
        return 0
    print(f"refused: {result.reason}")
    print(f"wrote {args.output}: the initial registration unchanged, with the refusal recorded")
    return 1
