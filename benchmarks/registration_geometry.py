"""Benchmark of paired-point registration, TRE prediction and pivot calibration (run by hand).

    .venv/bin/python benchmarks/registration_geometry.py [--trials 1000] [--pivot-trials 200]

Prints Markdown tables for docs/benchmarks.md:
1. time per call (median of many calls, microseconds);
2. Monte Carlo check of Fitzpatrick, West and Maurer 1998 eq. 46: measured RMS TRE over seeded
   registrations with isotropic FLE 0.5 mm, divided by the prediction, per configuration and
   target, with the noise on the patient points ("to"), the CT points ("from") or both;
3. pivot calibration accuracy over seeded pivoting sequences (the motion of tests/test_pivot.py).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_pivot import TIP_TOOL, poses_from, stirring
from test_tre import CONFIGURATIONS, TARGETS, monte_carlo

from ar_guide.geometry.pivot import orientation_spread_deg, pivot_algebraic, pivot_sphere
from ar_guide.geometry.registration import paired_point_registration, rigid_register
from ar_guide.geometry.tre import expected_fre_mm, predicted_tre_mm

TARGET_NAMES = ["centroid", "near", "150 mm deep", "200 mm out", "oblique 160 mm"]


def median_us(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e6 * float(np.median(times))


def timings() -> None:
    rng = np.random.default_rng(0)
    print("| call | median us |\n|---|---|")
    for n in (4, 6, 10, 100):
        p = rng.uniform(-80, 80, (n, 3))
        q = p + rng.normal(0, 0.5, (n, 3)) + 100
        us = median_us(lambda p=p, q=q: rigid_register(p, q), 2000)
        print(f"| rigid_register, {n} points | {us:.0f} |")
    for n in (4, 6, 10):
        p = rng.uniform(-80, 80, (n, 3))
        q = p + rng.normal(0, 0.5, (n, 3)) + 100
        names = [f"F{i}" for i in range(n)]
        us = median_us(lambda names=names, p=p, q=q: paired_point_registration(names, p, q), 500)
        print(f"| paired_point_registration (with leave-one-out), {n} fiducials | {us:.0f} |")
    fid = rng.uniform(-80, 80, (6, 3))
    targets = rng.uniform(-200, 200, (1000, 3))
    us = median_us(lambda: predicted_tre_mm(fid, targets, 0.5), 500)
    print(f"| predicted_tre_mm, 6 fiducials, 1000 targets | {us:.0f} |")
    for n in (100, 1000):
        prng = np.random.default_rng(1)
        poses = poses_from(stirring(prng, n=n), sigma_t=0.2, sigma_r_deg=0.1, rng=prng)
        for fn in (orientation_spread_deg, pivot_algebraic, pivot_sphere):
            us = median_us(lambda fn=fn, poses=poses: fn(poses), 50)
            print(f"| {fn.__name__}, {n} poses | {us:.0f} |")


def tre_statistics(trials: int) -> None:
    print("\n| configuration | noise on | " + " | ".join(TARGET_NAMES) + " | FRE ratio |")
    print("|---|---|" + "---|" * (len(TARGET_NAMES) + 1))
    ratios = []
    for ci, (name, fid) in enumerate(CONFIGURATIONS.items()):
        predicted = predicted_tre_mm(fid, TARGETS, 0.5)
        print(f"| {name} (N={len(fid)}), predicted mm | | " + " | ".join(f"{p:.2f}" for p in predicted) + " | |")
        for si, side in enumerate(["to", "from", "both"]):
            fle_from, fle_to = {"to": (0.0, 0.5), "from": (0.5, 0.0), "both": (0.5 / np.sqrt(2),) * 2}[side]
            rng = np.random.default_rng(1000 + ci * 10 + si)     # the seeds of tests/test_tre.py
            measured, fre = monte_carlo(fid, TARGETS, fle_from, fle_to, trials, rng)
            r = measured / predicted
            ratios.extend(r)
            fre_ratio = fre / expected_fre_mm(0.5, len(fid))
            print(f"| | {side} | " + " | ".join(f"{x:.3f}" for x in r) + f" | {fre_ratio:.3f} |")
    print(f"\nmeasured / predicted over all: {min(ratios):.3f} - {max(ratios):.3f}")


def pivot_statistics(trials: int) -> None:
    shaft = TIP_TOOL / np.linalg.norm(TIP_TOOL)
    print("\n| noise (per axis) | method | tip error RMS / p95 / max mm | along shaft RMS | across RMS | pose RMS mm |")
    print("|---|---|---|---|---|---|")
    for sigma_t, sigma_r in ((0.2, 0.1), (0.2, 0.0), (0.0, 0.1), (0.1, 0.05)):
        errors = {"algebraic": [], "sphere": []}
        rms = {"algebraic": [], "sphere": []}
        for seed in range(trials):
            rng = np.random.default_rng(seed)
            poses = poses_from(stirring(rng), sigma_t=sigma_t, sigma_r_deg=sigma_r, rng=rng)
            for solve in (pivot_algebraic, pivot_sphere):
                res = solve(poses)
                errors[res.method].append(res.tip_tool - TIP_TOOL)
                rms[res.method].append(res.rms_mm)
        for method, e in errors.items():
            e = np.array(e)
            n = np.linalg.norm(e, axis=1)
            along = e @ shaft
            across = np.linalg.norm(e - along[:, None] * shaft, axis=1)
            print(f"| {sigma_t} mm, {sigma_r} deg | {method} | {np.sqrt(np.mean(n**2)):.3f} / "
                  f"{np.percentile(n, 95):.3f} / {n.max():.3f} | {np.sqrt(np.mean(along**2)):.3f} | "
                  f"{np.sqrt(np.mean(across**2)):.3f} | {np.median(rms[method]):.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--pivot-trials", type=int, default=200)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}\n")
    timings()
    t0 = time.perf_counter()
    tre_statistics(args.trials)
    print(f"({time.perf_counter() - t0:.1f} s for the Monte Carlo)")
    pivot_statistics(args.pivot_trials)


if __name__ == "__main__":
    main()
