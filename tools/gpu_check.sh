#!/usr/bin/env bash
# GPU checks on the device machine, in one call:
#   tools/gpu_check.sh [tiny|7b|all|quick|perf|yarn ...]      (default tiny)
#     tiny: kernel tests, tiny logits/greedy/batched (f16, bf16), kernel sources, sanitizer
#     7b:   startup (warm/cold/sweeps), 7b logits, bench + sweep + transformers peer
#     quick: tiny without the kernel-source variants, then perf
#     perf: 7b make/compile, 7b logits, qwrun bench (ceilings, floors), qwgpu sweep, peer
#     yarn: 7b with rope_scaling yarn x4, a 40K-token prompt, last 8 logits vs transformers
#     tp2:  (two GPUs) tiny and 7b compiled --tp 2 vs --tp 1: logits, greedy, batched decode,
#           then qwrun bench of both (startup, decode b1 latency ratio, throughput)
#   Several modes may be given: tools/gpu_check.sh quick yarn
#   QW_PEER_COMPILE=1 adds transformers' static cache + torch.compile to the peer.
# Uses binaries from $QW_BIN (default .carry/bin: qwc, qwrun + libcpp-httplib, qwgpu,
# qw_gpu_tests built on the CPU machine by tools/stage_gpu_bins.sh) or builds them when absent. Writes logs/JSON under $OUT (or /tmp/qw_gpu_out) and
# prints a short table last. Exit status non-zero if any check failed (a skipped GPU test
# counts as a failure).
set -u -o pipefail
MODES=" ${*:-tiny} "
has() { case "$MODES" in *" $1 "*) return 0;; esac; return 1; }
TINY_CORE=0; TINY_SRC=0; S7_STARTUP=0; S7_PERF=0; YARN=0; TP2=0
has tiny && { TINY_CORE=1; TINY_SRC=1; }
has all && { TINY_CORE=1; TINY_SRC=1; S7_STARTUP=1; S7_PERF=1; }
has 7b && { S7_STARTUP=1; S7_PERF=1; }
has quick && { TINY_CORE=1; S7_PERF=1; }
has perf && S7_PERF=1
has yarn && YARN=1
has tp2 && TP2=1
MODE=$(echo $MODES | tr ' ' '+')
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

if [ $TINY_CORE = 1 ]; then
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
    # Decode batches 1..40 against the CPU executor: CUDA-core GEMV, tensor-core and cuBLAS paths.
    run cpucheck_tiny_$dt "$BIN/qwgpu" cpu-check "$A" --seqs 40; rc=$?
    row "tiny $dt GPU==CPU executor (1..40 rows)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/cpucheck_tiny_$dt.log" | cut -c1-160)"
    run prefix_tiny_$dt "$BIN/qwgpu" prefix-check "$A" --prefix 300 --steps 16; rc=$?
    row "tiny $dt prefix cache==recompute" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/prefix_tiny_$dt.log" | cut -c1-160)"
  done
  grep -h "flash prefill attention" "$OUTD/kernel_tests.log" | tr '\n' ';' > "$RES/flash_err.txt"
  for src in $([ $TINY_SRC = 1 ] && echo cubin ptx nvrtc); do
    QW_KERNEL_SOURCE=$src run startup_tiny_$src "$BIN/qwgpu" startup "$WORK/tiny_fp16.qwart" --no-floors; rc=$?
    row "tiny kernels via $src" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(grep -o '"source": "[^"]*"' "$OUTD/startup_tiny_$src.log") $(grep -o '"module_load_s": [0-9.e-]*' "$OUTD/startup_tiny_$src.log")"
  done
  if command -v compute-sanitizer >/dev/null; then
    run sanitizer_tiny compute-sanitizer --tool memcheck --error-exitcode 3 "$BIN/qwgpu" batch-check "$WORK/tiny_fp16.qwart" --seqs 3 --steps 4; rc=$?
    row "compute-sanitizer memcheck tiny" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(grep -o 'ERROR SUMMARY.*' "$OUTD/sanitizer_tiny.log" | head -1)"
  fi
fi

