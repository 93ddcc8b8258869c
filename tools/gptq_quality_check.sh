#!/usr/bin/env bash
# GPTQ vs RTN on the 7b shape (issue 8): makes the random-weight 7b test checkpoint, runs
# `qwc compile --dtype int4-gptq --group-size 128 --calib-builtin --gptq-device gpu
# --quality-report $OUT/quality_7b.json`, prints qwc's quality and damping-search lines and the
# wall time, and deletes the 15 GB checkpoint (also when something fails).
# Usage: tools/gptq_quality_check.sh BIN_DIR   (qwc: tools/stage_gpu_bins.sh)
# QW_QUALITY_CALIB adds a second compile with --calib TEXT (quality_7b_calib.json):
#   FILE  that file;
#   docs  README.md + docs/*.md (about 23k tokens);
#   repo  README.md, docs/*.md, then the repository's other *.md *.h *.cpp *.cuh *.sh files
#         (`git ls-files`, sorted; `find` where there is no git): well over 40,000 tokens, so
#         qwc takes its --calib-max-tokens (default 32,768): 26,112 calibration tokens after
#         the held-out sequences, 22,848 of them fit tokens of the damping search, more than
#         down_proj's 18,944 inputs.
# QW_QUALITY_SKIP_BUILTIN=1 skips the built-in run. QW_QUALITY_MAX_TOKENS=N passes --calib-max-tokens N; QW_QUALITY_ARGS adds qwc flags (e.g.
# --no-damp-search, to compare with plain GPTQ).
# History (docs/int4_layout.md, "Quality report"; docs/int4_kernels.md): without the damping
# search the built-in text (1,536 calibration tokens, fewer than the 3,584 / 18,944 inputs of
# the 7b linears) gave GPTQ <= RTN on 0/196 linears on the H100, the docs (12,800 tokens of the
# 16,384 qwc then read) 68/196 with down_proj 0/28. Budget on an H100: about 5 minutes for the
# built-in run (GPTQ ~100 s before the search, which adds candidate factorizations and solves),
# more for the second compile with 32,768 tokens (not yet measured; each compile is limited to
# 8 minutes here).
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
  # shellcheck disable=SC2086  # QW_QUALITY_ARGS: words on purpose
  timeout 480 $BIN/qwc compile $W/ck7b -o $W/m7b_$name.qwart --dtype int4-gptq --group-size 128 \
    "$@" ${QW_QUALITY_MAX_TOKENS:+--calib-max-tokens $QW_QUALITY_MAX_TOKENS} \
    ${QW_QUALITY_ARGS:-} --gptq-device gpu --quality-report $R/quality_7b$name.json --arch sm_90a \
    > $W/compile$name.log 2>&1; rc=$?
  local wall; wall=$(since $t)
  cp $W/compile$name.log $R/quality_7b${name}_compile.log
  grep -E "qwc: (GPTQ on the GPU:|quality report:|wrote|GPTQ on the gpu took|damping search)" \
    $W/compile$name.log
  grep -E "qwc: error" $W/compile$name.log
  grep -E "qwc: quality:" $W/compile$name.log || echo "quality: no summary (rc $rc)"
  mark "7b int4-gptq compile$name ($*) rc=$rc: $wall s wall"
  rm -f $W/m7b_$name.qwart
}

[ "${QW_QUALITY_SKIP_BUILTIN:-0}" = 1 ] || quality_run "" --calib-builtin
calib=${QW_QUALITY_CALIB:-}
if [ "$calib" = docs ]; then
  cat README.md docs/*.md > $W/docs_calib.txt; calib=$W/docs_calib.txt
elif [ "$calib" = repo ]; then
  # README and docs first (as `docs`), then every other tracked text source, sorted by path.
  sources() {
    git ls-files '*.md' '*.h' '*.cpp' '*.cuh' '*.sh' 2>/dev/null && return
    find . -path './build*' -prune -o -path './.git' -prune -o -type f \
      \( -name '*.md' -o -name '*.h' -o -name '*.cpp' -o -name '*.cuh' -o -name '*.sh' \) \
      -print | sed 's|^\./||'
  }
  { cat README.md docs/*.md
    sources | grep -v -x -e README.md -e 'docs/[^/]*\.md' | LC_ALL=C sort | while IFS= read -r f; do
      printf '\n'; cat "$f"; done
  } > $W/repo_calib.txt
  calib=$W/repo_calib.txt
fi
if [ -n "$calib" ]; then
  echo "calibration file $calib: $(wc -c < "$calib") bytes, sha256 $(sha256sum "$calib" | cut -c1-16)"
  quality_run _calib --calib "$calib"
fi
rm -rf $W/ck7b
mark "done"
