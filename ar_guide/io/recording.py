"""A live session's recording: the folder format, and reading it back (``ar-guide play DIR``).

A recording is a folder written by :class:`ar_guide.io.recorder.Recorder`::

    recording.json     what, when, camera, scene, calibration, versions; written at the start
                       ("state": "recording") and rewritten at the end ("closed", counts, error)
    frames.csv         one row per frame the live loop handed over, flushed at once:
                       frame,timestamp_s,capture_monotonic_s,capture_unix_s,status,segment,pts_ms
                       status "recorded" (in the videos) or "dropped" (the writer was behind;
                       tracking went on, the pose rows are there, the images are not)
    poses.csv          the pose log (ar_guide.io.poselog) of every frame, flushed at once
    segments.csv       one row per finished video segment:
                       segment,first_frame,last_frame,frames,first_timestamp_s,last_timestamp_s,raw_bytes,overlay_bytes
    raw/seg_00000.mkv  the camera's frames, H.264 in Matroska, cut every RecorderSettings.segment_s
    overlay/seg_00000.mkv   the same frames with the overlay, for review

Every finished segment is a complete video file with its own index; the one being written when
the program died is readable up to its last flushed cluster (RecorderSettings.cluster_ms).
Video timestamps are milliseconds from the segment's first frame (``pts_ms``, also in
frames.csv), so that each decoded picture finds its row by (segment, pts_ms), and through it its
frame number and original timestamp, even when frames were dropped or a segment is damaged.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Iterator

from ar_guide.errors import InputError
from ar_guide.io.sources import Frame, VideoFileSource

FORMAT = "ar_guide recording"
FORMAT_VERSION = 1
RECORDING_JSON = "recording.json"
FRAMES_CSV = "frames.csv"
POSES_CSV = "poses.csv"
SEGMENTS_CSV = "segments.csv"
RAW_DIR = "raw"
OVERLAY_DIR = "overlay"
FRAME_COLUMNS = ("frame", "timestamp_s", "capture_monotonic_s", "capture_unix_s", "status", "segment",
                 "pts_ms")
SEGMENT_COLUMNS = ("segment", "first_frame", "last_frame", "frames", "first_timestamp_s", "last_timestamp_s",
                   "raw_bytes", "overlay_bytes")
RECORDED = "recorded"
DROPPED = "dropped"
STREAMS = (RAW_DIR, OVERLAY_DIR)


def segment_name(number: int) -> str:
    """File name of video segment ``number`` (0-based): seg_00000.mkv."""
    return f"seg_{int(number):05d}.mkv"


@dataclasses.dataclass(frozen=True)
class RecordedFrame:
    """One row of frames.csv.

    frame : the live loop's frame index; timestamp_s : its timestamp (s, the live session's clock)
    capture_monotonic_s : time.monotonic() of the grab; capture_unix_s : the same as wall-clock
        time (s since 1970, UTC)
    status : "recorded" or "dropped"; segment, pts_ms : where the images are (None if dropped)
    """

    frame: int
    timestamp_s: float
    capture_monotonic_s: float
    capture_unix_s: float
    status: str
    segment: int | None
    pts_ms: int | None


@dataclasses.dataclass(frozen=True, eq=False)
class RecordingInfo:
    """What :func:`open_recording` found in a recording folder.

    metadata : recording.json as a dict
    fps : the camera's nominal frame rate (frames themselves carry their own timestamps)
    size : (width, height) px
    frames : the complete rows of frames.csv (a partial last line is ignored)
    raw_segments, overlay_segments : every segment file present, in order (the last one may be
        cut off)
    complete_segments : how many segments were finished (listed in segments.csv)
    closed : the recorder closed the recording (False after a crash or kill)
    error : the write error that stopped the recording, or None
    """

    folder: Path
    metadata: dict
    fps: float
    size: tuple[int, int]
    frames: tuple[RecordedFrame, ...]
    raw_segments: tuple[Path, ...]
    overlay_segments: tuple[Path, ...]
    complete_segments: int
    closed: bool
    error: str | None

    @property
    def poses_path(self) -> Path:
        return self.folder / POSES_CSV

    @property
    def frames_recorded(self) -> int:
        return sum(1 for f in self.frames if f.status == RECORDED)

    @property
    def frames_dropped(self) -> int:
        return sum(1 for f in self.frames if f.status == DROPPED)

    def summary(self) -> dict:
        """For reports: where, how complete, how many frames."""
        return {"folder": str(self.folder), "closed": self.closed, "error": self.error,
                "frames_recorded": self.frames_recorded, "frames_dropped": self.frames_dropped,
                "segments": len(self.raw_segments), "complete_segments": self.complete_segments,
                "started_utc": self.metadata.get("started_utc")}


def is_recording(path: str | os.PathLike) -> bool:
    """True for a folder with a recording.json (what play takes instead of a video file)."""
    return (Path(path) / RECORDING_JSON).is_file()


def open_recording(folder: str | os.PathLike) -> RecordingInfo:
    """Reads a recording folder's description; InputError if it is not one or is unreadable."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("no such recording folder", path=folder)
    meta_path = folder / RECORDING_JSON
    if not meta_path.is_file():
        raise InputError(f"not a recording: no {RECORDING_JSON} (play takes a video file or a folder "
                         "written by ar-guide live --record)", path=folder)
    try:
        metadata = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"cannot read the recording's description: {exc}", path=meta_path) from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise InputError(f"not a recording description (expected \"format\": \"{FORMAT}\")", path=meta_path,
                         key="format")
    version = metadata.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"recording format version {version!r} is not supported (this ar_guide reads up to "
                         f"{FORMAT_VERSION})", path=meta_path, key="format_version")
    fps = metadata.get("fps")
    size = metadata.get("size")
    if not (isinstance(fps, (int, float)) and fps > 0):
        raise InputError(f"expected a positive frame rate, got {fps!r}", path=meta_path, key="fps")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise InputError(f"expected [width, height], got {size!r}", path=meta_path, key="size")
    frames = read_frames_csv(folder / FRAMES_CSV)
    segments = {stream: _segment_files(folder / stream) for stream in STREAMS}
    if not segments[RAW_DIR] and any(f.status == RECORDED for f in frames):
        raise InputError(f"the recording lists recorded frames but its {RAW_DIR}/ folder holds no video segment",
                         path=folder)
    return RecordingInfo(folder=folder, metadata=metadata, fps=float(fps), size=(size[0], size[1]),
                         frames=tuple(frames), raw_segments=tuple(segments[RAW_DIR]),
                         overlay_segments=tuple(segments[OVERLAY_DIR]),
                         complete_segments=_count_complete_segments(folder / SEGMENTS_CSV),
                         closed=metadata.get("state") == "closed", error=metadata.get("error"))


