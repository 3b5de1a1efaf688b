"""Frame sources: videos (clean, corrupt, truncated, unreadable), image folders, real recordings."""

from __future__ import annotations

import wave
from pathlib import Path

import cv2
import numpy as np
import pytest

from ar_guide.errors import InputError
from ar_guide.io.sources import (CameraSource, Frame, ImageFolderSource, VideoFileSource,
                                 natural_key, open_source)
from ar_guide.io.writers import VideoWriter
from videotools import corrupt_packets, packets, time_base

W, H, N, FPS = 320, 240, 30, 30.0


def _frame_image(i: int) -> np.ndarray:
    """Frame i: a texture shifted by i px, brightness 40 + 5 i, and fresh sensor-like noise, so
    that every frame is distinct and its H.264 packet is kilobytes, as in a real recording."""
    rng = np.random.default_rng(11)
    texture = cv2.GaussianBlur(rng.integers(0, 255, (H, W), dtype=np.uint8), (0, 0), 1.5)
    texture = (texture.astype(np.float64) - texture.mean()) * 0.4
    noise = np.random.default_rng(100 + i).normal(0, 6, (H, W))
    img = np.clip(np.roll(texture, i, axis=1) + 40 + 5 * i + noise, 0, 255).astype(np.uint8)
    return np.dstack([img, img, img])


_ORIGINALS = [_frame_image(i).astype(np.int16) for i in range(N)]


def _which(image: np.ndarray) -> int:
    """Number of the original frame that a decoded image shows (nearest in mean abs difference)."""
    img = image.astype(np.int16)
    return int(np.argmin([np.abs(img - o).mean() for o in _ORIGINALS]))


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("videos")
    out = {}
    for ext in ("mp4", "avi", "mkv"):
        path = folder / f"clean.{ext}"
        with VideoWriter(path, FPS, (W, H)) as writer:
            for i in range(N):
                writer.write(_frame_image(i))
        out[ext] = path
    return out


def test_clean_videos_index_time_and_content(videos):
    for ext, path in videos.items():
        with VideoFileSource(path) as source:
            assert (source.width, source.height, source.fps) == (W, H, FPS)
            frames = list(source)
        assert [f.index for f in frames] == list(range(N)), ext
        # Timestamps are pts * time_base: MKV stores whole milliseconds.
        np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(N) / FPS,
                                   rtol=0, atol=time_base(path) / 2 + 1e-12)
        for f in frames:
            assert isinstance(f, Frame)
            assert f.image_bgr.shape == (H, W, 3) and f.image_bgr.dtype == np.uint8
            assert f.image_bgr.flags.c_contiguous
            assert _which(f.image_bgr) == f.index, ext
        assert source.skipped_frames == 0 and source.missing_frames == 0
        assert not source.ended_early
        assert source.frame_count in (N, N + 1), ext  # estimated from the duration for MKV


def test_iterating_twice_restarts(videos):
    source = VideoFileSource(videos["mp4"])
    first = [f.index for f in source]
    second = [f.index for f in source]
    assert first == second == list(range(N))
    source.close()


def test_corrupt_mjpeg_frame_is_skipped_and_counted(videos, tmp_path):
    # MJPEG frames are independent: damaging packet 12 loses exactly frame 12.
    bad = tmp_path / "bad.avi"
    corrupt_packets(videos["avi"], bad, [12])
    with VideoFileSource(bad) as source:
        frames = list(source)
    indices = [f.index for f in frames]
    assert indices == [i for i in range(N) if i != 12]
    assert source.skipped_frames == 1 and source.missing_frames == 1
    for f in frames:  # later frames keep their own number, not the position in the list
        assert _which(f.image_bgr) == f.index
    # Without strict decoding FFmpeg conceals the damage and returns a garbled frame 12.
    with VideoFileSource(bad, strict=False) as lax:
        assert [f.index for f in lax] == list(range(N))
        assert lax.skipped_frames == 0


@pytest.mark.parametrize("ext", ["mp4", "mkv"])
def test_corrupt_h264_frame_is_skipped_and_iteration_finishes(videos, tmp_path, ext):
    # 2 KB of noise over the start of a frame in the middle of the stream (decode order 15):
    # FFmpeg rejects the damaged slice (a frame referencing it may go too).  Damage deeper in
    # an H.264 frame is often NOT detected by FFmpeg: it conceals it and the frame, and those
    # predicted from it, come out smeared without any error (see VideoFileSource).
    bad = tmp_path / f"bad.{ext}"
    pts_damaged = packets(videos[ext])[15][0]
    corrupt_packets(videos[ext], bad, [15], where="start")
    with VideoFileSource(bad) as source:
        frames = list(source)
    indices = [f.index for f in frames]
    assert 1 <= source.skipped_frames <= 2
    assert len(frames) == N - source.missing_frames == N - source.skipped_frames
    assert indices == sorted(set(indices)) and indices[0] == 0 and indices[-1] == N - 1
    assert round(pts_damaged * time_base(videos[ext]) * FPS) not in indices
    # Frames after the damage carry their own position (timestamps, not a counter).
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.array(indices) / FPS, rtol=0,
                               atol=time_base(bad) / 2 + 1e-12)
    first_lost = min(set(range(N)) - set(indices))
    for f in frames:
        if f.index < first_lost:
            assert _which(f.image_bgr) == f.index


