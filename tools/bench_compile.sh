#!/usr/bin/env bash
# Compile benchmark (issue 2), run on the GPU machine (it has the disk and RAM; no GPU used):
# writes the 7b-shape checkpoint, measures disk bandwidth, then times `qwc compile` (cold page
# cache where drop_caches is allowed) and records peak RSS. Prints one JSON object.
# Usage: tools/bench_compile.sh QWC_BINARY WORKDIR [tp]
set -euo pipefail
qwc=$1; work=$2; tp=${3:-1}
mkdir -p "$work"
ckpt=$work/ckpt7b; art=$work/m7b.qwart
t0=$(date +%s.%N)
[ -f "$ckpt/model.safetensors.index.json" ] || "$qwc" make-test-model --preset 7b --seed 1 -o "$ckpt" --tokenizer tests/data
t1=$(date +%s.%N)
sync
# Disk bandwidth with O_DIRECT (no page cache): 4 GiB written then read.
wbw=$(dd if=/dev/zero of="$work/dd.bin" bs=64M count=64 oflag=direct 2>&1 | grep -oE '[0-9.]+ [GM]B/s' | tail -1)
rbw=$(dd if="$work/dd.bin" of=/dev/null bs=64M iflag=direct 2>&1 | grep -oE '[0-9.]+ [GM]B/s' | tail -1)
rm -f "$work/dd.bin"
dropped=false
if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then dropped=true; fi
/usr/bin/time -v "$qwc" compile "$ckpt" -o "$art" --dtype fp16 --tp "$tp" 2> "$work/time.log" || { cat "$work/time.log"; exit 1; }
cold_s=$(grep -oE 'Elapsed \(wall clock\) time.*: .*' "$work/time.log" | awk '{print $NF}')
cold_rss=$(grep 'Maximum resident set size' "$work/time.log" | awk '{print $NF}')
/usr/bin/time -v "$qwc" compile "$ckpt" -o "$art" --dtype fp16 --tp "$tp" 2> "$work/time2.log"
warm_s=$(grep -oE 'Elapsed \(wall clock\) time.*: .*' "$work/time2.log" | awk '{print $NF}')
warm_rss=$(grep 'Maximum resident set size' "$work/time2.log" | awk '{print $NF}')
src_bytes=$(du -cb "$ckpt"/*.safetensors | tail -1 | awk '{print $1}')
art_bytes=$(stat -c %s "$art")
grep qwc: "$work/time.log" >&2 || true
cat <<JSON
{"make_test_model_s": $(echo "$t1 - $t0" | bc), "disk_write": "$wbw", "disk_read": "$rbw",
 "drop_caches": $dropped, "compile_cold_wall": "$cold_s", "compile_cold_peak_rss_kb": $cold_rss,
 "compile_warm_wall": "$warm_s", "compile_warm_peak_rss_kb": $warm_rss,
 "source_bytes": $src_bytes, "artifact_bytes": $art_bytes, "tp": $tp, "cpus": $(nproc)}
JSON