def _segment_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith("seg_") and p.suffix == ".mkv")


def _complete_lines(path: Path, what: str) -> list[str]:
    """Lines of a CSV written row by row; a last line without its newline (cut off) is left out."""
    if not path.is_file():
        raise InputError(f"{what} not found: the recording is incomplete", path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what}: {exc}", path=path) from None
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines = lines[:-1]
    return lines


def read_frames_csv(path: str | os.PathLike) -> list[RecordedFrame]:
    """The rows of a recording's frames.csv; InputError naming the line on malformed content."""
    path = Path(path)
    rows = list(csv.reader(_complete_lines(path, "frames.csv")))
    if not rows or tuple(h.strip() for h in rows[0]) != FRAME_COLUMNS:
        raise InputError(f"not a recording's frames.csv: expected the header {','.join(FRAME_COLUMNS)}", path=path)
    frames = []
    for line_no, values in enumerate(rows[1:], start=2):
        if len(values) != len(FRAME_COLUMNS):
            raise InputError(f"line {line_no}: {len(values)} fields, expected {len(FRAME_COLUMNS)}", path=path)
        try:
            frame = int(values[0])
            numbers = [float(v) for v in values[1:4]]
            segment = int(values[5]) if values[5] else None
            pts = int(values[6]) if values[6] else None
        except ValueError:
            raise InputError(f"line {line_no}: expected numbers, got {','.join(values)!r}", path=path) from None
        status = values[4]
        if status not in (RECORDED, DROPPED) or not all(math.isfinite(v) for v in numbers) or \
                (status == RECORDED) != (segment is not None and pts is not None):
            raise InputError(f"line {line_no}: inconsistent row {','.join(values)!r}", path=path)
        frames.append(RecordedFrame(frame, *numbers, status, segment, pts))
    return frames


