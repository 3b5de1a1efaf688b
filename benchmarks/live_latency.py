"""Benchmark of ``ar-guide live``: capture-to-display latency and frame rate (not a test: run it by hand).

    .venv/bin/python benchmarks/live_latency.py [--seconds 9] [--runs 1] [--json OUT.json]

The camera is the demo sequence's video (``ensure_sequence(DEMO_SPEC)``: 1280x720, 30 fps, 10 s, the
demo scene), which ``live`` paces in real time as a camera would deliver it.  Each configuration runs
``ar-guide live`` in its own process for ``--seconds`` (the file's end is left out) and reads the
run report: latency from the grab (right after ``grab()``, before decoding) to just after the window
update (median, p95), frames shown per second, frames skipped (newest frame wins), and the pipeline's
own time per frame.  Configurations: headless (``--no-window``), the window on a virtual display
(Xvfb, started here), and both with recording on (``--record``).  Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence


def start_xvfb() -> tuple[str, subprocess.Popen] | None:
    if not shutil.which("Xvfb"):
        return None
    for number in range(150, 200):
        if not Path(f"/tmp/.X11-unix/X{number}").exists() and not Path(f"/tmp/.X{number}-lock").exists():
            break
    proc = subprocess.Popen(["Xvfb", f":{number}", "-screen", "0", "1920x1080x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while not Path(f"/tmp/.X11-unix/X{number}").exists():
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            return None
        time.sleep(0.05)
    return f":{number}", proc


def run_live(sequence, seconds: float, window_display: str | None, record: bool, work: Path) -> dict:
    report = work / f"report-{time.monotonic_ns()}.json"
    cmd = [sys.executable, "-m", "ar_guide", "live", "--camera", str(sequence.video), "--scene", str(sequence.scene),
           "--calibration", str(sequence.calibration), "--max-seconds", str(seconds), "--report", str(report)]
    env = dict(os.environ)
    if window_display is None:
        cmd.append("--no-window")
        env.pop("DISPLAY", None)
    else:
        env["DISPLAY"] = window_display
    if record:
        cmd += ["--record", str(work / f"rec-{time.monotonic_ns()}")]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 120)
    if result.returncode != 0:
        raise SystemExit(f"live failed ({result.returncode}): {result.stderr.strip()}")
    return json.loads(report.read_text())


def row(name: str, report: dict) -> dict:
    lat = report["latency_ms"]
    total = report["timings_ms"]["total"]
    rec = report["recordings"][0] if report["recordings"] else None
    return {"configuration": name, "latency_median_ms": lat["median"], "latency_p95_ms": lat["p95"],
            "latency_max_ms": lat["max"], "fps": report["fps"], "frames": report["frames"],
            "skipped": report["camera"]["skipped_frames"], "process_median_ms": total["median"],
            "process_p95_ms": total["p95"], "tracked_fraction": report["tracked_fraction"],
            "recorded_frames": None if rec is None else rec["frames_written"],
            "recording_error": None if rec is None else rec["error"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=9.0)
    parser.add_argument("--runs", type=int, default=1, help="repeat each configuration")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()
    sequence = ensure_sequence(DEMO_SPEC)
    xvfb = start_xvfb()
    configurations = [("headless", None, False), ("headless + recording", None, True)]
    if xvfb is not None:
        configurations += [("window (Xvfb)", xvfb[0], False), ("window (Xvfb) + recording", xvfb[0], True)]
    else:
        print("Xvfb not found: window configurations left out", file=sys.stderr)
    rows = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.runs):
                for name, display, record in configurations:
                    rows.append(row(name, run_live(sequence, args.seconds, display, record, Path(tmp))))
                    print(f"done: {name}", file=sys.stderr)
    finally:
        if xvfb is not None:
            xvfb[1].terminate()
            xvfb[1].wait(timeout=10)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    print(f"camera: {sequence.video.name} 1280x720 30 fps paced in real time, {args.seconds:g} s per run\n")
    print("| configuration | latency median / p95 / max ms | fps | frames / skipped | process median / p95 ms | "
          "tracked | recorded |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        rec = "-" if r["recorded_frames"] is None else f"{r['recorded_frames']}" + (
            f" (error: {r['recording_error']})" if r["recording_error"] else "")
        print(f"| {r['configuration']} | {r['latency_median_ms']:.1f} / {r['latency_p95_ms']:.1f} / "
              f"{r['latency_max_ms']:.1f} | {r['fps']:.1f} | {r['frames']} / {r['skipped']} | "
              f"{r['process_median_ms']:.1f} / {r['process_p95_ms']:.1f} | {r['tracked_fraction'] * 100:.0f}% | {rec} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
