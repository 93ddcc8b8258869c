#!/usr/bin/env bash
# INT4 on the GPU, one device call: the GPU unit tests, the tiny model (FP16 and INT4) against
# the CPU executor (qwgpu cpu-check: prefill + decode batches 1..40, every GEMM path), greedy
# text GPU == CPU, device vs host sampling; then the 7b shape as INT4 (RTN, g128) and FP16:
# qwrun bench of both in the same run (decode tok/s, TTFT) and the transformers FP16 peer at
# batch 1. Sections in order of importance; JSON under $OUT; a table last.
# Usage: tools/int4_gpu_check.sh BIN_DIR     (QW_INT4_7B=0 skips the 7b part; QW_SKIP_FP16=1,
# QW_SKIP_PEER=1 skip the FP16 bench / transformers peer; QW_SKIP_UNIT=1 skips qw_gpu_tests; QW_INT4_SPLIT_SWEEP="1 2 4" benches
# the INT4 artifact with each split-K factor forced through QW_INT4_SPLITS)
set -u -o pipefail
BIN=$1
W=/tmp/qw_int4_work; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export PYTHONUNBUFFERED=1 QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
if [ "${QW_SKIP_UNIT:-0}" != 1 ]; then
  timeout 150 $BIN/qw_gpu_tests > $W/qw_gpu_tests.txt 2>&1
  echo "qw_gpu_tests rc=$?: $(tail -2 $W/qw_gpu_tests.txt | tr '\n' ' ')"
  grep -B2 -A12 "ERROR" $W/qw_gpu_tests.txt | head -40 > $R/qw_gpu_tests_errors.txt
fi
$BIN/qwc make-test-model --preset tiny --seed 3 -o $W/tiny --tokenizer tests/data > /dev/null 2>&1
$BIN/qwc compile $W/tiny -o $W/tiny.qwart --arch sm_90a > $W/c1.log 2>&1 || tail -2 $W/c1.log
$BIN/qwc compile $W/tiny -o $W/tiny_int4.qwart --dtype int4-gptq --rtn --group-size 64 --arch sm_90a > $W/c2.log 2>&1 ||
  tail -2 $W/c2.log
for m in tiny tiny_int4; do
  $BIN/qwgpu cpu-check $W/$m.qwart --seqs 40 > $W/cpucheck_$m.txt 2>&1
  echo "$m cpu-check rc=$?: $(tail -1 $W/cpucheck_$m.txt)"
  $BIN/qwgpu batch-check $W/$m.qwart --seqs 8 --steps 16 > $W/batch_$m.txt 2>&1
  echo "$m batch-check rc=$?: $(tail -1 $W/batch_$m.txt)"
  for d in gpu cpu; do
    $BIN/qwrun generate $W/$m.qwart --device $d -p "Hello" -n 24 --temperature 0 > $W/gen_${m}_$d.txt 2> $W/gen_${m}_$d.err
  done
  cmp -s $W/gen_${m}_gpu.txt $W/gen_${m}_cpu.txt && echo "$m greedy: GPU text == CPU text" ||
    { echo "$m greedy: GPU and CPU text DIFFER"; tail -2 $W/gen_${m}_gpu.err; }
done
tools/sampling_device_vs_host.sh $BIN $W/tiny.qwart $W
mark "tiny checks done"
[ "${QW_INT4_7B:-1}" = 1 ] || exit 0
$BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data > /dev/null 2>&1
t=$(date +%s)
$BIN/qwc compile $W/ck7b -o $W/m7b_int4.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a 2>&1 | tail -1
mark "7b int4 compile: $(( $(date +%s) - t )) s"
$BIN/qwgpu cpu-check $W/m7b_int4.qwart --seqs 4 > $W/cpucheck_7b_int4.txt 2>&1
echo "7b int4 cpu-check rc=$?: $(tail -1 $W/cpucheck_7b_int4.txt)"
mark "7b int4 cpu-check done"
$BIN/qwrun bench $W/m7b_int4.qwart --device gpu --kv-cache-gb 16 --batch-sizes 1 8 16 32 64 --decode-steps 128 \
  --out $R/bench7b_int4.json > /dev/null 2> $W/bench_int4.err || tail -3 $W/bench_int4.err
mark "7b int4 bench done"
[ -n "${QW_INT4_SPLIT_SWEEP:-}" ] && for s in $QW_INT4_SPLIT_SWEEP; do
  QW_INT4_SPLITS=$s $BIN/qwrun bench $W/m7b_int4.qwart --device gpu --kv-cache-gb 16 --batch-sizes 1 8 16 \
    --decode-steps 64 --prompt-lengths 128 --out $W/sweep_$s.json > /dev/null 2>&1
  echo "splits $s: $(python3 -c "import json; print(json.load(open('$W/sweep_$s.json'))['decode_tok_s'])")"
done
if [ "${QW_SKIP_FP16:-0}" != 1 ]; then
$BIN/qwc compile $W/ck7b -o $W/m7b.qwart --arch sm_90a 2>&1 | tail -1
$BIN/qwrun bench $W/m7b.qwart --device gpu --kv-cache-gb 16 --batch-sizes 1 8 16 32 64 --decode-steps 128 \
  --out $R/bench7b_fp16.json > /dev/null 2> $W/bench_fp16.err || tail -3 $W/bench_fp16.err
mark "7b fp16 bench done"
fi
[ "${QW_SKIP_PEER:-0}" = 1 ] || timeout 200 python3 tools/bench_transformers_peer.py $W/ck7b --dtype fp16 --batches 1 --new-tokens 64 \
  -o $R/peer7b.json > $W/peer.log 2>&1 || tail -3 $W/peer.log
mark "transformers peer done"
python3 - "$R" <<'PY'
import json, os, sys
r = sys.argv[1]
def load(n):
    p = f"{r}/{n}.json"
    return json.load(open(p)) if os.path.exists(p) else None
q, f, p = load("bench7b_int4"), load("bench7b_fp16"), load("peer7b")
for name, d in (("int4", q), ("fp16", f)):
    if d:
        print(f"7b {name}: decode tok/s " + " ".join(f"b{k} {v:.1f}" for k, v in d["decode_tok_s"].items()) +
              f"; ttft128 {d['ttft_ms']['128']:.1f} ms ttft2048 {d['ttft_ms']['2048']:.1f} ms; "
              f"weights {d.get('gpu_memory', {}).get('weights_bytes', 0) / 1e9:.2f} GB")
if q and f:
    print("int4/fp16 decode: " + " ".join(f"b{k} x{q['decode_tok_s'][k] / v:.2f}" for k, v in f["decode_tok_s"].items() if k in q["decode_tok_s"]))
if p:
    print("transformers peer: " + json.dumps(p)[:400])
PY