def test_damaged_mkv_block_header_ends_the_stream_cleanly(videos, tmp_path):
    # Noise over a SimpleBlock's header makes FFmpeg's Matroska demuxer lose the cluster and
    # stop: the source ends there, says so, and what came before is intact.
    data = bytearray(videos["mkv"].read_bytes())
    _pts, pos, _size = packets(videos["mkv"])[10]
    data[pos:pos + 2048] = np.random.default_rng(5).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    bad = tmp_path / "header.mkv"
    bad.write_bytes(bytes(data))
    with VideoFileSource(bad) as source:
        frames = list(source)
    assert 1 <= len(frames) < N - 5
    assert source.ended_early
    for f in frames:
        assert _which(f.image_bgr) == f.index


@pytest.mark.parametrize("ext", ["avi", "mkv"])
def test_truncated_file_ends_with_what_was_decodable(videos, tmp_path, ext):
    data = videos[ext].read_bytes()
    cut = tmp_path / f"cut.{ext}"
    cut.write_bytes(data[:int(len(data) * 0.6)])
    with VideoFileSource(cut) as source:
        frames = list(source)
    assert 5 < len(frames) < N
    assert [f.index for f in frames] == list(range(len(frames)))
    for f in frames:
        assert _which(f.image_bgr) == f.index
    assert source.ended_early


