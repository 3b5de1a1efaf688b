"""The per-frame pipeline: status drives what is drawn (safety rules), and the report's figures."""

from __future__ import annotations

import numpy as np
import pytest

from ar_guide.camera import load_camera
from ar_guide.evaluation import GroundTruthComparison
from ar_guide.io.sources import VideoFileSource
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import TEST_SPEC, ensure_sequence, load_ground_truth
from ar_guide.tracking.status import TrackingStatus


@pytest.fixture(scope="module")
def setup():
    sequence = ensure_sequence(TEST_SPEC, progress=False)
    scene = load_scene(sequence.scene)
    camera = load_camera(sequence.calibration)
    with VideoFileSource(sequence.video) as source:
        frames = [(f.index, f.timestamp_s, f.image_bgr) for f in source]
    return sequence, scene, camera, frames


def first_ok_frame(pipeline, frames):
    for index, t, image in frames:
        result = pipeline.process(index, t, image.copy())
        if result.overlay == "current":
            return result
    raise AssertionError("the reference was never tracked")


def test_stale_then_lost_never_drawn_as_current(setup):
    _sequence, scene, camera, frames = setup
    pipeline = build_pipeline(scene, camera)
    ok = first_ok_frame(pipeline, frames)
    assert ok.reference_state.status is TrackingStatus.OK and ok.camera_from_ct is not None
    assert np.all(np.isfinite(ok.targets_uv_px))
    blank = np.full_like(frames[0][2], 128)
    t0 = ok.timestamp_s
    stale = pipeline.process(ok.frame_index + 1, t0 + 0.1, blank.copy())
    assert stale.reference_state.status is TrackingStatus.STALE
    assert stale.overlay == "stale"                       # drawn, but marked as not current
    np.testing.assert_array_equal(stale.camera_from_ct, ok.camera_from_ct)
    lost = pipeline.process(ok.frame_index + 2, t0 + 0.3, blank.copy())
    assert lost.reference_state.status is TrackingStatus.LOST
    assert lost.overlay == "none" and lost.camera_from_ct is None and lost.targets_uv_px is None


def test_stale_overlay_looks_different_from_current(setup):
    """Same image, same pose: drawn as STALE it must not look like the current overlay."""
    from ar_guide.tracking.pose import PoseFailure

    _sequence, scene, camera, frames = setup
    pipeline = build_pipeline(scene, camera)
    pipeline.toggles.hud = False
    ok = first_ok_frame(pipeline, frames)
    image = next(f[2] for f in frames if f[0] == ok.frame_index)
    dt = 1.0 / TEST_SPEC.fps
    current = pipeline.process(ok.frame_index + 1, ok.timestamp_s + dt, image.copy())
    assert current.overlay == "current"
    for estimator in pipeline._estimators.values():
        estimator.measure = lambda *args, **kwargs: PoseFailure("not seen")
    stale = pipeline.process(ok.frame_index + 2, ok.timestamp_s + 2 * dt, image.copy())
    assert stale.overlay == "stale"
    np.testing.assert_array_equal(stale.camera_from_ct, current.camera_from_ct)
    diff = np.abs(current.image_bgr.astype(int) - stale.image_bgr.astype(int)).max(axis=2)
    assert (diff > 40).mean() > 0.01


def test_lost_frame_shows_banner_and_no_anatomy(setup):
    _sequence, scene, camera, frames = setup
    pipeline = build_pipeline(scene, camera)
    pipeline.toggles.hud = False
    blank = np.full_like(frames[0][2], 128)
    result = pipeline.process(0, 0.0, blank.copy())
    assert result.overlay == "none"
    changed = np.abs(result.image_bgr.astype(int) - 128).max(axis=2) > 0
    inner = changed[20:-20, 20:-20]                        # inside the banner's coloured border
    assert inner.any()                                     # the LOST banner
    rows = np.flatnonzero(inner.any(axis=1))
    assert rows.max() - rows.min() < blank.shape[0] // 3   # ... and nothing else drawn


def test_layer_toggles_hide_anatomy_and_plan(setup):
    _sequence, scene, camera, frames = setup
    pipeline = build_pipeline(scene, camera)
    ok = first_ok_frame(pipeline, frames)
    index, t, image = next(f for f in frames if f[0] == ok.frame_index + 1)
    pipeline.toggles.anatomy = pipeline.toggles.targets = pipeline.toggles.paths = pipeline.toggles.hud = False
    result = pipeline.process(index, t, image.copy())
    assert result.overlay == "current"
    np.testing.assert_array_equal(result.image_bgr, image)


def test_ground_truth_comparison_counts_and_errors(setup):
    sequence, scene, camera, frames = setup
    truth = load_ground_truth(sequence.ground_truth)
    pipeline = build_pipeline(scene, camera)
    comparison = GroundTruthComparison(camera, scene.registration.reference_from_ct,
                                       [t.position_ct for t in scene.targets])
    for index, t, image in frames:
        result = pipeline.process(index, t, image.copy())
        comparison.add(result, truth.camera_from_reference[index], int(truth.visible_markers[index]))
    summary = comparison.summary()
    assert summary["overlay_error_px"]["n"] > 0
    assert summary["false_overlay_frames"] == 0
    # Feeding a wrong truth must show up as a large error (the comparison can fail).
    bad = GroundTruthComparison(camera, scene.registration.reference_from_ct, [t.position_ct for t in scene.targets])
    shifted = truth.camera_from_reference.copy()
    shifted[:, 0, 3] += 10.0
    pipeline.reset()
    for index, t, image in frames:
        bad.add(pipeline.process(index, t, image.copy()), shifted[index], int(truth.visible_markers[index]))
    assert bad.summary()["translation_error_mm"]["median"] == pytest.approx(10.0, abs=0.5)
    assert bad.summary()["overlay_error_px"]["median"] > 5.0


def test_overlay_drawn_while_reference_unseen_is_counted(setup):
    sequence, scene, camera, frames = setup
    truth = load_ground_truth(sequence.ground_truth)
    pipeline = build_pipeline(scene, camera)
    comparison = GroundTruthComparison(camera, scene.registration.reference_from_ct, [])
    ok = first_ok_frame(pipeline, frames)
    comparison.add(ok, truth.camera_from_reference[ok.frame_index], visible_markers=0)
    assert comparison.summary()["false_overlay_frames"] == 1
    assert comparison.summary()["false_overlay_frame_indices"] == [ok.frame_index]
