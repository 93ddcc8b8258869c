#!/usr/bin/env bash
# GPU checks on the device machine, in one call:
#   tools/gpu_check.sh [tiny|7b|all]      (default tiny)
# Uses binaries from $QW_BIN (default .carry/bin: qwc, qwrun + libcpp-httplib, qwgpu,
# qw_gpu_tests built on the CPU machine by tools/stage_gpu_bins.sh) or builds them when absent. Writes logs/JSON under $OUT (or /tmp/qw_gpu_out) and
# prints a short table last. Exit status non-zero if any check failed (a skipped GPU test
# counts as a failure).
set -u -o pipefail
MODE=${1:-tiny}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
BIN=${QW_BIN:-$ROOT/.carry/bin}
RES=${OUT:-/tmp/qw_gpu_out}       # summary + key JSON files (few: they come back)
WORK=${QW_WORK:-/tmp/qw_gpu_work}
OUTD=$WORK/logs                     # every log
mkdir -p "$RES" "$WORK" "$OUTD"
: > "$RES/summary.txt"
export PYTHONUNBUFFERED=1 QW_KERNEL_CACHE=$WORK/kcache
if [ ! -x "$BIN/qwgpu" ]; then
  echo "building (no carried binaries in $BIN)"
  cmake -S "$ROOT" -B "$WORK/build" -G Ninja -DCMAKE_CUDA_ARCHITECTURES=90a >/dev/null &&
    ninja -C "$WORK/build" qwc qwrun qwgpu qw_gpu_tests || exit 1
  BIN=$WORK/build/bin; mkdir -p "$BIN"
  cp "$WORK/build/runtime/gpu/qwgpu" "$WORK/build/tests/gpu/qw_gpu_tests" "$WORK/build/compiler/qwc" \
     "$WORK/build/runtime/cli/qwrun" "$BIN/"
fi
qmake() { "$BIN/qwc" make-test-model --preset "$1" --seed "$2" -o "$3" --tokenizer "$ROOT/tests/data"; }
qcompile() { "$BIN/qwc" compile "$1" -o "$2" --dtype "$3" --arch "$4"; }
declare -a ROWS
FAILS=0
row() {
  local line; line=$(printf '%-36s %-5s %s' "$1" "$2" "$3")
  ROWS+=("$line"); echo "$line" >> "$RES/summary.txt"
  [ "$2" = ok ] || [ "$2" = info ] || FAILS=$((FAILS+1))
}
run() { # name, command...
  local name=$1; shift
  echo "=== $name: $*"
  "$@" >"$OUTD/$name.log" 2>&1; local rc=$?
  tail -n 25 "$OUTD/$name.log"
  return $rc
}
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv | tee "$OUTD/gpu.txt"

gen_tokens() { python3 -c "import numpy as np,sys; r=np.random.default_rng(); r.integers(0,150000,int(sys.argv[1]),dtype=np.int32).tofile(sys.argv[2])" "$1" "$2"; }

if [ "$MODE" = tiny ] || [ "$MODE" = all ]; then
  run kernel_tests "$BIN/qw_gpu_tests"; rc=$?
  if [ $rc -ne 0 ] || grep -q "skipped: no GPU" "$OUTD/kernel_tests.log"; then row "kernel tests (f16+bf16)" FAIL "rc=$rc"; else row "kernel tests (f16+bf16)" ok "$(grep -o 'assertions:.*' "$OUTD/kernel_tests.log" | head -1)"; fi
  rm -rf "$WORK/tiny"; qmake tiny $RANDOM "$WORK/tiny" >/dev/null 2>&1 || row "make tiny" FAIL ""
  for dt in fp16 bf16; do
    A=$WORK/tiny_$dt.qwart
    qcompile "$WORK/tiny" "$A" $dt sm_90a,sm_80 >"$OUTD/compile_tiny_$dt.log" 2>&1 || { row "compile tiny $dt" FAIL ""; continue; }
    gen_tokens 512 "$WORK/tok512.i32"
    run logits_tiny_$dt "$BIN/qwgpu" logits "$A" "$WORK/tok512.i32" "$WORK/ours_$dt.f32" --chunk 200
    head -c 256 "$WORK/tok512.i32" > "$WORK/prompt64.i32"
    "$BIN/qwgpu" greedy "$A" "$WORK/prompt64.i32" 64 > "$WORK/greedy_$dt.json" 2>"$OUTD/greedy_tiny_$dt.log"
    run cmp_tiny_$dt python3 tools/compare_logits.py "$WORK/tiny" "$WORK/tok512.i32" "$WORK/ours_$dt.f32" --dtype $dt \
        --greedy "$WORK/greedy_$dt.json" --prompt-len 64; rc=$?
    row "tiny $dt logits+greedy vs HF fp32" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/cmp_tiny_$dt.log" | cut -c1-200)"
    run batch_tiny_$dt "$BIN/qwgpu" batch-check "$A" --seqs 8 --steps 24; rc=$?
    row "tiny $dt batched==alone (8 seqs)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/batch_tiny_$dt.log")"
  done
  for src in cubin ptx nvrtc; do
    QW_KERNEL_SOURCE=$src run startup_tiny_$src "$BIN/qwgpu" startup "$WORK/tiny_fp16.qwart" --no-floors; rc=$?
    row "tiny kernels via $src" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(grep -o '"source": "[^"]*"' "$OUTD/startup_tiny_$src.log") $(grep -o '"module_load_s": [0-9.e-]*' "$OUTD/startup_tiny_$src.log")"
  done
  if command -v compute-sanitizer >/dev/null; then
    run sanitizer_tiny compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/qwgpu" batch-check "$WORK/tiny_fp16.qwart" --seqs 3 --steps 4; rc=$?
    row "compute-sanitizer memcheck tiny" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(grep -o 'ERROR SUMMARY.*' "$OUTD/sanitizer_tiny.log" | head -1)"
  fi
