"""Tracking a small planar tool (SciKit-Surgery's pointer) seen nearly face-on: how often is the wrong
branch of the planar ambiguity shown, under the ArUco start rule and under ar_guide's tool rule
(ar_guide.tracking.status, constants.ToolTracking)?

The protocol of tests/test_tools.py (its simulation is imported, so both run the same code): the
pointer (6 markers of 14.5 mm, one of them hidden in 6 of 7 trials, tip 100 mm from the plate's
centre) at 200-600 mm from the nominal camera of multipattern.avi (f 560 px, 640 x 480), tilted
0 to --max-tilt degrees from face-on, moving slowly (up to 20 deg/s and 30 mm/s) for 15 frames at
30 fps, Gaussian corner noise; optionally estimated with a wrong calibration (focal length 3 % off,
k1 0.05 off).  A frame "shows the flip" when the pose shown is nearer the exact other IPPE branch
than the truth.  Results: docs/benchmarks.md, "Registration: pivot and pointer".

    .venv/bin/python benchmarks/tool_tracking.py [--trials 1500]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_tools import NOMINAL, RULES, simulate  # noqa: E402

from ar_guide.camera import CameraModel  # noqa: E402

CONDITIONS = [  # (noise px, calibration error, largest tilt deg)
    (0.3, False, 40.0), (0.5, False, 40.0), (0.3, True, 40.0), (1.0, False, 40.0), (0.5, True, 70.0),
    (0.3, False, 12.0), (0.5, True, 12.0),
]


def wrong_calibration() -> CameraModel:
    k = NOMINAL.camera_matrix.copy()
    k[0, 0] *= 1.03
    k[1, 1] *= 1.03
    d = NOMINAL.distortion.copy()
    d[0] += 0.05
    return CameraModel(k, d, NOMINAL.image_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1500)
    args = parser.parse_args()
    print("| noise px | calibration | tilt deg | rule | trials tracked | OK frames | showing the flip | "
          "> 5 deg off | tip error p50 / p95 / max mm |")
    print("|---|---|---|---|---|---|---|---|---|")
    for seed, (sigma, wrong, tilt) in enumerate(CONDITIONS):
        start = time.perf_counter()
        stats = simulate(RULES, args.trials, seed=100 + seed, sigma_px=sigma, max_tilt_deg=tilt, frames=15,
                         estimator_camera=wrong_calibration() if wrong else NOMINAL)
        for rule in ("default", "tool"):
            s = stats[rule]
            tips = np.percentile(s["tip_errors"], [50, 95, 100]) if s["tip_errors"] else [np.nan] * 3
            print(f"| {sigma:g} | {'3 % off' if wrong else 'exact'} | 0-{tilt:g} | {rule} | {s['acquired']} | "
                  f"{s['ok']} | {s['flips']} | {s['off_5deg']} | {tips[0]:.2f} / {tips[1]:.2f} / {tips[2]:.2f} |")
        print(f"<!-- {time.perf_counter() - start:.0f} s; measured frames {stats['measured']} -->", file=sys.stderr)


if __name__ == "__main__":
    main()
