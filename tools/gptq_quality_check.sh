#!/usr/bin/env bash
# GPTQ vs RTN on the 7b shape (issue 8): makes the random-weight 7b test checkpoint, runs
# `qwc compile --dtype int4-gptq --group-size 128 --calib-builtin --gptq-device gpu
# --quality-report $OUT/quality_7b.json`, prints qwc's quality line and the wall time, and
# deletes the 15 GB checkpoint (also when something fails).
# Usage: tools/gptq_quality_check.sh BIN_DIR   (qwc: tools/stage_gpu_bins.sh)
# QW_QUALITY_CALIB=FILE adds a second compile with --calib FILE (quality_7b_calib.json);
# QW_QUALITY_CALIB=docs uses README.md + docs/*.md. The built-in text holds out 200 of its
# 1,736 tokens and calibrates on 1,536, fewer than the 3,584 / 18,944 inputs of the 7b
# linears: on random weights GPTQ then overfits and loses to RTN on held-out text (0.5b
# shape on the CPU: 2/14 linears; 7b on the H100: 0/196). The docs give 12,800 calibration
# tokens (qwc reads at most 16,384): 68/196 on the H100, down_proj 0/28 (docs/int4_layout.md,
# "Quality report"; docs/int4_kernels.md). Budget on an H100: about 5 minutes (8 with the
# second compile).
set -u -o pipefail
BIN=$1
W=/tmp/qw_quality_work; rm -rf $W; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
trap 'rm -rf $W' EXIT  # disk: the checkpoint is 15 GB, the artifact 5 GB
export QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
commit=${QW_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mark "device: ${dev:-unknown}; commit $commit"

t=$(now)
$BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data > $W/make.log 2>&1 \
  || { tail -3 $W/make.log; exit 1; }
mark "7b checkpoint in $(since $t) s"

# One compile with its quality report: NAME, then the calibration flags.
quality_run() {
  local name=$1; shift
  local t rc
  t=$(now)
  timeout 480 $BIN/qwc compile $W/ck7b -o $W/m7b_$name.qwart --dtype int4-gptq --group-size 128 \
    "$@" --gptq-device gpu --quality-report $R/quality_7b$name.json --arch sm_90a \
    > $W/compile$name.log 2>&1; rc=$?
  local wall; wall=$(since $t)
  cp $W/compile$name.log $R/quality_7b${name}_compile.log
  grep -E "qwc: (GPTQ on the GPU:|quality report:|wrote|GPTQ on the gpu took)" $W/compile$name.log
  grep -E "qwc: error" $W/compile$name.log
  grep -E "qwc: quality:" $W/compile$name.log || echo "quality: no summary (rc $rc)"
  mark "7b int4-gptq compile$name ($*) rc=$rc: $wall s wall"
  rm -f $W/m7b_$name.qwart
}

quality_run "" --calib-builtin
calib=${QW_QUALITY_CALIB:-}
if [ "$calib" = docs ]; then
  cat README.md docs/*.md > $W/docs_calib.txt; calib=$W/docs_calib.txt
fi
if [ -n "$calib" ]; then
  echo "calibration file $calib: $(wc -c < "$calib") bytes, sha256 $(sha256sum "$calib" | cut -c1-16)"
  quality_run _calib --calib "$calib"
fi
rm -rf $W/ck7b
mark "done"
