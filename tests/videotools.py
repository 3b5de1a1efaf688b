"""Helpers for tests that damage video files on purpose."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def packets(path: Path) -> list[tuple[int, int, int]]:
    """(pts, byte position, size) of each video packet."""
    import av

    with av.open(str(path)) as c:
        return [(p.pts, p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]


def time_base(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return float(c.streams.video[0].time_base)


def corrupt_packets(src: Path, dst: Path, which: list[int], nbytes: int = 2048, seed: int = 5,
                    where: str = "middle"):
    """Overwrite bytes of the given packets (in stream order) with noise: from a quarter of the
    payload ("middle") or from its first byte ("start": the slice header of an H.264 frame).
    In MKV, PyAV's packet position is that of the SimpleBlock's 4-byte header (track number,
    timecode, flags), so the payload starts 4 bytes later."""
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(seed)
    packets_ = packets(src)
    header = 4 if src.suffix == ".mkv" else 0
    for k in which:
        _pts, pos, size = packets_[k]
        start = pos + header + (size // 4 if where == "middle" else 0)
        n = min(nbytes, size // 2)
        data[start:start + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
