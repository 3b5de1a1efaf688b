"""Cost and crash safety of the live recording (ar_guide.io.recorder) at 1280x720.

    .venv/bin/python benchmarks/recorder.py [--seconds 10] [--kills 5] [--noise 3]

Frames: the demo's synthetic phantom (1280x720, from the cache; generated if absent) with
camera-like Gaussian noise (sigma --noise grey levels) added, as a real sensor adds; overlay =
the frame with a drawn rectangle.  Measures:

- the live loop's cost of Recorder.write (copying two images and queueing them);
- the writer's throughput when fed as fast as it can take frames (no drops allowed);
- recording in real time at 30 fps: CPU used (process CPU time over wall time, minus the same
  loop without recording), frames dropped, bitrate of the raw and overlay videos;
- segment overhead: the same frames as 1 s segments against one file (bytes, time);
- kill -9 after a random 2-4 s: what replays (RecordingSource) against what the loop had
  handed over (seconds lost), and whether every finished segment decodes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from ar_guide.constants import RecorderSettings
from ar_guide.io.recorder import Recorder, _VideoSegmentFile
from ar_guide.io.recording import RecordingSource, open_recording, read_frames_csv, segment_name
from ar_guide.io.report import summarize_ms
from ar_guide.io.sources import Frame, VideoFileSource

SIZE = (1280, 720)
FPS = 30.0


def load_frames(count: int, noise: float) -> list[np.ndarray]:
    from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence

    sequence = ensure_sequence(DEMO_SPEC, progress=False)
    rng = np.random.default_rng(0)
    frames = []
    with VideoFileSource(sequence.video) as video:
        for frame in video:
            image = frame.image_bgr.astype(np.float32)
            if noise:
                image += rng.normal(0, noise, image.shape).astype(np.float32)
            frames.append(np.clip(image, 0, 255).astype(np.uint8))
            if len(frames) == count:
                break
    return frames


def overlay_of(image: np.ndarray) -> np.ndarray:
    import cv2

    out = image.copy()
    cv2.rectangle(out, (400, 200), (880, 520), (0, 255, 255), 3)
    cv2.putText(out, "overlay", (420, 250), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (0, 255, 0), 2)
    return out


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*.mkv"))


def run_realtime(folder: Path | None, frames, overlays, seconds: float, settings: RecorderSettings) -> dict:
    """The live loop's recording part at 30 fps: returns CPU share, write() cost, drops."""
    recorder = Recorder(folder, FPS, SIZE, ["reference"], settings=settings) if folder else None
    n = int(seconds * FPS)
    write_ms = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    t0 = time.monotonic()
    for k in range(n):
        delay = t0 + k / FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        raw = frames[k % len(frames)]
        a = time.perf_counter()
        if recorder is not None:
            recorder.write(Frame(k, k / FPS, raw), time.monotonic(), raw, overlays[k % len(frames)], {})
        else:
            raw.copy(), overlays[k % len(frames)].copy()   # what a loop without a recorder copies anyway
        write_ms.append((time.perf_counter() - a) * 1e3)
    if recorder is not None:
        recorder.close()
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    out = {"frames": n, "wall_s": wall, "cpu_cores": cpu / wall, "write_call_ms": summarize_ms(write_ms)}
    if recorder is not None:
        out.update(frames_written=recorder.frames_written, frames_dropped=recorder.frames_dropped,
                   error=recorder.error,
                   raw_mbit_s=folder_bytes(folder / "raw") * 8 / 1e6 / (n / FPS),
                   overlay_mbit_s=folder_bytes(folder / "overlay") * 8 / 1e6 / (n / FPS))
    return out


def writer_throughput(folder: Path, frames, overlays, count: int) -> dict:
    settings = RecorderSettings(max_queue_frames=count + 1)
    recorder = Recorder(folder, FPS, SIZE, ["reference"], settings=settings)
    start = time.perf_counter()
    for k in range(count):
        recorder.write(Frame(k, k / FPS, frames[k % len(frames)]), time.monotonic(), frames[k % len(frames)],
                       overlays[k % len(frames)], {})
    recorder.close()
    wall = time.perf_counter() - start
    return {"frames": count, "ms_per_frame": wall / count * 1e3, "fps": count / wall,
            "dropped": recorder.frames_dropped}


