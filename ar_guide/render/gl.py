"""Headless OpenGL 3.3 contexts for moderngl: EGL first, OSMesa as the fallback.

The backend is picked automatically; ``AR_GUIDE_GL=egl`` or ``AR_GUIDE_GL=osmesa`` forces one.
Both run on the CPU through Mesa's llvmpipe when no GPU is present.  System packages:
libegl1 + libgl1-mesa-dri for EGL, libosmesa6 for OSMesa (see README.md).

OSMesa has no moderngl/glcontext backend, so :class:`OSMesaLoader` is a small ctypes loader
over libOSMesa that moderngl attaches to (``moderngl.create_context(context=loader)``; the
loader protocol is ``load_opengl_function(name) -> address``, ``__enter__``/``__exit__`` to make
the context current, ``release()``; see ``_moderngl.DefaultLoader``).  PyOpenGL is not used at
all (its 3.1.0 release breaks OSMesa, a known pyrender pitfall).

Both backends dispatch GL calls through Mesa's shared libglapi to the context current on the
calling thread, so code that holds contexts of both kinds (tests do) must enter a context
(``with ctx:``) before drawing with it; :class:`ar_guide.render.anatomy.AnatomyRenderer` does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading

from ar_guide.errors import RenderUnavailable

BACKENDS = ("egl", "osmesa")
_lock = threading.Lock()

# osmesa.h (Mesa 22): attribute names and values for OSMesaCreateContextAttribs.
_OSMESA_FORMAT = 0x22
_OSMESA_DEPTH_BITS = 0x30
_OSMESA_STENCIL_BITS = 0x31
_OSMESA_ACCUM_BITS = 0x32
_OSMESA_PROFILE = 0x33
_OSMESA_CORE_PROFILE = 0x34
_OSMESA_CONTEXT_MAJOR_VERSION = 0x36
_OSMESA_CONTEXT_MINOR_VERSION = 0x37
_GL_RGBA = 0x1908
_GL_UNSIGNED_BYTE = 0x1401
_OSMESA_LIBRARY_NAMES = ("libOSMesa.so.8", "libOSMesa.so.6", "libOSMesa.so")


def requested_backend() -> str | None:
    value = os.environ.get("AR_GUIDE_GL", "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in BACKENDS:
        raise RenderUnavailable(f"AR_GUIDE_GL={value!r} is not one of {', '.join(BACKENDS)} or 'auto'")
    return value


def create_context(backend: str | None = None):
    """A standalone moderngl context; raises RenderUnavailable with the reason if none works.

    backend : "egl", "osmesa" or None (``AR_GUIDE_GL`` if set, else EGL then OSMesa).
    The returned context has ``ctx.extra = {"backend": name}``.
    """
    if backend is not None and backend not in BACKENDS:
        raise RenderUnavailable(f"unknown OpenGL backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    backend = backend or requested_backend()
    order = [backend] if backend else list(BACKENDS)
    problems = []
    with _lock:
        for name in order:
            try:
                ctx = _CREATORS[name]()
            except Exception as exc:  # each backend fails in its own way (OSError, moderngl.Error)
                problems.append(f"{name}: {exc}")
                continue
            ctx.extra = {"backend": name}
            return ctx
    raise RenderUnavailable(
        "no offscreen OpenGL context (" + "; ".join(problems) + "). Install libegl1 and "
        "libgl1-mesa-dri (EGL) or libosmesa6 (OSMesa)"
    )


def backend_of(ctx) -> str | None:
    """The backend name a context from :func:`create_context` was made with (None if unknown)."""
    extra = getattr(ctx, "extra", None)
    return extra.get("backend") if isinstance(extra, dict) else None


def _create_egl():
    import moderngl

    return moderngl.create_context(standalone=True, backend="egl", require=330)


def _create_osmesa():
    import moderngl

    loader = OSMesaLoader()
    try:
        return moderngl.create_context(standalone=True, require=330, context=loader)
    except Exception:
        loader.release()
        raise


def _load_osmesa_library() -> ctypes.CDLL:
    names = []
    found = ctypes.util.find_library("OSMesa")
    if found:
        names.append(found)
    names.extend(n for n in _OSMESA_LIBRARY_NAMES if n not in names)
    errors = []
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
            continue
        if not hasattr(lib, "OSMesaCreateContextAttribs"):
            errors.append(f"{name} lacks OSMesaCreateContextAttribs (Mesa older than 11.2)")
            continue
        lib.OSMesaCreateContextAttribs.restype = ctypes.c_void_p
        lib.OSMesaCreateContextAttribs.argtypes = [ctypes.POINTER(ctypes.c_int), ctypes.c_void_p]
        lib.OSMesaMakeCurrent.restype = ctypes.c_ubyte
        lib.OSMesaMakeCurrent.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_int]
        lib.OSMesaGetCurrentContext.restype = ctypes.c_void_p
        lib.OSMesaGetCurrentContext.argtypes = []
        lib.OSMesaGetProcAddress.restype = ctypes.c_void_p
        lib.OSMesaGetProcAddress.argtypes = [ctypes.c_char_p]
        lib.OSMesaDestroyContext.restype = None
        lib.OSMesaDestroyContext.argtypes = [ctypes.c_void_p]
        return lib
    raise OSError("libOSMesa not found (" + "; ".join(errors) + ")")


class OSMesaLoader:
    """An OpenGL 3.3 core-profile OSMesa context, in the loader protocol moderngl accepts.

    The context is bound to a tiny 4x4 RGBA buffer: all drawing goes to framebuffer objects, so
    OSMesa's own buffer (where RGBA requests have been known to be ignored) is never read.
    """

    _BUFFER_SIZE = 4

    def __init__(self):
        self._lib = _load_osmesa_library()
        attrs = (ctypes.c_int * 16)(
            _OSMESA_FORMAT, _GL_RGBA,
            _OSMESA_DEPTH_BITS, 24,
            _OSMESA_STENCIL_BITS, 8,
            _OSMESA_ACCUM_BITS, 0,
            _OSMESA_PROFILE, _OSMESA_CORE_PROFILE,
            _OSMESA_CONTEXT_MAJOR_VERSION, 3,
            _OSMESA_CONTEXT_MINOR_VERSION, 3,
            0,
        )
        self._ctx = self._lib.OSMesaCreateContextAttribs(attrs, None)
        if not self._ctx:
            raise OSError("OSMesaCreateContextAttribs failed for an OpenGL 3.3 core profile")
        self._buffer = (ctypes.c_ubyte * (self._BUFFER_SIZE * self._BUFFER_SIZE * 4))()
        self._make_current()

    def _make_current(self) -> None:
        _release_current_egl()
        ok = self._lib.OSMesaMakeCurrent(self._ctx, self._buffer, _GL_UNSIGNED_BYTE,
                                         self._BUFFER_SIZE, self._BUFFER_SIZE)
        if not ok:
            raise OSError("OSMesaMakeCurrent failed")

    def load_opengl_function(self, name: str) -> int:
        return self._lib.OSMesaGetProcAddress(name.encode("ascii")) or 0

    def __enter__(self):
        self._make_current()
        return self

    def __exit__(self, *exc_info):
        # Left current: whoever draws next enters its own context first (see module docstring).
        return None

    def release(self) -> None:
        if self._ctx:
            if self._lib.OSMesaGetCurrentContext() == self._ctx:
                # Unbind first: a destroyed context left current breaks the next EGL bind.
                self._lib.OSMesaMakeCurrent(None, None, 0, 0, 0)
            self._lib.OSMesaDestroyContext(self._ctx)
            self._ctx = None


_egl = None


def _release_current_egl() -> None:
    """Unbind this thread's EGL context, if any, before an OSMesa context is made current.

    Mesa's EGL keeps its own record of the current context.  Observed with Mesa 22.3: after an
    OSMesa context was made current (or destroyed while current), entering an EGL context that
    EGL still thought current gave empty renders or "cannot create program".  Unbinding EGL
    first keeps its record true, so its next eglMakeCurrent really binds
    (tests/test_gl.py::test_backends_render_identical_pixels interleaves both).
    """
    global _egl
    if _egl is None:
        name = ctypes.util.find_library("EGL")
        try:
            lib = ctypes.CDLL(name) if name else False
        except OSError:
            lib = False
        if lib:
            lib.eglGetCurrentContext.restype = ctypes.c_void_p
            lib.eglGetCurrentDisplay.restype = ctypes.c_void_p
            lib.eglMakeCurrent.argtypes = [ctypes.c_void_p] * 4
            lib.eglMakeCurrent.restype = ctypes.c_uint
        _egl = lib
    if _egl and _egl.eglGetCurrentContext():
        _egl.eglMakeCurrent(_egl.eglGetCurrentDisplay(), None, None, None)


_CREATORS = {"egl": _create_egl, "osmesa": _create_osmesa}
