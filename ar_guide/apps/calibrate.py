"""``ar-guide calibrate board|run|check``: from a printed board to a trusted camera model.

The argument parsers live here; each action is its own module:
``calibrate_board`` (printable boards), ``calibrate_run`` (solve from images, a video or a camera;
the live camera session is ``calibrate_live``), ``calibrate_check`` (validate a calibration).
"""

from __future__ import annotations

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("calibrate", help="camera calibration: print a board, calibrate, check a calibration",
                       description="Camera calibration with a printed ChArUco board or chessboard.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", parser_class=type(p))
    actions.required = True

    board = actions.add_parser("board", help="write a printable board at exact physical scale",
                               description="Write a board as PNG (with its DPI), SVG or PDF at exact physical "
                                           "scale, with its parameters and a 100 mm ruler in the margin.")
    board.add_argument("--board", type=Path, required=True, help="board file (YAML), e.g. calibration/charuco_a4.yaml")
    board.add_argument("--output", type=Path, required=True, help="FILE.png, FILE.svg or FILE.pdf")
    board.add_argument("--dpi", type=int, default=300, help="PNG resolution (default 300)")
    board.add_argument("--paper", choices=("auto", "a4", "letter", "fit"), default="auto",
                       help="page size: auto (A4 or US letter, whichever the board fits, A4 first), a4, letter, "
                            "or fit (the board plus its margin)")
    board.set_defaults(run=_run_board)

    run = actions.add_parser("run", help="calibrate a camera from views of a board",
                             description="Detect the board in images, a video or a live camera, solve the camera "
                                         "model, drop outlier views, and write the calibration (OpenCV YAML).")
    _add_source(run)
    run.add_argument("--board", type=Path, required=True, help="board file (YAML)")
    run.add_argument("--output", type=Path, required=True, help="calibration file to write (CAM.yaml)")
    run.add_argument("--report", type=Path, metavar="DIR", help="write a visual report (HTML, charts, JSON) here")
    run.add_argument("--fix-aspect", action="store_true", help="fix fx/fy (square pixels)")
    run.add_argument("--zero-tangent", action="store_true", help="no tangential distortion (p1 = p2 = 0)")
    run.add_argument("--rational", action="store_true", help="rational distortion model (k4, k5, k6)")
    run.add_argument("--fix-k3", action="store_true", help="fix k3 = 0 (narrow lenses, few views)")
    run.add_argument("--every", type=int, default=0, metavar="N",
                     help="video: consider every N-th frame (default: chosen from the video's length)")
    run.add_argument("--max-views", type=int, default=40, help="largest number of views to solve with (default 40)")
    run.add_argument("--no-window", action="store_true", help="never open a window")
    run.add_argument("--max-seconds", type=float, metavar="S",
                     help="--camera without a window: end the session after S seconds (default 120)")
    run.set_defaults(run=_run_run)

    check = actions.add_parser("check", help="validate a calibration against a board in view",
                               description="With a board in view, measure under a given calibration the board's "
                                           "reprojection error and its metric error (corner spacing against the "
                                           "true spacing), live and as a summary. Exit status 0 when the "
                                           "calibration looks good, 1 when not.")
    _add_source(check)
    check.add_argument("--board", type=Path, required=True, help="board file (YAML)")
    check.add_argument("--calibration", type=Path, required=True, help="calibration to check (CAM.yaml)")
    check.add_argument("--report", type=Path, help="write the summary (JSON) here")
    check.add_argument("--no-window", action="store_true", help="never open a window")
    check.add_argument("--max-seconds", type=float, metavar="S",
                       help="stop after S seconds (--camera without a window: default 30)")
    check.set_defaults(run=_run_check)


def _add_source(parser) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--camera", metavar="N_OR_URL", help="live camera: index (0, 1 ...), device path or stream URL")
    group.add_argument("--video", type=Path, metavar="FILE", help="a video of the board")
    group.add_argument("--images", metavar="DIR_OR_GLOB", help="a folder of images, or a glob such as 'shots/*.png'")


def _run_board(args) -> int:
    from ar_guide.apps.calibrate_board import run

    return run(args)


def _run_run(args) -> int:
    if args.camera is not None:
        from ar_guide.apps.calibrate_live import run
    else:
        from ar_guide.apps.calibrate_run import run
    return run(args)


def _run_check(args) -> int:
    from ar_guide.apps.calibrate_check import run

    return run(args)
