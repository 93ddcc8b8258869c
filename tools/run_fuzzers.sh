#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (+ASan/UBSan) and runs each for a short time.
# Usage: tools/run_fuzzers.sh [seconds-per-target]
set -euo pipefail
secs=${1:-20}
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build-fuzz
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DQW_FUZZ=ON -DQW_CUDA=OFF -DQW_WERROR=OFF -DBUILD_TESTING=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined" >/dev/null
targets=$(cd "$build" && ninja -t targets all | grep -oE '^fuzz_[a-z_]+:' | tr -d ':' | sort -u)
ninja -C "$build" qwc $targets
mkdir -p "$build/corpus"
# Seeds: a real artifact and real safetensors from the tiny model.
if [ ! -f "$build/corpus/seed.qwart" ]; then
  "$build/compiler/qwc" make-test-model --preset tiny --seed 3 -o "$build/corpus/ckpt" >/dev/null 2>&1 || true
fi
for t in $targets; do
  corpus=$build/corpus/$t
  mkdir -p "$corpus"
  case $t in
    fuzz_safetensors) head -c 4096 "$build/corpus/ckpt/model-00002-of-00003.safetensors" > "$corpus/seed" 2>/dev/null || true ;;
  esac
  echo "== $t (${secs}s)"
  "$build/tests/fuzz/$t" -max_total_time="$secs" -rss_limit_mb=4096 -max_len=65536 "$corpus"
done
