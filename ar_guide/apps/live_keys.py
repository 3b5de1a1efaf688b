"""The live window's keys: one table, read by the key handler, the on-screen help and the README test.

Keys arrive as OpenCV's ``waitKeyEx`` codes (-1 when none).  Letters are matched in either case
(caps lock must not disable a key); ``+`` also answers to ``=`` and ``-`` to ``_`` (the same key
without or with shift on most layouts).
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class KeyBinding:
    """One action of the live window.

    action : what the handler does ("anatomy", "quit" ...)
    label : how the help and the README name the key ("a", "space", "q / Esc")
    description : one line for the help
    codes : the ``waitKeyEx`` codes that trigger it
    """

    action: str
    label: str
    description: str
    codes: tuple[int, ...]


def _letter(ch: str) -> tuple[int, ...]:
    return (ord(ch.lower()), ord(ch.upper()))


ESC = 27

BINDINGS: tuple[KeyBinding, ...] = (
    KeyBinding("anatomy", "a", "anatomy on / off", _letter("a")),
    KeyBinding("targets", "t", "targets on / off", _letter("t")),
    KeyBinding("paths", "p", "planned paths on / off", _letter("p")),
    KeyBinding("hud", "u", "HUD on / off (tracking, registration, frame rate, latency)", _letter("u")),
    KeyBinding("opacity_up", "+", "anatomy more opaque", (ord("+"), ord("="))),
    KeyBinding("opacity_down", "-", "anatomy more transparent", (ord("-"), ord("_"))),
    KeyBinding("next_target", "n", "next target (the HUD and guidance follow it)",
               _letter("n")),
    KeyBinding("pause", "space", "pause / resume the display (tracking and recording go on)", (ord(" "),)),
    KeyBinding("screenshot", "s", "screenshot (PNG of the overlay + JSON of the poses)", _letter("s")),
    KeyBinding("record", "r", "start / stop recording (video, timestamps, poses)",
               _letter("r")),
    KeyBinding("fullscreen", "f", "full screen on / off (aspect ratio kept)", _letter("f")),
    KeyBinding("help", "h", "this help on / off", _letter("h")),
    KeyBinding("quit", "q / Esc", "quit (a recording is closed properly)", _letter("q") + (ESC,)),
)

_BY_CODE = {code: b.action for b in BINDINGS for code in b.codes}
assert len(_BY_CODE) == sum(len(b.codes) for b in BINDINGS), "a key code is bound twice"


def action_for(key: int) -> str | None:
    """The action of a ``waitKeyEx`` code, or None (no key, or a key without an action).

    Qt and GTK put modifier bits above the low 16 bits of a code; plain keys are compared on
    the character alone, so that e.g. shift+"=" (some layouts' "+") still counts.
    """
    if key is None or key < 0:
        return None
    action = _BY_CODE.get(key)
    if action is None and key > 0xFFFF:
        action = _BY_CODE.get(key & 0xFFFF)
    return action


def help_lines() -> list[tuple[str, str]]:
    """(key label, description) for each binding, in the table's order."""
    return [(b.label, b.description) for b in BINDINGS]