C7=$WORK/ck7b; A7=$WORK/m7b_fp16.qwart
if [ $S7_STARTUP = 1 ] || [ $S7_PERF = 1 ] || [ $YARN = 1 ] || [ $TP2 = 1 ]; then
  df -h "$WORK" | tail -1
  t0=$(date +%s)
  [ -f "$C7/config.json" ] || qmake 7b 7 "$C7" >"$OUTD/make7b.log" 2>&1 || row "make 7b" FAIL ""
  t1=$(date +%s)
  [ -f "$A7" ] || qcompile "$C7" "$A7" fp16 sm_90a,sm_80 >"$OUTD/compile7b.log" 2>&1 || row "compile 7b" FAIL "$(tail -1 "$OUTD/compile7b.log")"
  t2=$(date +%s)
  row "7b make / compile (s)" info "$((t1 - t0)) / $((t2 - t1))"
fi
if [ $S7_STARTUP = 1 ]; then
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
fi
if [ $S7_PERF = 1 ]; then
  run startup7b_ready "$BIN/qwgpu" startup "$A7" --no-floors -o "$RES/startup7b_ready.json"; rc=$?
  row "7b startup warm (s to ready)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(python3 -c "import json;d=json.load(open('$RES/startup7b_ready.json'));print('ready %.2f s from process start; %s graphs captured in %.3f s'%(d['process_start_to_ready_s'],d['kv_cache']['graphs'],d['stages']['graph_capture_s']))" 2>&1)"
  gen_tokens 512 "$WORK/tok512.i32"
  run logits7b "$BIN/qwgpu" logits "$A7" "$WORK/tok512.i32" "$WORK/ours7b.f32" --chunk 300
  run cmp7b python3 tools/compare_logits.py "$C7" "$WORK/tok512.i32" "$WORK/ours7b.f32" --dtype fp16; rc=$?
  row "7b fp16 logits vs HF fp32 (512)" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/cmp7b.log" | cut -c1-200)"
  run bench7b "$BIN/qwrun" bench "$A7" --device gpu --kv-cache-gb 16 --decode-steps 256 --out "$RES/bench7b.json"
  row "7b bench" info "$(python3 -c "import json;d=json.load(open('$RES/bench7b.json'));print('ttft128 %.1f ms ttft2048 %.1f ms decode tok/s b1 %.1f b8 %.1f b32 %.1f; mem used %.1f GB'%(d['ttft_ms']['128'],d['ttft_ms']['2048'],d['decode_tok_s']['1'],d['decode_tok_s']['8'],d['decode_tok_s']['32'],d['gpu_memory']['device_used_bytes']/1e9))" 2>&1)"
  row "7b ceilings" info "$(python3 -c "import json;d=json.load(open('$RES/bench7b.json'))['ceilings'];print('D2D copy %.0f GB/s, cuBLAS 8192^3 %.0f TFLOP/s, gate_up shape %.0f TFLOP/s'%(d['d2d_copy_gbps'],d['cublas_gemm_8192_tflops'],d['cublas_gate_up_tflops']))" 2>&1)"
  row "7b floors (floor/measured)" info "$(python3 -c "
