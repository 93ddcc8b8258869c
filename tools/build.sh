#!/usr/bin/env bash
# Configures and builds into build/ (Release-with-debug-info, CUDA if the toolkit is present).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${QW_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -G Ninja ${QW_CMAKE_ARGS:-} >/dev/null
ninja -C "$build" ${QW_NINJA_ARGS:-}
