#!/usr/bin/env bash
# The tokenizer's one device-machine run: HF goldens (ids + chat template) and the encode
# throughput benchmark, ours vs HF tokenizers, single thread, same corpus, same machine.
# Needs the standalone benchmark binary in .carry/ (built here, see below) and Python with
# tokenizers + transformers. Outputs land in $OUT (default ./out):
#   goldens_ids.jsonl, chat_goldens.json -> tests/data/tokenizer/
#   bench.json -> bench/results/tokenizer_<device>_<date>.json
# Build the binary first (on the dev machine):
#   cmake -S . -B build-tok-carry -G Ninja -DQW_CUDA=OFF -DCMAKE_BUILD_TYPE=Release \
#     -DCMAKE_EXE_LINKER_FLAGS="-static-libstdc++ -static-libgcc"
#   ninja -C build-tok-carry bench_tokenizer && mkdir -p .carry && cp build-tok-carry/tests/tokenizer/bench_tokenizer .carry/
set -uo pipefail
OUT=${OUT:-out}
W=$(mktemp -d)
mkdir -p "$OUT"
export TOKENIZERS_PARALLELISM=false RAYON_NUM_THREADS=1
python3 tools/tokenizer_corpus.py golden "$W/corpus.jsonl"
python3 tools/gen_tokenizer_goldens.py ids "$W/corpus.jsonl" tests/data/tokenizer.json "$OUT/goldens_ids.jsonl" || echo "ids goldens FAILED"
python3 tools/gen_tokenizer_goldens.py chat tests/data/tokenizer.json \
  tests/data/qwen2.5-instruct-chat-template.jinja "$OUT/chat_goldens.json" || echo "chat goldens FAILED"
python3 tools/tokenizer_corpus.py bench "$W/bench.bin" 12
.carry/bench_tokenizer --hf-dir tests/data --corpus "$W/bench.bin" --passes 3 \
  --ids-out "$W/ours.bin" --json-out "$W/ours.json" || echo "ours bench FAILED"
python3 tools/gen_tokenizer_goldens.py bench tests/data/tokenizer.json "$W/bench.bin" \
  "$W/ours.bin" "$W/ours.json" "$OUT/bench.json" || echo "hf bench FAILED"
(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1; date -u +%FT%TZ) > "$OUT/device.txt"
rm -rf "$W"
