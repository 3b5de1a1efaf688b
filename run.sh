#!/bin/sh
# Set up ar_guide on a fresh Debian/Ubuntu machine and run it.
#   ./run.sh demo [ARGS...]   set up, then run the demo (ar-guide demo ARGS...)
#   ./run.sh test [ARGS...]   set up, then run the test suite (pytest ARGS...)
#   ./run.sh setup            set up only
# Creates/updates a virtual environment in .venv; as root, installs missing system packages.
set -eu
cd "$(dirname "$0")"

# Why each system package is needed (README.md, "System packages"):
#   libegl1 libgl1-mesa-dri : headless OpenGL (EGL + Mesa llvmpipe) for the anatomy renderer
#   libosmesa6              : OSMesa, the fallback offscreen OpenGL
#   libgl1 libglib2.0-0     : loaded by opencv-contrib-python's GUI module
#   xvfb xdotool            : virtual display for the GUI tests (tests only)
#   imagemagick             : `import` grabs the live window in its tests (tests only)
#   libusb-1.0-0            : loaded by open3d-cpu (surface registration)
#   python3-venv            : to create .venv
SYSTEM_PACKAGES="libegl1 libgl1 libgl1-mesa-dri libosmesa6 libglib2.0-0 libusb-1.0-0"
TEST_PACKAGES="xvfb xdotool imagemagick"

mode="${1:-setup}"
[ $# -gt 0 ] && shift

need_packages() {
    missing=""
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
    done
    echo "$missing"
}

apt_install() {
    # apt_install REQUIRED|OPTIONAL PACKAGES...: installs the missing ones (as root).
    kind=$1; shift
    missing=$(need_packages "$@")
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        [ "$kind" = OPTIONAL ] && { echo "run.sh: not installed (tests that need them will skip):$missing" >&2; return 0; }
        echo "run.sh: missing system packages:$missing" >&2
        echo "run.sh: as root, run: apt-get install$missing" >&2
        exit 1
    fi
    echo "run.sh: installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    if [ -z "${APT_UPDATED:-}" ]; then
        apt-get update -qq >/dev/null || echo "run.sh: apt-get update failed; trying the cached package lists" >&2
        APT_UPDATED=1
    fi
    if ! apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
        [ "$kind" = OPTIONAL ] && { echo "run.sh: could not install$missing (tests that need them will skip)" >&2; return 0; }
        echo "run.sh: could not install:$missing" >&2
        exit 1
    fi
}

install_system_packages() {
    command -v dpkg-query >/dev/null 2>&1 || return 0
    required="$SYSTEM_PACKAGES"
    python3 -c 'import venv, ensurepip' 2>/dev/null || required="$required python3-venv"
    apt_install REQUIRED $required
    [ "$mode" = test ] && apt_install OPTIONAL $TEST_PACKAGES
    return 0
}

setup_venv() {
    if [ ! -x .venv/bin/python ]; then
        python3 -m venv .venv
    fi
    stamp=.venv/.ar_guide-installed
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        .venv/bin/python -m pip install -q --upgrade pip
        PYTHONWARNINGS=ignore .venv/bin/python -m pip install -q -e ".[test]"
        touch "$stamp"
    fi
}

install_system_packages
setup_venv

case "$mode" in
    setup) ;;
    demo) exec .venv/bin/ar-guide demo "$@" ;;
    test) exec .venv/bin/python -m pytest "$@" ;;
    *) echo "usage: ./run.sh demo|test|setup [ARGS...]" >&2; exit 2 ;;
esac