import json;f=json.load(open('$RES/bench7b.json'))['floors']
print(' '.join('b%s %.3f/%.3f ms=%.0f%%'%(k,v['floor_ms'],v['measured_ms'],100*v['ratio']) for k,v in f['decode'].items()),
      ' '.join('prefill%s %.1f/%.1f ms=%.0f%%'%(k,v['floor_ms'],v['measured_ms'],100*v['ratio']) for k,v in f['prefill'].items()))" 2>&1)"
  row "7b graph replay ms (GPU only)" info "$(python3 -c "import json;d=json.load(open('$RES/bench7b.json'))['graph_replay_ms'];print(' '.join('b%s %.3f'%(k,v) for k,v in d.items()))" 2>&1)"
  run sweep7b "$BIN/qwgpu" sweep "$A7" -o "$RES/sweep7b.json"; rc=$?
  row "7b sweep (pdl/gemv/flash A-B)" $([ $rc -eq 0 ] && echo info || echo FAIL) "see sweep7b.log"
  if [ "${QW_SKIP_NCU:-0}" != 1 ] && command -v ncu >/dev/null; then  # per-kernel table of one decode step at batch 1 (no graphs)
    head -c 256 "$WORK/tok512.i32" > "$WORK/prompt64.i32"
    M=gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__registers_per_thread
    QW_GRAPH_MAX=0 run ncu7b timeout 150 ncu --clock-control none --metrics $M --csv \
      -k regex:"gemv_|attention_paged|attention_combine|rmsnorm|qkv_rope|embedding" --launch-skip 87 --launch-count 12 \
      "$BIN/qwgpu" greedy "$A7" "$WORK/prompt64.i32" 3
    QW_GRAPH_MAX=0 run ncu7b_lm timeout 100 ncu --clock-control none --metrics $M --csv \
      -k regex:"gemv_hidden_b1" --launch-skip 29 --launch-count 1 "$BIN/qwgpu" greedy "$A7" "$WORK/prompt64.i32" 3
    grep '^"' "$OUTD/ncu7b.log" "$OUTD/ncu7b_lm.log" > "$RES/ncu_decode_b1.csv"
    row "7b ncu decode b1 (one layer + lm_head)" info "$(python3 tools/ncu_table.py "$RES/ncu_decode_b1.csv" 2>&1 | tail -n 14 | tr '\n' '|' | cut -c1-900)"
  fi
  [ "${QW_SKIP_PEER:-0}" = 1 ] || run peer7b timeout 420 python3 tools/bench_transformers_peer.py "$C7" --dtype fp16 --ours "$RES/bench7b.json" \
      $([ "${QW_PEER_COMPILE:-0}" = 1 ] && echo --compile) -o "$RES/peer7b.json"
  [ "${QW_SKIP_PEER:-0}" = 1 ] || row "7b transformers peer" info "$(python3 -c "
