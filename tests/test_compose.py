"""Compositing a premultiplied RGBA overlay onto a BGR frame: exact values, styles."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ar_guide.render.compose import compose_premultiplied, hatch_pattern, overlay_bbox


def test_blend_is_exact_for_every_frame_value_and_alpha():
    """out = round(frame * (255 - a) / 255) + rgb for all 256 x 256 (frame, a) pairs."""
    f, a = np.meshgrid(np.arange(256), np.arange(256))
    frame = np.repeat(f[:, :, None], 3, axis=2).astype(np.uint8)
    overlay = np.zeros((256, 256, 4), np.uint8)
    overlay[..., 3] = a
    overlay[..., 0] = a // 3  # premultiplied colour never exceeds alpha
    out = compose_premultiplied(frame, overlay)
    kept = (f * (255 - a) * 2 + 255) // 510  # integer round-half-up of f (255 - a) / 255 (no ties exist)
    np.testing.assert_array_equal(out[..., 0], kept)           # B: overlay blue is 0
    np.testing.assert_array_equal(out[..., 2], kept + a // 3)  # R: overlay red


def test_known_values_and_channel_order():
    # frame BGR (10, 20, 30); overlay RGBA premultiplied (100, 50, 0, 128):
    # B = round(10 * 127 / 255) + 0 = round(4.98) = 5
    # G = round(20 * 127 / 255) + 50 = round(9.96) + 50 = 60
    # R = round(30 * 127 / 255) + 100 = round(14.94) + 100 = 115
    frame = np.full((2, 3, 3), (10, 20, 30), np.uint8)
    overlay = np.zeros((2, 3, 4), np.uint8)
    overlay[1, 2] = (100, 50, 0, 128)
    overlay[0, 0] = (255, 0, 0, 255)  # opaque red replaces the frame
    out = compose_premultiplied(frame, overlay)
    assert tuple(out[1, 2]) == (5, 60, 115)
    assert tuple(out[0, 0]) == (0, 0, 255)
    assert tuple(out[0, 1]) == (10, 20, 30)  # alpha 0: untouched


def test_out_argument_in_place_and_separate():
    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    overlay = np.zeros((40, 50, 4), np.uint8)
    overlay[10:20, 5:30, 3] = 200
    overlay[10:20, 5:30, 1] = 150
    expected = compose_premultiplied(frame, overlay)
    assert expected is not frame
    separate = np.zeros_like(frame)
    original = frame.copy()
    assert compose_premultiplied(frame, overlay, out=separate) is separate
    np.testing.assert_array_equal(separate, expected)
    np.testing.assert_array_equal(frame, original)
    assert compose_premultiplied(frame, overlay, out=frame) is frame
    np.testing.assert_array_equal(frame, expected)


def test_colour_above_alpha_saturates_instead_of_wrapping():
    frame = np.full((1, 1, 3), 250, np.uint8)
    overlay = np.array([[[200, 200, 200, 10]]], np.uint8)  # not premultiplied: rgb > a
    assert compose_premultiplied(frame, overlay)[0, 0].tolist() == [255, 255, 255]


def test_empty_overlay_leaves_frame_and_bbox_is_tight():
    frame = np.full((30, 40, 3), 9, np.uint8)
    overlay = np.zeros((30, 40, 4), np.uint8)
    assert overlay_bbox(overlay) == (0, 0, 0, 0)
    np.testing.assert_array_equal(compose_premultiplied(frame, overlay), frame)
    overlay[7, 11, 3] = 1
    overlay[12, 30, 3] = 1
    assert overlay_bbox(overlay) == (11, 7, 20, 6)


def test_shape_and_style_errors():
    frame = np.zeros((4, 5, 3), np.uint8)
    with pytest.raises(ValueError, match=r"overlay_rgba must be \(4, 5, 4\) uint8 like the frame"):
        compose_premultiplied(frame, np.zeros((4, 6, 4), np.uint8))
    with pytest.raises(ValueError, match=r"frame_bgr must be \(H, W, 3\) uint8"):
        compose_premultiplied(np.zeros((4, 5), np.uint8), np.zeros((4, 5, 4), np.uint8))
    with pytest.raises(ValueError, match="style must be one of"):
        compose_premultiplied(frame, np.zeros((4, 5, 4), np.uint8), style="old")


def test_stale_overlay_is_grey_hatched_and_dimmer():
    """Safety rule: a stale overlay never looks like a current one.  Same input, stale style:
    no colour (grey), less opaque on average, and striped (opacity alternates across stripes)."""
    h, w = 120, 160
    frame = np.full((h, w, 3), (40, 40, 40), np.uint8)
    overlay = np.zeros((h, w, 4), np.uint8)
    overlay[20:100, 30:130] = (230, 60, 30, 230)  # an opaque-ish orange organ, premultiplied
    current = compose_premultiplied(frame, overlay, style="current")
    stale = compose_premultiplied(frame, overlay, style="stale")
    region = np.s_[20:100, 30:130]
    hsv_current = cv2.cvtColor(current[region], cv2.COLOR_BGR2HSV)
    hsv_stale = cv2.cvtColor(stale[region], cv2.COLOR_BGR2HSV)
    assert hsv_current[..., 1].mean() > 150
    assert hsv_stale[..., 1].max() <= 2  # grey: no hue left
    # Hatching: along a row the brightness alternates with the stripes.
    # Here: grey 107 * 0.75 = 80 on a stripe (84 with the frame), 55 between.
    row = stale[60, 30:130, 1].astype(int)
    assert row.max() - row.min() > 25
    np.testing.assert_array_equal(row[:-12], row[12:])  # period 12 px
    assert abs(current[region].astype(int) - stale[region].astype(int)).mean() > 40
    # Outside the overlay both are the untouched frame.
    np.testing.assert_array_equal(current[:20], frame[:20])
    np.testing.assert_array_equal(stale[:20], frame[:20])


def test_hatch_pattern_is_diagonal_with_its_period():
    p = hatch_pattern(24, 24)[..., 0]
    assert set(np.unique(p)) == {255, round(255 * 0.35)}
    # Constant along anti-diagonals (x + y), period 12 px.
    assert p[0, 5] == p[5, 0] and p[3, 3] == p[0, 6]
    np.testing.assert_array_equal(p[:, :12], p[:, 12:])
