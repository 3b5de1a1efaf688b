"""Makes docs/images/live-guidance.jpg: the pointer's bull's-eye and the path depth cue on a demo frame.

    .venv/bin/python docs/images/guidance_figure.py [OUT.jpg]

The demo scene has no tracked tool, so the pointer's pose is made up: a SciKit-Surgery-style pointer
(tip 100 mm along -x of its marker plate), its tip 25 mm short of the tumour along the planned path and
2.5 mm to one side, its shaft 3 degrees off the path.  The reference pose is the sequence's ground
truth for the frame; the pipeline draws everything else as it does live (OverlayPipeline.draw_states).
The pointer's markers are not in the image: only the drawn overlay is.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import cv2
import numpy as np

from ar_guide.camera import load_camera
from ar_guide.geometry.guidance import path_basis
from ar_guide.geometry.transforms import make_transform, rotation_from_rotvec
from ar_guide.io.sources import VideoFileSource
from ar_guide.pipeline import OverlayPipeline, ToolOverlay
from ar_guide.scene import load_scene
from ar_guide.session import build_pipeline
from ar_guide.synth.sequence import DEMO_SPEC, ensure_sequence, load_ground_truth
from ar_guide.tracking.bodies import marker_map_body
from ar_guide.tracking.status import BodyState, TrackingStatus

FRAME = 40
TIP_BODY = np.array([-100.0, 0.0, 0.0])


def pointer_body():
    markers = {}
    for i, (cx, cy) in enumerate(((-17.5, -8.75), (0.0, -8.75), (17.5, -8.75), (-17.5, 8.75))):
        markers[i] = np.array([[cx - 7.25, cy - 7.25, 0], [cx + 7.25, cy - 7.25, 0],
                               [cx + 7.25, cy + 7.25, 0], [cx - 7.25, cy + 7.25, 0]], dtype=np.float64)
    return marker_map_body("pointer", "DICT_4X4_50", markers)


def unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def ct_from_pointer(body, tip_ct, axis_ct):
    """The pointer pose that puts its tip at tip_ct with its shaft (markers' centre -> tip) along axis_ct."""
    shaft = unit(TIP_BODY - body.centre_body)
    axis_ct = unit(axis_ct)
    turn = np.cross(shaft, axis_ct)
    angle = math.atan2(np.linalg.norm(turn), shaft @ axis_ct)
    rotation = rotation_from_rotvec(unit(turn) * angle)
    return make_transform(rotation, tip_ct - rotation @ TIP_BODY)


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("live-guidance.jpg")
    sequence = ensure_sequence(DEMO_SPEC, progress=False)
    camera = load_camera(sequence.calibration)
    base = build_pipeline(load_scene(sequence.scene), camera)
    body = pointer_body()
    pipeline = OverlayPipeline(camera, base.reference, base.reference_from_ct, renderer=base.renderer,
                               targets=base.targets, paths=base.paths, registration=base.registration,
                               tools={"pointer": ToolOverlay(body, TIP_BODY.reshape(1, 3))})
    path = pipeline.paths[0]
    basis = path_basis(path.entry_ct, path.target_ct)
    tip_ct = path.target_ct - 25.0 * basis.direction + 2.5 * basis.right
    tilt = math.radians(3.0)
    axis_ct = math.cos(tilt) * basis.direction + math.sin(tilt) * basis.up
    camera_from_reference = load_ground_truth(sequence.ground_truth).camera_from_reference[FRAME]
    camera_from_pointer = camera_from_reference @ pipeline.reference_from_ct @ ct_from_pointer(body, tip_ct, axis_ct)
    with VideoFileSource(sequence.video) as video:
        frame = next(f for f in video if f.index == FRAME)
    states = {
        "reference": BodyState("reference", TrackingStatus.OK, camera_from_reference, frame.timestamp_s,
                               frame.timestamp_s, 0.2, 17, "ok"),
        "pointer": BodyState("pointer", TrackingStatus.OK, camera_from_pointer, frame.timestamp_s,
                             frame.timestamp_s, 0.3, 4, "ok"),
    }
    result = pipeline.draw_states(frame.index, frame.timestamp_s, frame.image_bgr.copy(), states)
    image = cv2.resize(result.image_bgr, (960, 540), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, 88])
    print(f"{out}: " + "; ".join(text for text, _ in result.guidance.lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
