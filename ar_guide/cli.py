"""The ``ar-guide`` command line: DESIGN.md "Command line" is the contract.

A user's mistake (InputError) is one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from ar_guide import __version__
from ar_guide.errors import InputError, RenderUnavailable

COMMANDS = ("demo", "play", "live", "calibrate", "register", "pivot", "bench")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"ar-guide: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from ar_guide.apps import bench, calibrate, demo, live, pivot, play, register

    parser = _Parser(
        prog="ar-guide",
        description="Augmented-reality overlay for image-guided therapy (research use only).",
    )
    parser.add_argument("--version", action="version", version=f"ar-guide {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for module in (demo, play, live, calibrate, register, pivot, bench):
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.run(args) or 0)
    except InputError as exc:
        print(f"ar-guide: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except RenderUnavailable as exc:
        print(f"ar-guide: error: {exc}", file=sys.stderr)
        return RenderUnavailable.exit_code
    except KeyboardInterrupt:
        print("ar-guide: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