def segment_overhead(folder: Path, frames, count: int) -> dict:
    settings = RecorderSettings()
    folder.mkdir(parents=True)
    one = folder / "one.mkv"
    start = time.perf_counter()
    video = _VideoSegmentFile(one, FPS, SIZE, settings.raw_crf, settings)
    for k in range(count):
        video.encode(frames[k % len(frames)], int(round(k / FPS * 1000)))
    one_bytes = video.close()
    one_s = time.perf_counter() - start
    seg_dir = folder / "segments"
    seg_dir.mkdir()
    per_segment = int(FPS * settings.segment_s)
    open_close_ms = []
    total = 0
    start = time.perf_counter()
    for s in range(0, count, per_segment):
        a = time.perf_counter()
        video = _VideoSegmentFile(seg_dir / segment_name(s // per_segment), FPS, SIZE, settings.raw_crf, settings)
        open_close_ms.append((time.perf_counter() - a) * 1e3)
        for k in range(s, min(count, s + per_segment)):
            video.encode(frames[k % len(frames)], int(round((k - s) / FPS * 1000)))
        a = time.perf_counter()
        total += video.close()
        open_close_ms[-1] += (time.perf_counter() - a) * 1e3
    seg_s = time.perf_counter() - start
    return {"frames": count, "one_file_bytes": one_bytes, "segments_bytes": total,
            "bytes_overhead_percent": 100.0 * (total - one_bytes) / one_bytes,
            "one_file_s": one_s, "segments_s": seg_s, "time_overhead_percent": 100.0 * (seg_s - one_s) / one_s,
            "segment_open_close_ms": summarize_ms(open_close_ms)}


def child(folder: str, noise: float) -> None:
    frames = load_frames(60, noise)
    overlays = [overlay_of(f) for f in frames]
    recorder = Recorder(folder, FPS, SIZE, ["reference"])
    t0 = time.monotonic()
    k = 0
    while True:
        delay = t0 + k / FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        recorder.write(Frame(k, k / FPS, frames[k % len(frames)]), time.monotonic(), frames[k % len(frames)],
                       overlays[k % len(frames)], {})
        print(f"frame {k} {k / FPS:.6f}", flush=True)
        k += 1


def kill_trial(folder: Path, at_s: float, noise: float) -> dict:
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(folder), "--noise", str(noise)],
                            stdout=subprocess.PIPE, text=True)
    last = [None]
    reached = threading.Event()

    def read():
        for line in proc.stdout:
            if line.startswith("frame "):
                last[0] = float(line.split()[2])
                if last[0] >= at_s:
                    reached.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reached.wait(120)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    reader.join(5)
    info = open_recording(folder)
    finished = (folder / "segments.csv").read_text().splitlines()[1:]
    ok_segments = 0
    rows = read_frames_csv(folder / "frames.csv")
    for line in finished:
        number, count = int(line.split(",")[0]), int(line.split(",")[3])
        with VideoFileSource(folder / "raw" / segment_name(number)) as video:
            ok_segments += len(list(video)) == count
    with RecordingSource(info) as source:
        replayed = [f.timestamp_s for f in source]
    return {"killed_after_s": last[0], "last_replayed_s": replayed[-1] if replayed else None,
            "lost_s": last[0] - (replayed[-1] if replayed else 0.0),
            "rows_lost_s": last[0] - rows[-1].timestamp_s if rows else None,
            "finished_segments": len(finished), "finished_segments_decoding": ok_segments,
            "frames_dropped_by_writer": sum(r.status == "dropped" for r in rows)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--noise", type=float, default=3.0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.noise)
        return 0
    frames = load_frames(90, args.noise)
    overlays = [overlay_of(f) for f in frames]
    work = Path(tempfile.mkdtemp(prefix="ar_guide_recbench_"))
    results = {"machine": {"cpus": os.cpu_count()}, "size": list(SIZE), "fps": FPS, "noise_sigma": args.noise}
    try:
        results["baseline_no_recording"] = run_realtime(None, frames, overlays, args.seconds, RecorderSettings())
        results["realtime_30fps"] = run_realtime(work / "rt", frames, overlays, args.seconds, RecorderSettings())
        results["recording_cpu_cores"] = (results["realtime_30fps"]["cpu_cores"]
                                          - results["baseline_no_recording"]["cpu_cores"])
        results["writer_throughput"] = writer_throughput(work / "tp", frames, overlays, 150)
        results["segments"] = segment_overhead(work / "seg_probe", frames, 300)
        rng = np.random.default_rng(1)
        trials = []
        for k in range(args.kills):
            trials.append(kill_trial(work / f"kill{k}", float(rng.uniform(2.0, 4.0)), args.noise))
        results["kill_9"] = {"trials": trials,
                             "lost_s": summarize_ms([t["lost_s"] for t in trials])}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