fi

if [ "$MODE" = 7b ] || [ "$MODE" = all ]; then
  C7=$WORK/ck7b; A7=$WORK/m7b_fp16.qwart
  df -h "$WORK" | tail -1
  t0=$(date +%s)
  [ -f "$C7/config.json" ] || qmake 7b 7 "$C7" >"$OUTD/make7b.log" 2>&1 || row "make 7b" FAIL ""
  t1=$(date +%s)
  [ -f "$A7" ] || qcompile "$C7" "$A7" fp16 sm_90a,sm_80 >"$OUTD/compile7b.log" 2>&1 || row "compile 7b" FAIL "$(tail -1 "$OUTD/compile7b.log")"
  t2=$(date +%s)
  row "7b make / compile (s)" info "$((t1 - t0)) / $((t2 - t1))"
  # Warm page cache: read it once.
  cat "$A7" > /dev/null
  for i in 1 2; do
    run startup7b_warm$i "$BIN/qwgpu" startup "$A7" --check-device -o "$RES/startup7b_warm$i.json"; rc=$?
  done
  row "7b startup warm (s to ready)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(python3 -c "import json;d=json.load(open('$RES/startup7b_warm2.json'));print('ready %.2f s from process start, total %.2f, h2d %.1f GB/s, floor %.2f s, device==file %s'%(d['process_start_to_ready_s'],d['total_to_ready_s'],d['weights']['h2d_gbps'],d['floors']['warm_floor_s'],d.get('device_check',{}).get('equal')))" 2>&1)"
  run startup7b_sweep timeout 240 "$BIN/qwgpu" startup "$A7" --no-executor --sweep --no-floors -o "$RES/startup7b_sweep.json"
  for m in host-register plain; do
    run startup7b_$m timeout 120 "$BIN/qwgpu" startup "$A7" --no-executor --no-floors --method $m
    row "7b load via $m" info "$(grep -o '"h2d_gbps": [0-9.]*' "$OUTD/startup7b_$m.log" || echo 'no result (timeout 120 s or error)')"
  done
  row "7b load method sweep" info "$(python3 -c "import json;d=json.load(open('$RES/startup7b_sweep.json'));print(' '.join('%s/%d:%.1f'%(r['method'],r['threads'],r.get('gbps',0)) for r in d['method_sweep']))" 2>&1)"
  run hf_load7b python3 tools/bench_transformers_load.py "$C7" --dtype fp16
  row "7b transformers from_pretrained" info "$(tail -n1 "$OUTD/hf_load7b.log" | cut -c1-160)"
  if sync && echo 3 > /proc/sys/vm/drop_caches 2>/dev/null; then
    run startup7b_cold "$BIN/qwgpu" startup "$A7" -o "$RES/startup7b_cold.json"
    sync; echo 3 > /proc/sys/vm/drop_caches
    run startup7b_cold_direct "$BIN/qwgpu" startup "$A7" --direct -o "$RES/startup7b_cold_direct.json"
    row "7b startup cold (pread / O_DIRECT)" info "$(python3 -c "import json;a=json.load(open('$RES/startup7b_cold.json'));b=json.load(open('$RES/startup7b_cold_direct.json'));print('%.2f s / %.2f s; disk floor %.2f s (%.2f GB/s)'%(a['process_start_to_ready_s'],b['process_start_to_ready_s'],b['floors']['cold_floor_s'],b['floors']['disk_direct_read_gbps']))" 2>&1)"
  else
    row "7b startup cold" info "drop_caches not permitted"
  fi
  gen_tokens 512 "$WORK/tok512.i32"
  run logits7b "$BIN/qwgpu" logits "$A7" "$WORK/tok512.i32" "$WORK/ours7b.f32" --chunk 300
  run cmp7b python3 tools/compare_logits.py "$C7" "$WORK/tok512.i32" "$WORK/ours7b.f32" --dtype fp16; rc=$?
  row "7b fp16 logits vs HF fp32 (512)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/cmp7b.log" | cut -c1-200)"
  run bench7b "$BIN/qwrun" bench "$A7" --device gpu --kv-cache-gb 16 --out "$RES/bench7b.json"
  row "7b bench" info "$(python3 -c "import json;d=json.load(open('$RES/bench7b.json'));print('ttft128 %.1f ms ttft2048 %.1f ms decode tok/s b1 %.1f b8 %.1f b32 %.1f (b1 %.0f GB/s of weights)'%(d['ttft_ms']['128'],d['ttft_ms']['2048'],d['decode_tok_s']['1'],d['decode_tok_s']['8'],d['decode_tok_s']['32'],d['weight_bytes']*d['decode_tok_s']['1']/1e9))" 2>&1)"
fi

[ -f "$OUTD/hf_load7b.log" ] && tail -n1 "$OUTD/hf_load7b.log" > "$RES/hf_load7b.json"
echo
echo "==================== GPU check ($MODE) on $(head -2 "$OUTD/gpu.txt" | tail -1 | cut -d, -f1) ===================="
for r in "${ROWS[@]}"; do echo "$r"; done
echo "failures: $FAILS"
exit $((FAILS > 0))
