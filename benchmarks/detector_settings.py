"""Marker detector settings: which markers each candidate finds, corner accuracy, and speed.

Run from the project root:  .venv/bin/python benchmarks/detector_settings.py [--runs 30] [--quick]
                            .venv/bin/python benchmarks/detector_settings.py --blur
Results and the decision: benchmarks/detector_settings.md.

Frames (all grey, uint8):
- real photos of ../shared/data (OpenCV tutorial photos, frame 0 of the SciKit-Surgery
  multipattern video), 640x480, as they are, and embedded at their own scale
  (so the markers stay SMALL: 21-45 px sides) into 1280x720 and 1920x1080 canvases whose
  surround is a blurred, enlarged copy of the photo (texture, but no extra decodable markers);
- the same photos enlarged 1.5x (720p) and 2.25x (1080p), so their markers are 2x larger;
- synthetic frames: 24 DICT_6X6_250 markers with 20-40 px sides, tilted up to 55 degrees, on a
  textured background with a lighting gradient, blur and sensor noise, at 720p and 1080p, with
  exact corners (rendered at 4x and area-averaged); and a variant that also holds 4 large markers
  (120-300 px) to check that a setting tuned for small markers still finds near, big ones.

For every candidate setting: markers found / expected, mean/max corner error (px) against the
ground truth (synthetic frames) or against the ChArUco-corner pose (the two ChArUco photos, see
``_real_photos``), and the median detection time over ``--runs`` runs (after one warm-up),
edge refinement included.  Times are wall-clock on this machine with OpenCV's default threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ar_guide.tracking import aruco  # noqa: E402
from ar_guide.tracking.aruco import DetectorSettings, MarkerDetector  # noqa: E402

DATA = ROOT.parent / "shared" / "data"

# Candidate settings: DetectorSettings, or a function of the image size (w, h) returning one.
# The previous default (ArUco3, minMarkerLengthRatioOriginalImg 0.02, canonical side 16) finds
# markers of at least 16 + 0.02 * longer side px, which is what the lambda below reproduces.
CANDIDATES = {
    "OpenCV defaults (windows 3/13/23, no edge fit)": lambda size: DetectorSettings(
        threshold_windows_px=(3, 13, 23), min_marker_side_px=0.03 * max(size) / 2.8, refine_edges=False),
    "old default (ArUco3, ratio 0.02)": lambda size: DetectorSettings(
        aruco3=True, min_marker_side_px=16 + 0.02 * max(size), aruco3_canonical_side_px=16, refine_edges=False),
    "ArUco3, min side 20 px": DetectorSettings(aruco3=True, min_marker_side_px=20),
    "ArUco3, min side 48 px": DetectorSettings(aruco3=True, min_marker_side_px=48),
    "window 5": DetectorSettings(threshold_windows_px=(5,)),
    "window 7 (default)": DetectorSettings(),
    "windows 5/15": DetectorSettings(threshold_windows_px=(5, 15)),
    "windows 7/17": DetectorSettings(threshold_windows_px=(7, 17)),
    "windows 3/13/23": DetectorSettings(threshold_windows_px=(3, 13, 23)),
}


# ----------------------------------------------------------------------------- frames


def _real_photos():
    """(name, gray, dictionary, {id: (4, 2) reference corners or None}).

    Reference corners exist for the two ChArUco photos only: the marker corners predicted by
    the board pose fitted to its chessboard corners (saddle points, which are unbiased and
    independent of the marker corners), with the OpenCV tutorial's calibration.  The gold corners
    of OpenCV's tests are NOT used as a reference: they are the detector's integer contour
    vertices, about 0.7 px inside the true edges (tests/test_tracking_real_data.py).
    """
    from ar_guide.camera import load_camera
    from ar_guide.geometry.transforms import transform_points
    from ar_guide.tracking.bodies import charuco_body
    from ar_guide.tracking.pose import BodyPoseEstimator

    out = []
    folder = DATA / "markers" / "opencv_tutorial"
    gold = json.loads((folder / "gold_marker_corners.json").read_text())
    camera = load_camera(DATA / "calibration" / "opencv_charuco_tutorial" / "tutorial_camera_charuco.yml")
    board = charuco_body("board", (5, 7), 40.0, 20.0, "DICT_6X6_250")
    for case in gold.values():
        if not isinstance(case, dict):
            continue
        name = case["image_in_opencv_extra"]
        gray = cv2.imread(str(folder / name), cv2.IMREAD_GRAYSCALE)
        expected = {int(k): None for k in case["markers"]}
        if name.startswith("ch"):
            detections = MarkerDetector(case["dictionary"]).detect(gray)
            pose = BodyPoseEstimator(board, camera).estimate(detections, gray).camera_from_body
            expected = {i: camera.project(transform_points(pose, board.markers_body[i])) for i in expected}
        out.append((name.split(".")[0], gray, case["dictionary"], expected))
    cap = cv2.VideoCapture(str(DATA / "video" / "sksurgery_aruco" / "multipattern.avi"))
    ok, frame = cap.read()
    cap.release()
    if ok:
        reference_ids = [int(row.split()[0]) for row in
                         (DATA / "video" / "sksurgery_aruco" / "reference.txt").read_text().splitlines() if row.strip()]
        # 11 of the 12 reference markers are visible in frame 0 (id 100 is not).
        expected = {i: None for i in reference_ids if i != 100}
        out.append(("multipattern_f0", cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), "DICT_ARUCO_ORIGINAL", expected))
    return out


def _embed(gray, size, scale):
    """The photo scaled by ``scale`` in the middle of a canvas ``size`` (w, h); returns image, offset map."""
    w, h = size
    photo = gray if scale == 1.0 else cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    ph, pw = photo.shape
    # Surround: the photo enlarged to cover the canvas and blurred so that no marker in it decodes.
    cover = max(w / gray.shape[1], h / gray.shape[0]) * 1.05
    back = cv2.resize(gray, None, fx=cover, fy=cover, interpolation=cv2.INTER_LINEAR)
    back = cv2.GaussianBlur(back[:h, :w], (0, 0), 6.0)
    canvas = back.copy()
    x0 = (w - pw) // 2
    y0 = (h - ph) // 2
    xs0, ys0 = max(0, -x0), max(0, -y0)
    xd0, yd0 = max(0, x0), max(0, y0)
    cw, ch = min(pw - xs0, w - xd0), min(ph - ys0, h - yd0)
    canvas[yd0:yd0 + ch, xd0:xd0 + cw] = photo[ys0:ys0 + ch, xs0:xs0 + cw]

    def to_canvas(uv):  # OpenCV pixel centres: u' = (u + 0.5) * s - 0.5
        return (uv + 0.5) * scale - 0.5 + np.array([x0, y0])

    return canvas, to_canvas


def _rotation(axis, angle):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    rotation, _ = cv2.Rodrigues(axis * angle)
    return rotation


def _texture(rng, h, w):
    tex = np.zeros((h, w), np.float32)
    for sigma, amp in ((40, 60), (10, 30), (2, 12)):
        n = rng.normal(0, 1, (h // 4 + 1, w // 4 + 1)).astype(np.float32)
        n = cv2.resize(n, (w, h), interpolation=cv2.INTER_CUBIC)
        n = cv2.GaussianBlur(n, (0, 0), sigma)
        tex += amp * n / (n.std() + 1e-6)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gradient = 0.55 + 0.45 * (xx / w) * (0.6 + 0.4 * yy / h)  # lamp on one side
    return np.clip((150 + tex) * gradient, 0, 255), gradient


def synthetic_frame(rng, size, n_small=24, small_px=(20, 40), n_large=0, large_px=(120, 300),
                    dictionary="DICT_6X6_250", supersample=4, blur_px=0.7):
    """Markers with exact corners on a textured, unevenly lit background.

    Returns gray (H, W) uint8 and {id: (4, 2) float64 corners in OpenCV pixel centres}.
    Drawn at ``supersample`` times the resolution and area-averaged: a full-resolution pixel i
    covers supersampled pixels [k i, k i + k), so full-res coordinate u is k u + (k - 1) / 2.
    """
    w, h = size
    k = supersample
    background, gradient = _texture(rng, h, w)
    big = cv2.resize(background, (w * k, h * k), interpolation=cv2.INTER_LINEAR)
    truth = {}
    boxes = []
    sides = [rng.uniform(*large_px) for _ in range(n_large)] + [rng.uniform(*small_px) for _ in range(n_small)]
    for marker_id, side in enumerate(sides):
        for _attempt in range(200):
            centre = rng.uniform([side, side], [w - side, h - side])
            r = side * 0.75
            if all(np.hypot(*(centre - c)) > r + rr + 4 for c, rr in boxes):
                break
        else:
            continue
        boxes.append((centre, r))
        # A unit square (OpenCV corner order, y down, z away from the viewer) tilted about an
        # in-plane axis and spun, at the depth where its side is ``side`` px (f = 1000 px).
        tilt = np.deg2rad(rng.uniform(0, 55))
        axis = rng.uniform(0, np.pi)
        spin = rng.uniform(0, 2 * np.pi)
        unit = np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]])
        rotation = _rotation([0, 0, 1], spin) @ _rotation([np.cos(axis), np.sin(axis), 0], tilt)
        p = unit @ rotation.T
        depth = 1000.0 / side
        corners = centre + 1000.0 * p[:, :2] / (depth + p[:, 2:3])
        truth[marker_id] = corners
        cells = 8  # 6x6 + border
        px_per_cell = 20
        img = aruco.marker_image(dictionary, marker_id, cells * px_per_cell)
        quiet = px_per_cell  # one white cell around the marker
        img = cv2.copyMakeBorder(img, quiet, quiet, quiet, quiet, cv2.BORDER_CONSTANT, value=255)
        n = img.shape[0]
        src = np.array([[quiet - 0.5, quiet - 0.5], [n - quiet - 0.5, quiet - 0.5],
                        [n - quiet - 0.5, n - quiet - 0.5], [quiet - 0.5, n - quiet - 0.5]], np.float32)
        dst = (corners * k + (k - 1) / 2).astype(np.float32)
        hmat = cv2.getPerspectiveTransform(src, dst)
        warped = cv2.warpPerspective(img.astype(np.float32), hmat, (w * k, h * k), flags=cv2.INTER_LINEAR,
                                     borderValue=-1)
        mask = warped >= 0
        # Paper under the lamp: white is ~220, black ~30, times the lighting gradient.
        light = cv2.resize(gradient, (w * k, h * k), interpolation=cv2.INTER_LINEAR)
        big[mask] = (30 + warped[mask] / 255.0 * 190) * light[mask]
    small = cv2.resize(big, (w, h), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), blur_px)
    noise = rng.normal(0, 1, small.shape) * np.sqrt(4 + 0.03 * small)
    gray = np.clip(small + noise, 0, 255).astype(np.uint8)
    return gray, truth


# ----------------------------------------------------------------------------- measurement


def evaluate(candidates, dictionary, gray, expected, runs):
    """{name: (found, expected, corner errors (px), median ms)} for every candidate on one frame.

    The runs are interleaved (run 1 of every candidate, then run 2 ...) so that load from other
    processes on the machine affects every candidate alike.
    """
    size = (gray.shape[1], gray.shape[0])
    detectors = {}
    results = {}
    for name, settings in candidates.items():
        if callable(settings):
            settings = settings(size)
        detectors[name] = MarkerDetector(dictionary, settings)
        detections = detectors[name].detect(gray)  # warm-up (and builds the parameters for this size)
        found = {int(i): c.astype(np.float64) for i, c in zip(detections.ids, detections.corners_px)}
        hits = [i for i in expected if i in found]
        errors = [np.linalg.norm(found[i] - expected[i], axis=1) for i in hits if expected[i] is not None]
        results[name] = [len(hits), len(expected), np.concatenate(errors) if errors else np.zeros(0), []]
    for _ in range(runs):
        for name, detector in detectors.items():
            t0 = time.perf_counter()
            detector.detect(gray)
            results[name][3].append(time.perf_counter() - t0)
    return {name: (r[0], r[1], r[2], float(np.median(r[3]) * 1e3)) for name, r in results.items()}


def frames(quick):
    rng = np.random.default_rng(20261127)
    out = []
    photos = _real_photos() if DATA.is_dir() else []
    for name, gray, dictionary, corners in photos:
        out.append((f"{name} 640x480", gray, dictionary, corners))
        for size, scale in (((1280, 720), 1.0), ((1920, 1080), 1.0), ((1280, 720), 1.5), ((1920, 1080), 2.25)):
            canvas, to_canvas = _embed(gray, size, scale)
            moved = {i: (None if c is None else to_canvas(c)) for i, c in corners.items()}
            label = "embedded" if scale == 1.0 else f"x{scale:g}"
            out.append((f"{name} {label} {size[0]}x{size[1]}", canvas, dictionary, moved))
    for size in ((1280, 720), (1920, 1080)):
        for n_large in ((0,) if quick else (0, 4)):
            gray, truth = synthetic_frame(rng, size, n_large=n_large)
            label = "synthetic 20-40 px" + (" + 4 large" if n_large else "")
            out.append((f"{label} {size[0]}x{size[1]}", gray, "DICT_6X6_250", truth))
    return out


def blur_table(seed=31):
    """Markers found vs optical/motion blur (Gaussian sigma, px) for single and double windows."""
    rng = np.random.default_rng(seed)
    sets = {}
    for blur in (1.0, 1.25, 1.5, 2.0):
        sets[f"20-40 px, blur {blur:g}"] = [synthetic_frame(rng, (1280, 720), blur_px=blur) for _ in range(3)]
        sets[f"60-300 px, blur {blur:g}"] = [synthetic_frame(rng, (1280, 720), n_small=0, n_large=8,
                                                             large_px=(60, 300), blur_px=blur) for _ in range(3)]
    windows = [(5,), (7,), (9,), (5, 15), (3, 13, 23)]
    print("| frames (3 each, 1280x720) | " + " | ".join(f"windows {w}" for w in windows) + " |")
    print("|---" * (len(windows) + 1) + "|")
    for name, frames_ in sets.items():
        cells = []
        for w in windows:
            detector = MarkerDetector("DICT_6X6_250", DetectorSettings(threshold_windows_px=w))
            found = total = 0
            for gray, truth in frames_:
                ids = set(detector.detect(gray).ids.tolist())
                total += len(truth)
                found += len(ids & set(truth))
            cells.append(f"{found}/{total}")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="fewer frames, for a smoke test")
    parser.add_argument("--only", default=None, help="substring of candidate names to run")
    parser.add_argument("--blur", action="store_true", help="only the table of markers found vs blur")
    args = parser.parse_args(argv)
    if args.blur:
        blur_table()
        return
    print(f"# {platform.processor() or platform.machine()}, {cv2.getNumberOfCPUs()} CPUs, "
          f"OpenCV {cv2.__version__}, threads {cv2.getNumThreads()}, median of {args.runs} interleaved runs, "
          f"load average before: {os.getloadavg()[0]:.2f}")
    candidates = {k: v for k, v in CANDIDATES.items() if args.only is None or args.only in k}
    names = list(candidates)
    print("| frame | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for label, gray, dictionary, expected in frames(args.quick):
        results = evaluate(candidates, dictionary, gray, expected, args.runs)
        cells = []
        for name in names:
            found, total, err, ms = results[name]
            err_text = f", {err.mean():.2f}/{err.max():.2f} px" if len(err) else ""
            cells.append(f"{found}/{total}{err_text}, {ms:.1f} ms")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    print(f"# load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
