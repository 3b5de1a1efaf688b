"""Errors that reach the user as one clear line (never a traceback).

Raise :class:`InputError` for anything the user can fix: a missing or malformed file, a bad
argument, a calibration that does not fit the video.  The command line prints ``str(error)``
on stderr and exits with :attr:`InputError.exit_code`.
"""

from __future__ import annotations

import os


class InputError(Exception):
    """A user's input is wrong; the message names the file, the key and what was expected."""

    exit_code = 2

    def __init__(self, message: str, path: str | os.PathLike | None = None, key: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.key = key
        self.detail = message
        prefix = ""
        if self.path is not None:
            prefix = f"{self.path}: "
        if key is not None:
            prefix += f"'{key}': "
        super().__init__(prefix + message)


class RenderUnavailable(Exception):
    """No offscreen OpenGL context could be created (missing system libraries)."""

    exit_code = 3
