#!/usr/bin/env bash
# Builds the binaries the GPU machine needs (it cannot install FlatBuffers/PCRE2/httplib) and
# copies them, stripped, with the one shared library they need, into .carry/bin for the
# device tool's `carry`.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
b=${QW_BUILD_DIR:-$root/build}
ninja -C "$b" qwc qwrun qwgpu qw_gpu_tests
mkdir -p "$root/.carry/bin"
for f in compiler/qwc runtime/cli/qwrun runtime/gpu/qwgpu tests/gpu/qw_gpu_tests; do
  strip -o "$root/.carry/bin/$(basename $f)" "$b/$f"
done
cp -L /usr/lib/x86_64-linux-gnu/libcpp-httplib.so.0.11 "$root/.carry/bin/"
du -sh "$root/.carry/bin"
