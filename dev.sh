#!/usr/bin/env bash
# The project's set-up and entry points. Works on a fresh Debian machine with only Python >= 3.11:
#   ./dev.sh demo    run the router's main job locally (router + Deepgram simulator + a streamed sample)
#   ./dev.sh test    install everything needed and run the whole test suite
#   ./dev.sh bench   run the benchmarks in bench/ (not part of the tests)
# Each step is idempotent: a second run reuses the venv and skips rebuilding an unchanged package.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
VENV=${ROUTERAUDIO_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3}
APT_PACKAGES=(gcc libc6-dev python3-dev libopus-dev libmpg123-dev libopus0 libmpg123-0)

have_debs() { dpkg-query -W -f='${Status}\n' "$@" 2>/dev/null | grep -vc 'install ok installed' | grep -qx 0; }

system_deps() {
  # Build headers for the audio core (libopus, libmpg123); the wheel bundles them, the source build needs them.
  if command -v dpkg-query >/dev/null && ! have_debs libopus-dev libmpg123-dev libopus0; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
  fi
}

source_stamp() {
  find src setup.py pyproject.toml -type f \( -name '*.py' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.pyi' \
       -o -name '*.h' -o -name '*.toml' -o -name '*.wav' -o -name '*.json' \) -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
}

venv() {
  system_deps
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local stamp; stamp="$1-$(source_stamp)"
  if [ "$(cat "$VENV/.routeraudio-stamp" 2>/dev/null)" != "$stamp" ]; then
    "$VENV/bin/python" -m pip install -q --upgrade pip "setuptools>=70" wheel
    "$VENV/bin/python" -m pip install -q "Cython>=3.0.10" "setuptools-scm>=8"
    # A regular (non-editable) install: tests exercise the package exactly as users get it.
    "$VENV/bin/python" -m pip install -q --no-build-isolation ".[$1]"
    echo "$stamp" > "$VENV/.routeraudio-stamp"
  fi
}

case "${1:-}" in
  test)
    shift
    venv test
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  demo)
    shift
    venv test
    exec "$VENV/bin/routeraudio" demo "$@"
    ;;
  bench)
    shift
    venv "test,bench"
    exec "$VENV/bin/python" -m pytest bench -q -p no:cacheprovider --benchmark-columns=mean,median,ops "$@"
    ;;
  *)
    echo "usage: ./dev.sh test|demo|bench [args]" >&2
    exit 2
    ;;
esac
