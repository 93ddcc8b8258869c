#!/usr/bin/env bash
# The main job on the embedded default: build, write the tiny random-weight Qwen2 checkpoint
# (real tokenizer), compile it to an artifact, inspect and verify it, then generate text.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/tools/build.sh"
b=${QW_BUILD_DIR:-$root/build}
out=$root/out
mkdir -p "$out"
"$b/compiler/qwc" make-test-model --preset tiny --seed 1 -o "$out/tiny-ckpt"
"$b/compiler/qwc" compile "$out/tiny-ckpt" -o "$out/tiny.qwart" --dtype fp16
"$b/compiler/qwc" inspect "$out/tiny.qwart"
"$b/compiler/qwc" verify "$out/tiny.qwart"
if [ -x "$b/runtime/cli/qwrun" ]; then
  "$b/runtime/cli/qwrun" generate "$out/tiny.qwart" --device cpu -p "The capital of France is" \
    --max-tokens 24 --temperature 0
fi
