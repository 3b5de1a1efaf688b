"""``ar-guide calibrate board``: a printable board at exact physical scale (PNG, SVG or PDF).

The page layout and the writers are :mod:`ar_guide.calibration.printable`; this only checks the
arguments, in the order a user fixes them (output name, DPI, then the board file), and reports.
"""

from __future__ import annotations

import datetime

from ar_guide.calibration import printable
from ar_guide.calibration.boards import load_board
from ar_guide.io import page as page_files


def run(args) -> int:
    """args: board (Path), output (Path), dpi (int), paper ("auto" | "a4" | "letter" | "fit")."""
    fmt = page_files.output_format(args.output)
    dpi = page_files.check_dpi(args.dpi)
    page_files.check_writable(args.output)
    board = load_board(args.board)
    page = printable.layout_board(board, paper=args.paper, dpi=dpi if fmt == "png" else None,
                                  board_file=args.board.name, date=datetime.date.today().isoformat())
    page_files.write(page.drawing, args.output, dpi=dpi)
    resolution = f" at {dpi} DPI" if fmt == "png" else ""
    print(f"wrote {args.output}: {board.describe()} on {page.describe()}{resolution}; print at 100% "
          f"(actual size) and check that the ruler measures 100 mm")
    return 0
