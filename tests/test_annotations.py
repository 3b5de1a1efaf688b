"""2-D annotations: placed with the lens model, clipped safely, legible, stale made obvious."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from ar_guide.camera import CameraModel
from ar_guide.render import annotations as an

K = np.array([[1000.0, 0.0, 643.7], [0.0, 1002.0, 357.2], [0.0, 0.0, 1.0]])
D = np.array([-0.28, 0.09, 1e-3, -5e-4, -0.01])
CAMERA = CameraModel(K, D, (1280, 720))
PINHOLE = CameraModel(K, np.zeros(5), (1280, 720))
GREEN = (0, 255, 0)


def black(h=720, w=1280):
    return np.zeros((h, w, 3), np.uint8)


def test_target_radius_is_f_r_over_z_and_clipped():
    # On the axis of a pinhole camera the rim (perpendicular to the ray) projects exactly at
    # f r / z from the centre; fx != fy, so the 8 rim points average to about sqrt(fx fy) r / z.
    r = an.target_radius_px(PINHOLE, np.array([0.0, 0.0, 400.0]), 10.0)
    assert r == pytest.approx(np.sqrt(1000.0 * 1002.0) * 10.0 / 400.0, rel=1e-3)
    # Barrel distortion shrinks it towards the corner.
    corner = np.array([0.55 * 500.0, 0.3 * 500.0, 500.0])
    assert an.target_radius_px(CAMERA, corner, 10.0) < an.target_radius_px(PINHOLE, corner, 10.0) * 0.95
    assert an.target_radius_px(PINHOLE, np.array([0.0, 0.0, 3000.0]), 0.5) == 4.0
    assert an.target_radius_px(PINHOLE, np.array([0.0, 0.0, 20.0]), 50.0) == 400.0


@pytest.mark.parametrize("offset", [0.0, 0.3, 0.55])
def test_target_is_drawn_at_its_subpixel_projection(offset):
    """The painted ring + cross is symmetric about the projected centre: its intensity
    centroid follows sub-pixel moves of the target (cv2 shift = 4 bits)."""
    xy = np.array([(200.0 + offset - K[0, 2]) / K[0, 0], (150.0 - K[1, 2]) / K[1, 1]])
    target = np.array([xy[0] * 400.0, xy[1] * 400.0, 400.0])
    frame = black()
    assert an.draw_target(frame, PINHOLE, target, 3.0, "", (255, 255, 255))
    weight = frame[..., 1].astype(np.float64)
    v, u = np.mgrid[0:720, 0:1280]
    centroid = np.array([(weight * u).sum(), (weight * v).sum()]) / weight.sum()
    np.testing.assert_allclose(centroid, [200.0 + offset, 150.0], atol=0.05)


def test_target_beyond_the_calibrated_field_is_not_drawn():
    """The polynomial model folds back: a ray at x/z = 2.7 (far outside the field) projects into
    the image at u ~ 285 (the wrong side).  Such a target must not be drawn there."""
    far_aside = np.array([2.7 * 500.0, 0.0, 500.0])
    u, v = CAMERA.project(far_aside[None])[0]
    assert 0 < u < 1280 and 0 < v < 720  # the fold is real
    frame = black()
    assert an.draw_target(frame, CAMERA, far_aside, 5.0, "T", GREEN) is False
    assert an.draw_target(frame, CAMERA, np.array([0.0, 0.0, -300.0]), 5.0, "T", GREEN) is False
    assert an.draw_tool_tip(frame, CAMERA, np.array([0.0, 0.0, -30.0]), "pointer") is False
    assert not frame.any()
    assert 1.0 < an.valid_field_radius(CAMERA) < 1.2


def _curve(camera, entry, target, n=2000):
    s = np.linspace(0.0, 1.0, n)[:, None]
    return camera.project(entry + s * (target - entry))


def test_path_follows_the_distorted_image_of_the_segment():
    """A straight needle path near the top of a wide-angle image is a curve in the image; the
    painted line lies on that curve, not on the chord between its ends."""
    entry = np.array([-330.0, -150.0, 500.0])  # image row ~94 at the ends, ~64 in the middle
    target = np.array([330.0, -150.0, 500.0])
    frame = black()
    assert an.draw_path(frame, CAMERA, entry, target, 1.0, "", GREEN)
    painted = frame[..., 1] > 100
    curve = _curve(CAMERA, entry, target)
    allowed = np.zeros((720, 1280), np.uint8)
    cv2.polylines(allowed, [np.round(curve * 16).astype(np.int32)], False, 1, 8, cv2.LINE_8, 4)
    for end in (curve[0], curve[-1]):  # entry ring and target dot
        cv2.circle(allowed, tuple(int(c) for c in np.round(end)), 12, 1, -1)
    assert painted.sum() > 500
    assert not (painted & (allowed == 0)).any()
    # The bow: the curve's middle is painted, the chord's middle (> 10 px away) is not.
    middle, chord_middle = curve[len(curve) // 2], (curve[0] + curve[-1]) / 2
    assert np.linalg.norm(middle - chord_middle) > 10
    assert painted[int(round(middle[1])), int(round(middle[0]))]
    assert not painted[int(round(chord_middle[1])), int(round(chord_middle[0]))]


def test_path_behind_the_camera_is_clipped():
    frame = black()
    entry = np.array([0.0, 100.0, -200.0])  # behind the camera
    target = np.array([0.0, 100.0, 400.0])
    assert an.draw_path(frame, CAMERA, entry, target, 2.0, "P", GREEN)
    assert frame[..., 1].any()
    # Only the part in front of the near plane is drawn: it lies below the image centre line.
    assert not frame[:380, ..., 1].any()
    untouched = black()
    assert an.draw_path(untouched, CAMERA, np.array([0, 0, -50.0]), np.array([10, 0, -400.0]), 2.0, "P", GREEN) is False
    assert not untouched.any()


def _saturation(image, mask):
    return cv2.cvtColor(image, cv2.COLOR_BGR2HSV)[..., 1][mask]


def test_stale_target_and_path_look_different():
    target = np.array([20.0, 10.0, 400.0])
    entry = np.array([-200.0, 150.0, 300.0])
    current, stale = black(), black()
    for frame, style in ((current, "current"), (stale, "stale")):
        an.draw_path(frame, CAMERA, entry, target, 2.0, "", (0, 0, 255), style=style)
        an.draw_target(frame, CAMERA, target, 8.0, "", (0, 0, 255), style=style)
    painted_current = current.max(axis=2) > 60
    painted_stale = stale.max(axis=2) > 60
    assert _saturation(current, painted_current).mean() > 200  # red
    assert _saturation(stale, painted_stale).max() < 20        # grey
    assert painted_stale.sum() < 0.8 * painted_current.sum()   # dashed
    with pytest.raises(ValueError, match="style must be one of"):
        an.draw_target(current, CAMERA, target, 8.0, "", (0, 0, 255), style="old")


@pytest.mark.parametrize("size", [(640, 480), (1920, 1080)])
def test_hud_text_is_legible_on_white_and_black(size):
    w, h = size
    lines = [("reference: OK  12 markers  0.31 px", (0, 255, 0)), ("frame 28.4 ms", (230, 230, 230))]
    font_scale, thickness = an._text_metrics(np.zeros((h, w, 3), np.uint8), an.RenderSettings())
    cap_height = cv2.getTextSize("H", an.FONT, font_scale, thickness)[0][1]
    assert cap_height >= 9 if h == 480 else cap_height >= 20  # ~ 2.8 % of the image height
    white = np.full((h, w, 3), 255, np.uint8)
    an.draw_hud(white, lines)
    ys, xs = np.nonzero(np.any(white != 255, axis=2))
    assert xs.min() == 0 and ys.min() == 0  # top left
    assert ys.max() < 0.25 * h and xs.max() < 0.75 * w  # compact
    for background in (0, 255):
        frame = np.full((h, w, 3), background, np.uint8)
        an.draw_hud(frame, lines)
        panel = frame[: ys.max() + 1, : xs.max() + 1].max(axis=2)
        # Dark panel with bright text: readable whatever the video behind it.
        assert np.percentile(panel, 50) < 100
        assert (panel > 200).sum() > 100


def test_banner_is_centred_and_unmistakable():
    h, w = 480, 640
    frame = np.full((h, w, 3), 128, np.uint8)
    an.draw_banner(frame, "REFERENCE LOST - overlay hidden", (0, 0, 255))
    red = (frame[..., 2] == 255) & (frame[..., 0] == 0) & (frame[..., 1] == 0)
    band_rows = np.nonzero(red[:, w // 2 - 200: w // 2 + 200].mean(axis=1) > 0.5)[0]
    band_centre = (band_rows.min() + band_rows.max()) / 2
    assert abs(band_centre - (h - 1) / 2) <= 2
    assert band_rows.max() - band_rows.min() > 0.08 * h
    assert red[:, :4].all() and red[:, -4:].all() and red[:4].all() and red[-4:].all()  # border
    text = frame[band_rows.min(): band_rows.max() + 1].min(axis=2) > 200  # white ink on red
    assert text.sum() > 500


def test_stale_marking_border_and_label():
    h, w = 480, 640
    frame = np.full((h, w, 3), 128, np.uint8)
    an.draw_stale_marking(frame, "STALE 0.31 s - last pose, not current")
    amber = np.all(frame == (0, 191, 255), axis=2)
    dark = np.all(frame == 0, axis=2)
    for edge in (np.s_[:3, :], np.s_[-3:, :], np.s_[:, :3], np.s_[:, -3:]):
        assert amber[edge].mean() > 0.2 and dark[edge].mean() > 0.2  # hazard stripes all round
    assert (frame[h // 2 - 50: h // 2 + 50, w // 2 - 50: w // 2 + 50] == 128).all()  # picture kept
    tab = frame[h - 60: h - 9, w // 2 - 100: w // 2 + 100]
    assert np.all(tab == (0, 191, 255), axis=2).mean() > 0.3 and (tab.max(axis=2) < 60).sum() > 200


def test_tool_tip_drawn_at_its_projection():
    frame = black()
    tip = np.array([30.0, -20.0, 300.0])
    assert an.draw_tool_tip(frame, CAMERA, tip, "")
    u, v = CAMERA.project(tip[None])[0]
    ring = frame[int(round(v)) + 3, int(round(u))]
    assert ring.max() > 200


def test_hud_lines_wider_than_the_frame_shrink_to_fit_instead_of_being_cut():
    """Regression: at 640x360 the registration line ran past the right edge and was cut off."""
    h, w = 360, 640
    long_line = ("registration: synthetic ground truth  FRE 0.00 mm  predicted TRE at tumour 0.00 mm", (230, 230, 230))
    short = [("reference: OK  12 markers  0.31 px", (0, 255, 0))]
    frame = np.zeros((h, w, 3), np.uint8)
    font_scale, thickness = an._text_metrics(frame, an.RenderSettings())
    assert cv2.getTextSize(long_line[0], an.FONT, font_scale, thickness)[0][0] > w     # would not fit as it is
    x0, y0, x1, y1 = an.hud_box(frame, short + [long_line])
    assert x1 <= w
    white = np.full((h, w, 3), 255, np.uint8)
    an.draw_hud(white, short + [long_line])
    ys, xs = np.nonzero(np.any(white != 255, axis=2))
    assert xs.max() < w - 1 and (x0, y0, x1) == (0, 0, xs.max() + 1) and ys.max() < y1
    # Lines that fit keep their size: the same box as before the rule.
    assert an.hud_box(frame, short)[2] == cv2.getTextSize(short[0][0], an.FONT, font_scale, thickness)[0][0] + 2 * int(
        round(0.5 * font_scale * an._FONT_HEIGHT_AT_SCALE_1))
