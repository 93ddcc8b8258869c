#!/usr/bin/env bash
# A/B of a runtime switch on the 7b shape in one device call (both sides in the same run, so
# the ratio is meaningful): attention / kernel GPU unit tests, the tiny model against the CPU
# executor (FP16 and INT4), the 7b FP16 and INT4 (RTN g128) artifacts checked against the CPU
# executor, then `qwrun bench` of each artifact as built (A) and with $QW_AB set (B), the
# INT4 startup breakdown and a step trace at batch 1. JSON under $OUT; a table last.
# Usage: tools/decode_ab_check.sh BIN_DIR   (QW_AB="QW_FUSED_ATTN=1" by default; several B
# sides separated by ';', e.g. QW_AB="QW_L2_PREFETCH=0,64,0,0;QW_L2_PREFETCH=32,64,32,32", each
# also cpu-checked on the tiny models; QW_AB_TESTS: doctest -tc filter for qw_gpu_tests,
# default '*attention*,*GEMV*'; QW_AB_BATCHES: decode batch sizes, default "1 8 16 32")
set -u -o pipefail
BIN=$1
AB=${QW_AB:-QW_FUSED_ATTN=1}
W=/tmp/qw_ab_work; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
mark "device: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1); B side: $AB"
QUICK=${QW_AB_QUICK:-0}  # 1: benches only (with QW_AB_REUSE=1: artifacts of an earlier call)
[ "$QUICK" = 1 ] || timeout 150 $BIN/qw_gpu_tests -tc="${QW_AB_TESTS:-*attention*,*GEMV*}" > $W/unit.txt 2>&1
[ "$QUICK" = 1 ] || echo "qw_gpu_tests rc=$?: $(tail -2 $W/unit.txt | tr '\n' ' ')"
[ "$QUICK" = 1 ] || { grep -B2 -A12 "ERROR" $W/unit.txt | head -40; cp $W/unit.txt $R/qw_gpu_tests.txt; }
if [ "$QUICK" != 1 ]; then
  $BIN/qwc make-test-model --preset tiny --seed 3 -o $W/tiny --tokenizer tests/data > /dev/null 2>&1
  $BIN/qwc compile $W/tiny -o $W/tiny.qwart --arch sm_90a > $W/c1.log 2>&1 || tail -2 $W/c1.log
  $BIN/qwc compile $W/tiny -o $W/tiny_int4.qwart --dtype int4-gptq --rtn --group-size 64 --arch sm_90a \
    > $W/c2.log 2>&1 || tail -2 $W/c2.log
fi
IFS=';' read -r -a SIDES <<< "$AB"
for m in tiny tiny_int4; do
  [ "$QUICK" = 1 ] && break
  $BIN/qwgpu cpu-check $W/$m.qwart --seqs 40 > $W/cpucheck_$m.txt 2>&1
  echo "$m cpu-check rc=$?: $(tail -1 $W/cpucheck_$m.txt)"
  for i in "${!SIDES[@]}"; do
    env ${SIDES[$i]} $BIN/qwgpu cpu-check $W/$m.qwart --seqs 40 > $W/cpucheck_${m}_B$i.txt 2>&1
    echo "$m cpu-check with ${SIDES[$i]} rc=$?: $(tail -1 $W/cpucheck_${m}_B$i.txt)"
  done
done
mark "tiny checks done"
# QW_AB_REUSE=1: keep the 7b artifacts of an earlier call on this machine (same binaries).
if [ "${QW_AB_REUSE:-0}" != 1 ] || [ ! -f $W/m7b_int4.qwart ]; then
  $BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data > /dev/null 2>&1
  $BIN/qwc compile $W/ck7b -o $W/m7b_fp16.qwart --arch sm_90a 2>&1 | tail -1
  $BIN/qwc compile $W/ck7b -o $W/m7b_int4.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a 2>&1 | tail -1
  rm -rf $W/ck7b
fi
mark "7b artifacts built"
for m in fp16 int4; do
  [ "$QUICK" = 1 ] && break
  $BIN/qwgpu cpu-check $W/m7b_$m.qwart --seqs 4 > $W/cpucheck_7b_$m.txt 2>&1
  echo "7b $m cpu-check rc=$?: $(tail -1 $W/cpucheck_7b_$m.txt)"
done
mark "7b cpu-checks done"
bench() {  # NAME ARTIFACT [ENV...]
  local name=$1 art=$2; shift 2
  env "$@" $BIN/qwrun bench $art --device gpu --kv-cache-gb 16 --batch-sizes ${QW_AB_BATCHES:-1 8 16 32} --decode-steps 128 \
    --prompt-lengths 128 2048 --out $R/bench_$name.json > /dev/null 2> $W/bench_$name.err || tail -3 $W/bench_$name.err
}
for m in fp16 int4; do
  bench ${m}_A $W/m7b_$m.qwart QW_AB_SIDE=A
  for i in "${!SIDES[@]}"; do bench ${m}_B$i $W/m7b_$m.qwart ${SIDES[$i]}; done
  mark "7b $m benches done"
done
for m in int4 fp16; do
  [ "$QUICK" = 1 ] && break
  $BIN/qwrun bench $W/m7b_$m.qwart --device gpu --startup --out $R/startup_$m.json > /dev/null 2> $W/startup.err ||
    tail -3 $W/startup.err
done
[ "$QUICK" = 1 ] || QW_STEP_TRACE=1 $BIN/qwrun bench $W/m7b_fp16.qwart --device gpu --kv-cache-gb 16 --batch-sizes 1 --decode-steps 128 \
  --prompt-lengths 128 --no-ceilings --out $W/trace.json > /dev/null 2> $W/trace.err
[ "$QUICK" = 1 ] || grep "step trace" $W/trace.err
mark "done"
python3 - "$R" "$AB" <<'PY'
import json, os, sys
r, sides = sys.argv[1], ["A"] + sys.argv[2].split(";")
def load(n):
    p = f"{r}/{n}.json"
    return json.load(open(p)) if os.path.exists(p) else None
for m in ("fp16", "int4"):
    for i, side in enumerate(sides):
        d = load(f"bench_{m}_{'A' if i == 0 else f'B{i - 1}'}")
        if not d:
            print(f"{m} {side}: no result"); continue
        fl = d.get("floors", {}).get("decode", {})
        print(f"7b {m} {side}: " +
              " ".join(f"b{k} {v:.1f} tok/s ({fl.get(k, {}).get('ratio', 0) * 100:.1f}%)" for k, v in d["decode_tok_s"].items()) +
              f"; replay b1 {d.get('graph_replay_ms', {}).get('1', 0):.3f} ms; ttft128 {d['ttft_ms']['128']:.1f} ms"
              f" ttft2048 {d['ttft_ms']['2048']:.1f} ms; load {d.get('load_seconds', 0):.2f} s")
for m in ("int4", "fp16"):
    s = load(f"startup_{m}")
    if s:
        print(f"{m} startup: ready {s['process_start_to_ready_s']:.3f} s from process start; " +
              ", ".join(f"{k} {v:.3f}" for k, v in s["stages"].items()) +
              f"; h2d {s['weights']['h2d_gbps']:.1f} GB/s")
PY
