"""The synthetic phantom sequence: specification, generation, cache and files.

``ensure_sequence(spec)`` returns the folder of a generated sequence, generating it on first use
(deterministic for a spec) and reusing it afterwards.  The cache lives in ``$AR_GUIDE_CACHE``,
else ``$XDG_CACHE_HOME/ar_guide``, else ``~/.cache/ar_guide``; each sequence is a folder named
by a hash of its spec, the synthesis settings and :data:`GENERATOR_VERSION`.  A sequence is
written into a temporary sibling folder and renamed into place when complete, so an interrupted
generation never leaves a half sequence behind.

Files of a sequence: ``phantom.mp4`` (H.264, the camera's view, no overlay), ``scene.yaml`` (+
``meshes/*.ply``), ``camera.yaml`` (OpenCV FileStorage), ``ground_truth.csv`` (see
:mod:`ar_guide.synth.groundtruth`) and ``sequence.json`` (spec, seed, version, figures).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import numpy as np

from ar_guide.camera import save_camera
from ar_guide.constants import SynthSettings
from ar_guide.errors import InputError
from ar_guide.synth.groundtruth import GroundTruth, load_ground_truth, write_ground_truth
from ar_guide.synth.scenefile import write_scene
from ar_guide.synth.take import Take
from ar_guide.synth.trajectory import board_viewing_geometry

__all__ = ["SequenceSpec", "DEMO_SPEC", "TEST_SPEC", "SyntheticSequence", "GroundTruth", "GENERATOR_VERSION",
           "cache_root", "sequence_dir", "ensure_sequence", "generate_sequence", "load_ground_truth"]

#: Bump when the generator's output changes for the same spec (invalidates cached sequences).
GENERATOR_VERSION = 1

VIDEO_NAME = "phantom.mp4"
SCENE_NAME = "scene.yaml"
CAMERA_NAME = "camera.yaml"
TRUTH_NAME = "ground_truth.csv"
INFO_NAME = "sequence.json"
_REQUIRED = (VIDEO_NAME, SCENE_NAME, CAMERA_NAME, TRUTH_NAME, INFO_NAME)
#: Temporary folders of generations older than this are considered abandoned (s).
_STALE_TMP_S = 6 * 3600


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """Everything that shapes a generated sequence (hashed for the cache key).

    width, height : image size (px, even); fps : frame rate; duration_s : length of the take
    (the script is scaled to it, so shorter takes have the same content); seed : irregularities
    of the phantom, hand tremor, lighting drift, sensor noise; motion_blur_samples : sub-frame
    renders per frame at least (each with its own sub-pixel offset, so this also sets the
    antialiasing); fast motion adds more; crf : H.264 constant rate factor.
    """

    width: int = 1280
    height: int = 720
    fps: float = 30.0
    duration_s: float = 10.0
    seed: int = 7
    motion_blur_samples: int = 2
    crf: int = 21

    def __post_init__(self):
        if int(self.width) < 64 or int(self.height) < 64 or self.width % 2 or self.height % 2:
            raise InputError(f"width and height must be even and at least 64, got {self.width}x{self.height}")
        if not self.fps > 0 or not self.duration_s > 0:
            raise InputError(f"fps and duration_s must be positive, got {self.fps} and {self.duration_s}")
        if int(self.motion_blur_samples) < 1:
            raise InputError(f"motion_blur_samples must be at least 1, got {self.motion_blur_samples}")
        if not 0 <= int(self.crf) <= 51:
            raise InputError(f"crf must lie in 0..51, got {self.crf}")

    @property
    def frame_count(self) -> int:
        return int(round(self.duration_s * self.fps))

    def frame_times(self) -> np.ndarray:
        """(N,) mid-exposure time of each frame (s)."""
        return np.arange(self.frame_count) / float(self.fps)


DEMO_SPEC = SequenceSpec()
#: Small and fast, same content (the script is scaled to 2 s).
TEST_SPEC = SequenceSpec(width=640, height=360, fps=30.0, duration_s=2.0, seed=7, motion_blur_samples=2, crf=21)


@dataclasses.dataclass(frozen=True)
class SyntheticSequence:
    """Paths of a generated sequence's files."""

    root: Path
    video: Path
    scene: Path
    calibration: Path
    ground_truth: Path

    @property
    def info(self) -> Path:
        return self.root / INFO_NAME

    @staticmethod
    def at(root: Path) -> "SyntheticSequence":
        root = Path(root)
        return SyntheticSequence(root, root / VIDEO_NAME, root / SCENE_NAME, root / CAMERA_NAME, root / TRUTH_NAME)


