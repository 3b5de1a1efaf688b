"""Shared fixtures: the real third-party data in ../shared/data (tests skip when it is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AR_GUIDE_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real third-party data not found at {SHARED_DATA} (see README.md, Tests)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    """Keep generated synthetic sequences out of the user's cache, shared across one session.

    Session-scoped and autouse, so it is in place before any module-scoped fixture generates data.
    """
    cache = tmp_path_factory.getbasetemp() / "ar_guide_cache"
    previous = os.environ.get("AR_GUIDE_CACHE")
    os.environ["AR_GUIDE_CACHE"] = str(cache)
    yield cache
    if previous is None:
        os.environ.pop("AR_GUIDE_CACHE", None)
    else:
        os.environ["AR_GUIDE_CACHE"] = previous


@pytest.fixture(scope="session")
def xvfb():
    """DISPLAY name of a virtual X server for this test session (skips without Xvfb/xdotool)."""
    from xdisplay import start_xvfb

    display, proc = start_xvfb()
    yield display
    proc.terminate()
    proc.wait(timeout=10)
