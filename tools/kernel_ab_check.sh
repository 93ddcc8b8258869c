#!/usr/bin/env bash
# A/B of two kernel-template versions in one device call: the 7b shape (FP16 and INT4 RTN g128)
# compiled by qwc A (BIN_DIR/qwc, the staged build) and by qwc B (QWC_B, e.g. a build of a
# changed kernels_templates/), both run by BIN_DIR/qwrun (artifacts carry their cubins). The
# tiny models compiled by B are checked against the CPU executor first. JSON under $OUT; a
# table last.
# Usage: tools/kernel_ab_check.sh BIN_DIR QWC_B   (QW_AB_BATCHES: default "1 8 16 32")
set -u -o pipefail
BIN=$1 QWC_B=$2
W=/tmp/qw_kab_work; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
mark "device: $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
$BIN/qwc make-test-model --preset tiny --seed 3 -o $W/tiny --tokenizer tests/data > /dev/null 2>&1
$QWC_B compile $W/tiny -o $W/tiny_B.qwart --arch sm_90a > $W/c1.log 2>&1 || tail -2 $W/c1.log
$QWC_B compile $W/tiny -o $W/tiny_int4_B.qwart --dtype int4-gptq --rtn --group-size 64 --arch sm_90a \
  > $W/c2.log 2>&1 || tail -2 $W/c2.log
for m in tiny_B tiny_int4_B; do
  $BIN/qwgpu cpu-check $W/$m.qwart --seqs 40 > $W/cpucheck_$m.txt 2>&1
  echo "$m cpu-check rc=$?: $(tail -1 $W/cpucheck_$m.txt)"
done
$BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data > /dev/null 2>&1
for side in A B; do
  Q=$BIN/qwc; [ $side = B ] && Q=$QWC_B
  $Q compile $W/ck7b -o $W/fp16_$side.qwart --arch sm_90a 2>&1 | tail -1
  $Q compile $W/ck7b -o $W/int4_$side.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a 2>&1 | tail -1
done
rm -rf $W/ck7b
mark "7b artifacts built"
for m in fp16 int4; do
  for side in A B; do
    $BIN/qwrun bench $W/${m}_$side.qwart --device gpu --kv-cache-gb 16 --batch-sizes ${QW_AB_BATCHES:-1 8 16 32} \
      --decode-steps 128 --prompt-lengths 128 2048 --out $R/bench_${m}_$side.json > /dev/null 2> $W/b.err ||
      tail -3 $W/b.err
  done
done
mark "done"
python3 - "$R" <<'PY'
import json, os, sys
r = sys.argv[1]
for m in ("fp16", "int4"):
    for side in ("A", "B"):
        p = f"{r}/bench_{m}_{side}.json"
        if not os.path.exists(p):
            print(f"{m} {side}: no result"); continue
        d = json.load(open(p))
        fl = d.get("floors", {}).get("decode", {})
        print(f"7b {m} {side}: " +
              " ".join(f"b{k} {v:.1f} tok/s ({fl.get(k, {}).get('ratio', 0) * 100:.1f}%)" for k, v in d["decode_tok_s"].items()) +
              f"; replay " + " ".join(f"b{k} {v:.3f}" for k, v in d.get("graph_replay_ms", {}).items()) +
              f" ms; ttft128 {d['ttft_ms']['128']:.1f} ms ttft2048 {d['ttft_ms']['2048']:.1f} ms")
PY