import json;d=json.load(open('$RES/peer7b.json'))
print(' '.join('%s x%.2f'%(k,v['speedup']) for k,v in d['side_by_side'].items()))" 2>&1)"
fi
if [ $YARN = 1 ]; then
  CY=$WORK/ck7b_yarn; AY=$WORK/m7b_yarn.qwart
  mkdir -p "$CY"; for f in "$C7"/*; do [ "$(basename "$f")" = config.json ] || ln -sf "$f" "$CY/"; done
  python3 -c "import json;c=json.load(open('$C7/config.json'));c['rope_scaling']={'type':'yarn','factor':4.0,'original_max_position_embeddings':32768};json.dump(c,open('$CY/config.json','w'),indent=1)"
  [ -f "$AY" ] || qcompile "$CY" "$AY" fp16 sm_90a >"$OUTD/compile7b_yarn.log" 2>&1 || row "compile 7b yarn" FAIL "$(tail -1 "$OUTD/compile7b_yarn.log")"
  gen_tokens 40960 "$WORK/tok40k.i32"
  run logits7b_yarn "$BIN/qwgpu" logits "$AY" "$WORK/tok40k.i32" "$WORK/ours40k.f32" --chunk 8192 --last 8 --kv-gb 8
  run cmp7b_yarn timeout ${QW_YARN_REF_TIMEOUT:-300} python3 tools/compare_logits.py "$CY" "$WORK/tok40k.i32" "$WORK/ours40k.f32" --dtype fp16 --last 8 --attn sdpa; rc=$?
  row "7b yarn x4, 40960-token prompt, last 8" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/cmp7b_yarn.log" | cut -c1-200); ours: $(grep chunk "$OUTD/logits7b_yarn.log" | tr '\n' ' ' | cut -c1-200)"
fi

if [ $TP2 = 1 ]; then
  export NCCL_NVLS_ENABLE=0  # never NVLink multicast on shared GPUs (KINDS.md)
  NG=$(nvidia-smi -L | wc -l)
  [ "$NG" -ge 2 ] || row "tp2: two GPUs" FAIL "only $NG GPU(s)"
  [ -f "$WORK/tiny/config.json" ] || qmake tiny 5 "$WORK/tiny" >/dev/null 2>&1
  for m in tiny 7b; do
    CK=$([ $m = tiny ] && echo "$WORK/tiny" || echo "$C7")
    A1=$WORK/${m}_tp1.qwart; A2=$WORK/${m}_tp2.qwart
    [ $m = 7b ] && [ -f "$A7" ] && A1=$A7
    [ -f "$A1" ] || qcompile "$CK" "$A1" fp16 sm_90a >"$OUTD/compile_${m}_tp1.log" 2>&1
    [ -f "$A2" ] || "$BIN/qwc" compile "$CK" -o "$A2" --dtype fp16 --arch sm_90a --tp 2 >"$OUTD/compile_${m}_tp2.log" 2>&1 || row "compile $m tp2" FAIL "$(tail -1 "$OUTD/compile_${m}_tp2.log")"
    V=$(python3 -c "import json;print(json.load(open('$CK/config.json'))['vocab_size'])")
    gen_tokens 512 "$WORK/tp_tok.i32"; head -c 256 "$WORK/tp_tok.i32" > "$WORK/tp_prompt.i32"
    run tp1_logits_$m "$BIN/qwgpu" logits "$A1" "$WORK/tp_tok.i32" "$WORK/tp1_$m.f32" --chunk 200
    run tp2_logits_$m "$BIN/qwgpu" logits "$A2" "$WORK/tp_tok.i32" "$WORK/tp2_$m.f32" --chunk 200
    "$BIN/qwgpu" greedy "$A1" "$WORK/tp_prompt.i32" 64 > "$WORK/tp1_greedy_$m.json" 2>"$OUTD/tp1_greedy_$m.log"
    "$BIN/qwgpu" greedy "$A2" "$WORK/tp_prompt.i32" 64 > "$WORK/tp2_greedy_$m.json" 2>"$OUTD/tp2_greedy_$m.log"
    run tp_cmp_$m python3 tools/compare_tp_logits.py "$WORK/tp1_$m.f32" "$WORK/tp2_$m.f32" "$V"         --greedy1 "$WORK/tp1_greedy_$m.json" --greedyN "$WORK/tp2_greedy_$m.json"; rc=$?
    row "$m tp2 logits+greedy vs tp1" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/tp_cmp_$m.log" | cut -c1-200)"
    run tp2_batch_$m "$BIN/qwgpu" batch-check "$A2" --seqs 8 --steps 24; rc=$?
    row "$m tp2 batched==alone" $([ $rc -eq 0 ] && echo ok || echo FAIL) "$(tail -n1 "$OUTD/tp2_batch_$m.log")"
  done
  for t in 1 2; do
    A=$([ $t = 1 ] && echo "$WORK/7b_tp1.qwart" || echo "$WORK/7b_tp2.qwart"); [ $t = 1 ] && [ -f "$A7" ] && A=$A7
    run bench7b_tp$t "$BIN/qwrun" bench "$A" --device gpu --kv-cache-gb 16 --decode-steps 128 --out "$RES/bench7b_tp$t.json"
  done
  row "7b tp2 vs tp1 bench" info "$(python3 -c "
import json;a=json.load(open('$RES/bench7b_tp1.json'));b=json.load(open('$RES/bench7b_tp2.json'))
d1,d2=a['decode_tok_s'],b['decode_tok_s']
print('b1 latency tp2/tp1 %.2f (goal <= 0.65); tok/s b1 %.0f/%.0f b32 %.0f/%.0f; ttft2048 %.1f/%.1f ms; load %.2f/%.2f s'%(d1['1']/d2['1'],d1['1'],d2['1'],d1['32'],d2['32'],a['ttft_ms']['2048'],b['ttft_ms']['2048'],a['load_seconds'],b['load_seconds']))" 2>&1 | cut -c1-220)"
fi

[ -f "$OUTD/hf_load7b.log" ] && tail -n1 "$OUTD/hf_load7b.log" > "$RES/hf_load7b.json"
echo
echo "==================== GPU check ($MODE) on $(head -2 "$OUTD/gpu.txt" | tail -1 | cut -d, -f1) ===================="
for r in "${ROWS[@]}"; do echo "$r"; done
echo "failures: $FAILS"
exit $((FAILS > 0))