def test_truncated_mp4_is_an_input_error(videos, tmp_path):
    # MP4 keeps its index (moov) at the end: a cut file cannot be opened at all.
    data = videos["mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:len(data) // 2])
    with pytest.raises(InputError, match=r"cut.mp4: not a readable video \(.*\); an MP4/MOV "
                                         r"recording that was interrupted has no index"):
        VideoFileSource(cut)


def test_nothing_decodable(videos, tmp_path):
    bad = tmp_path / "dead.avi"
    corrupt_packets(videos["avi"], bad, list(range(N)), nbytes=10 ** 6)
    with pytest.raises(InputError, match=rf"dead.avi: no decodable video frames \({N} packets "
                                         r"could not be decoded\)"):
        VideoFileSource(bad)


def test_unreadable_inputs(tmp_path):
    with pytest.raises(InputError, match="nothere.mp4: video file not found"):
        VideoFileSource(tmp_path / "nothere.mp4")
    with pytest.raises(InputError, match="is a folder, not a video file"):
        VideoFileSource(tmp_path)
    text = tmp_path / "notes.avi"
    text.write_text("this is not a video\n" * 50)
    with pytest.raises(InputError, match=r"notes.avi: not a readable video"):
        VideoFileSource(text)
    audio = tmp_path / "beep.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(800, np.int16).tobytes())
    with pytest.raises(InputError, match="beep.wav: no video stream in this file"):
        VideoFileSource(audio)
    with pytest.raises(ValueError, match="strict decoding needs thread_type='SLICE'"):
        VideoFileSource(audio, thread_type="FRAME")


# ------------------------------------------------------------------------------------------
# Images

def _write_images(folder: Path, names: list[str], size=(64, 48)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(names):
        img = np.full((size[1], size[0], 3), 10 * (k + 1), np.uint8)
        assert cv2.imwrite(str(folder / name), img)


def test_image_folder_natural_order_and_timestamps(tmp_path):
    names = ["img10.png", "img2.png", "img1.png", "IMG3.JPG"]
    _write_images(tmp_path / "f", names)
    (tmp_path / "f" / "notes.txt").write_text("ignored")
    source = ImageFolderSource(tmp_path / "f", fps=10)
    assert [p.name for p in source.files] == ["img1.png", "img2.png", "IMG3.JPG", "img10.png"]
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert [f.timestamp_s for f in frames] == [0.0, 0.1, 0.2, 0.3]
    # Brightness 10 * (position in `names` + 1) identifies each file.
    assert [int(f.image_bgr[0, 0, 0]) for f in frames] == [30, 20, 40, 10]
    assert (source.width, source.height, source.frame_count) == (64, 48, 4)


def test_image_glob_unreadable_and_grey(tmp_path):
    _write_images(tmp_path, ["a1.png", "a2.png", "b1.png"])
    (tmp_path / "a3.png").write_bytes(b"not a png")
    cv2.imwrite(str(tmp_path / "a4.png"), np.full((48, 64), 77, np.uint8))  # grey
    source = open_source(str(tmp_path / "a*.png"))
    assert isinstance(source, ImageFolderSource)
    frames = list(source)
    assert [f.index for f in frames] == [0, 1, 3]  # a3 skipped, its index kept free
    assert source.skipped_frames == 1
    assert frames[-1].image_bgr.shape == (48, 64, 3) and int(frames[-1].image_bgr[0, 0, 2]) == 77


def test_image_errors(tmp_path):
    with pytest.raises(InputError, match="no images found"):
        ImageFolderSource(tmp_path)
    with pytest.raises(InputError, match="no such folder, file or pattern"):
        ImageFolderSource(tmp_path / "missing")
    _write_images(tmp_path / "s", ["1.png"], size=(64, 48))
    _write_images(tmp_path / "s2", ["2.png"], size=(32, 48))
    (tmp_path / "s2" / "2.png").rename(tmp_path / "s" / "2.png")
    source = ImageFolderSource(tmp_path / "s")
    with pytest.raises(InputError, match=r"2.png: image is 32x48 but the first one is 64x48"):
        list(source)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with pytest.raises(InputError, match="none of the images can be read"):
        ImageFolderSource(tmp_path / "bad")
    with pytest.raises(InputError, match="no such file or folder"):
        open_source(tmp_path / "none.mp4")


def test_natural_key():
    names = ["f10.png", "f9.png", "F1.png", "f1b.png", "g.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f1b.png", "f9.png", "f10.png", "g.png"]


def test_open_source_dispatch(videos, tmp_path):
    assert isinstance(open_source(videos["mkv"]), VideoFileSource)
    _write_images(tmp_path / "imgs", ["0.png"])
    assert isinstance(open_source(tmp_path / "imgs"), ImageFolderSource)
    single = open_source(tmp_path / "imgs" / "0.png", fps=5)
    assert isinstance(single, ImageFolderSource) and single.fps == 5.0


# ------------------------------------------------------------------------------------------
# Cameras (a video file opened as a stream URL stands in for a camera)

def test_camera_source_newest_frame_and_end(videos):
    import time

    # Unpaced: the file is read as fast as a camera with no frame limit delivers.
    with CameraSource(str(videos["avi"]), realtime=False) as camera:
        assert (camera.width, camera.height) == (W, H)
        frames = []
        for frame in camera:
            frames.append(frame)
            time.sleep(0.01)  # a pipeline slower than the stream: frames must be dropped, not queued
        indices = [f.index for f in frames]
        assert indices == sorted(set(indices)) and indices[0] == 0
        assert camera.dropped_frames == indices[-1] + 1 - len(frames)
        assert camera.dropped_frames > 0
        assert camera.disconnected  # the stream ended
        for f in frames:
            assert _which(f.image_bgr) == f.index
        times = [f.timestamp_s for f in frames]
        assert times == sorted(times)


def test_camera_that_cannot_open():
    with pytest.raises(InputError, match="'?99'?: cannot open this camera or stream"):
        CameraSource(99)


# ------------------------------------------------------------------------------------------
# Real recordings (../shared/data/video/sksurgery_aruco)

def test_multipattern_avi(shared_data):
    # An MPEG-4 AVI with 11 frame slots; slot 1 is an empty (0-byte) chunk, so 10 frames decode,
    # stamped 0, 2, 3 ... 10 frames of 1/30 s.  cv2.VideoCapture returns the same 10 images but
    # numbers them 0..9.
    path = shared_data / "video" / "sksurgery_aruco" / "multipattern.avi"
    with VideoFileSource(path) as source:
        frames = list(source)
    assert (source.width, source.height, source.fps, source.frame_count) == (640, 480, 30.0, 11)
    assert [f.index for f in frames] == [0, 2, 3, 4, 5, 6, 7, 8, 9, 10]
    np.testing.assert_allclose([f.timestamp_s for f in frames],
                               np.array([0, 2, 3, 4, 5, 6, 7, 8, 9, 10]) / 30.0, atol=1e-12)
    assert source.skipped_frames == 0 and source.missing_frames == 1 and not source.ended_early
    cap = cv2.VideoCapture(str(path))
    for f in frames:
        ok, img = cap.read()
        assert ok
        diff = np.abs(img.astype(np.int16) - f.image_bgr.astype(np.int16))
        assert diff.mean() < 1.0, f.index  # same decoder; colour conversion may round differently
    ok, _ = cap.read()
    assert not ok
    cap.release()


def test_output_avi(shared_data):
    path = shared_data / "video" / "sksurgery_aruco" / "output.avi"
    with VideoFileSource(path) as source:
        frames = list(source)
    assert (source.width, source.height, source.fps) == (640, 480, 10.0)
    assert [f.index for f in frames] == list(range(10))
    np.testing.assert_allclose([f.timestamp_s for f in frames], np.arange(10) / 10.0, atol=1e-12)
    assert source.skipped_frames == 0 and source.missing_frames == 0
