#!/usr/bin/env bash
# The test suite: build and run every CTest test. With CI=true it also builds an
# ASan+UBSan configuration and runs the tests there, and runs each fuzz target briefly.
# GPU tests are built (when the CUDA toolkit is present) but run only through
# tools/gpu_check.sh on a GPU machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
jobs=${QW_JOBS:-$(nproc)}
"$root/tools/build.sh"
(cd "${QW_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j "$jobs" -LE gpu)
if [ "${CI:-}" = "true" ]; then
  san=$root/build-asan
  cmake -S "$root" -B "$san" -G Ninja -DQW_SANITIZE=ON -DQW_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug >/dev/null
  ninja -C "$san"
  (cd "$san" && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
     ctest --output-on-failure -j "$jobs" -LE "gpu|slow")
  "$root/tools/run_fuzzers.sh" "${QW_FUZZ_SECONDS:-15}"
fi
echo "test.sh: all tests passed"