def _count_complete_segments(path: Path) -> int:
    if not path.is_file():
        return 0
    return max(0, len(_complete_lines(path, "segments.csv")) - 1)


class RecordingSource:
    """The frames of a recording's video, all segments in order as one stream, each with its
    original frame number and timestamp (from frames.csv).

    stream : "raw" (the camera's frames, default) or "overlay"
    width, height, fps : the recording's; frame_count : frames recorded
    skipped_frames : pictures the decoder rejected (corrupt); missing_frames : frames listed as
        recorded that no segment delivered (cut off by a crash, damaged); unreadable_segments :
        segment files with no decodable frame at all (e.g. empty when the program died);
        ended_early : True if any recorded frame is missing
    """

    def __init__(self, recording: RecordingInfo | str | os.PathLike, stream: str = RAW_DIR):
        info = recording if isinstance(recording, RecordingInfo) else open_recording(recording)
        if stream not in STREAMS:
            raise ValueError(f"stream must be one of {STREAMS}, got {stream!r}")
        self.info = info
        self.stream = stream
        self.segments = info.raw_segments if stream == RAW_DIR else info.overlay_segments
        self.width, self.height = info.size
        self.fps = info.fps
        self.frame_count = info.frames_recorded
        self._rows = {}
        self._origins_s = {}   # per segment: the session time of its video time 0
        for row in info.frames:
            if row.status == RECORDED:
                self._rows[(row.segment, row.pts_ms)] = row
                self._origins_s.setdefault(row.segment, row.timestamp_s - row.pts_ms / 1000.0)
        self._current: VideoFileSource | None = None
        self._reset()

    def _reset(self) -> None:
        self.skipped_frames = 0
        self.missing_frames = 0
        self.ended_early = False
        self.unreadable_segments: list[Path] = []

    def __iter__(self) -> Iterator[Frame]:
        self._reset()
        delivered = 0
        last_index = -1
        for path in self.segments:
            number = _segment_number(path)
            try:
                self._current = VideoFileSource(path)
            except InputError:
                self.unreadable_segments.append(path)
                continue
            try:
                for picture in self._current:
                    pts = int(round(picture.timestamp_s * 1000.0))
                    row = self._rows.get((number, pts))
                    if row is not None:
                        index, timestamp = row.frame, row.timestamp_s
                    else:  # a picture without its row: cannot happen with rows written first; be safe
                        index, timestamp = last_index + 1, self._origins_s.get(number, 0.0) + pts / 1000.0
                    if index <= last_index:
                        continue
                    last_index = index
                    delivered += 1
                    yield Frame(index, timestamp, picture.image_bgr)
            finally:
                self.skipped_frames += self._current.skipped_frames
                self._current.close()
                self._current = None
        self.missing_frames = max(0, self.frame_count - delivered)
        self.ended_early = self.missing_frames > 0

    def close(self) -> None:
        if self._current is not None:
            self._current.close()
            self._current = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return (f"RecordingSource({str(self.info.folder)!r}, {self.stream}, {len(self.segments)} segments, "
                f"{self.frame_count} frames)")


def _segment_number(path: Path) -> int | None:
    try:
        return int(path.stem.split("_", 1)[1])
    except (IndexError, ValueError):
        return None