def cache_root() -> Path:
    """$AR_GUIDE_CACHE, else $XDG_CACHE_HOME/ar_guide, else ~/.cache/ar_guide."""
    explicit = os.environ.get("AR_GUIDE_CACHE", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    if xdg:
        return Path(xdg).expanduser() / "ar_guide"
    return Path.home() / ".cache" / "ar_guide"


def cache_key(spec: SequenceSpec, settings: SynthSettings = SynthSettings()) -> str:
    """16 hex digits of SHA-256 over the spec, the settings and the generator version."""
    payload = json.dumps({"version": GENERATOR_VERSION, "spec": dataclasses.asdict(spec),
                          "settings": dataclasses.asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def sequence_dir(spec: SequenceSpec, settings: SynthSettings = SynthSettings()) -> Path:
    """Where ``spec``'s sequence lives in the cache."""
    return cache_root() / "synth" / f"phantom-{spec.width}x{spec.height}-{cache_key(spec, settings)}"


def _complete(root: Path) -> bool:
    return root.is_dir() and all((root / name).is_file() for name in _REQUIRED)


def ensure_sequence(spec: SequenceSpec = DEMO_SPEC, progress: bool = True,
                    settings: SynthSettings = SynthSettings()) -> SyntheticSequence:
    """The sequence of ``spec``: reused from the cache, or generated (tqdm bar on stderr)."""
    root = sequence_dir(spec, settings)
    if _complete(root):
        return SyntheticSequence.at(root)
    parent = root.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the cache folder ({exc.strerror}); set AR_GUIDE_CACHE to a "
                         "writable folder", path=parent) from None
    _remove_stale_tmp(parent)
    if root.exists():  # incomplete (files removed by hand): start again
        shutil.rmtree(root, ignore_errors=True)
    tmp = parent / f".tmp-{root.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        generate_sequence(tmp, spec, progress=progress, settings=settings)
        try:
            os.rename(tmp, root)
        except OSError:
            if not _complete(root):  # not a concurrent generation that finished first
                raise
    except OSError as exc:
        raise InputError(f"cannot write the synthetic sequence ({exc.strerror or exc})", path=parent) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return SyntheticSequence.at(root)


def _remove_stale_tmp(parent: Path) -> None:
    now = time.time()
    for entry in parent.glob(".tmp-*"):
        try:
            if now - entry.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:
            pass


def generate_sequence(folder: Path, spec: SequenceSpec, progress: bool = True,
                      settings: SynthSettings = SynthSettings()) -> SyntheticSequence:
    """Write all files of ``spec``'s sequence into ``folder`` (which must exist)."""
    from tqdm import tqdm

    from ar_guide.io.writers import VideoWriter

    started = time.perf_counter()
    folder = Path(folder)
    take = Take(spec.width, spec.height, spec.duration_s, spec.seed, settings)
    write_scene(folder, take.phantom, note=f"generator version {GENERATOR_VERSION}, seed {spec.seed}")
    save_camera(folder / CAMERA_NAME, take.camera)
    times = spec.frame_times()
    n = len(times)
    poses = np.empty((n, 4, 4))
    markers = np.zeros(n, np.int64)
    corners = np.zeros(n, np.int64)
    covering = np.zeros(n, bool)
    samples = np.zeros(n, np.int64)
    bar = tqdm(total=n, desc="ar_guide: generating the synthetic phantom sequence", unit="frame",
               file=sys.stderr, disable=not progress, leave=False)
    # Developing and encoding frame i (numpy/OpenCV/x264 release the GIL) overlaps with
    # rendering frame i + 1 (llvmpipe).  The worker never outlives the writer.
    with take, VideoWriter(folder / VIDEO_NAME, spec.fps, (spec.width, spec.height), crf=spec.crf) as video:
        def finish(image, t, index):
            rng = np.random.default_rng([spec.seed, 606, index])
            video.write(take.finish(image, t, rng))

        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        pending = None
        try:
            for i, t in enumerate(times):
                truth = take.truth(t)
                poses[i] = truth.camera_from_reference
                markers[i] = truth.visibility.visible_markers
                corners[i] = truth.visibility.visible_corners
                covering[i] = truth.visibility.hand_covering
                samples[i], level = take.exposure_plan(t, spec.motion_blur_samples)
                image = take.distort(take.render_linear(t, int(samples[i]), level=level), level)
                if pending is not None:
                    pending.result()
                pending = pool.submit(finish, image, float(t), i)
                bar.update(1)
            if pending is not None:
                pending.result()
        finally:
            pool.shutdown(wait=True)
            bar.close()
    truth = GroundTruth(times, poses, markers, corners, covering)
    write_ground_truth(folder / TRUTH_NAME, truth)
    angles, distances = zip(*(board_viewing_geometry(p, take.phantom.board_size_mm) for p in poses))
    info = {
        "generator": "ar_guide.synth",
        "generator_version": GENERATOR_VERSION,
        "cache_key": cache_key(spec, settings),
        "seed": spec.seed,
        "spec": dataclasses.asdict(spec),
        "settings": dataclasses.asdict(settings),
        "frames": n,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "generation_s": round(time.perf_counter() - started, 2),
        "summary": {
            "board_out_of_view_frames": int(np.sum(markers == 0)),
            "hand_covering_frames": int(np.sum(covering)),
            "view_angle_deg": [round(float(min(angles)), 2), round(float(max(angles)), 2)],
            "board_distance_mm": [round(float(min(distances)), 1), round(float(max(distances)), 1)],
            "sub_frames": int(samples.sum()),
        },
    }
    (folder / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")
    return SyntheticSequence.at(folder)
