#!/usr/bin/env bash
# GPTQ on the GPU, one device call: the GPTQ GPU tests (Hessian, solver and tiny model against
# the CPU quantizer), then `qwc compile` of the 7b shape with --gptq-device gpu (wall time and
# qwc's per-stage split), `qwgpu cpu-check` of that artifact, and a JSON under $OUT.
# Usage: tools/gptq_gpu_check.sh BIN_DIR   (qwc, qwgpu, qw_gpu_tests: tools/stage_gpu_bins.sh)
# QW_GPTQ_7B=0 stops after the tests. Budget on an H100: about 5 minutes.
set -u -o pipefail
BIN=$1
W=/tmp/qw_gptq_work; rm -rf $W; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
dev=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
commit=${QW_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
mark "device: ${dev:-unknown}; commit $commit; cuSOLVER: $(ls /usr/local/cuda/lib64/libcusolver.so.* 2>/dev/null | tr '\n' ' ')"

# 1. GPU vs CPU (MESSAGE lines carry the agreement counts of every case).
t=$(now)
timeout 240 $BIN/qw_gpu_tests --test-case='gptq gpu:*' > $W/gptq_tests.txt 2>&1; trc=$?
tests_s=$(since $t)
cp $W/gptq_tests.txt $R/gptq_gpu_tests.txt
echo "qw_gpu_tests gptq rc=$trc in $tests_s s: $(grep -E 'test cases:' $W/gptq_tests.txt | tail -1)"
grep -E "tiny model, group|max \|H_gpu" $W/gptq_tests.txt | sed 's/^ *//' | head -8
grep -E "MESSAGE: .*(block 128 group 128 sym act-order|block 32 group -1 asym)" $W/gptq_tests.txt | sed 's/^ *//' | head -4
grep -B3 -A12 "ERROR" $W/gptq_tests.txt | head -60
mark "tests done"

make_s=""; compile_s=""; crc=""; ccrc=""
if [ "${QW_GPTQ_7B:-1}" = 1 ]; then
  # 2. The 7b shape, GPTQ on the GPU (--arch for cpu-check's GPU side).
  t=$(now)
  $BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data > $W/make.log 2>&1 || tail -3 $W/make.log
  make_s=$(since $t)
  mark "7b checkpoint in $make_s s"
  t=$(now)
  timeout 380 $BIN/qwc compile $W/ck7b -o $W/m7b_gptq.qwart --dtype int4-gptq --group-size 128 --calib-builtin \
    --gptq-device gpu --arch sm_90a > $W/compile.log 2>&1; crc=$?
  compile_s=$(since $t)
  cp $W/compile.log $R/gptq_7b_compile.log
  grep "qwc:" $W/compile.log | tail -6
  mark "7b int4-gptq compile rc=$crc: $compile_s s wall"
  rm -rf $W/ck7b  # disk: the checkpoint is 15 GB
  # 3. The artifact runs: GPU executor vs CPU executor on it.
  if [ $crc = 0 ]; then
    timeout 200 $BIN/qwgpu cpu-check $W/m7b_gptq.qwart --seqs 4 > $W/cpucheck.txt 2>&1; ccrc=$?
    cp $W/cpucheck.txt $R/gptq_7b_cpucheck.txt
    echo "7b gptq cpu-check rc=$ccrc: $(tail -1 $W/cpucheck.txt)"
    mark "cpu-check done"
  fi
fi

python3 - "$R" "${dev:-unknown}" "$commit" "$trc" "$tests_s" "$make_s" "$compile_s" "$crc" "$ccrc" "$W" <<'PY'
import datetime, json, re, sys
r, dev, commit, trc, tests_s, make_s, compile_s, crc, ccrc, w = sys.argv[1:]
def num(s): return float(s) if s not in ("", None) else None
out = {"what": "qwc GPTQ on the GPU: 7b shape, int4-gptq g128, --calib-builtin, --gptq-device gpu",
       "device": dev, "date": datetime.datetime.now().isoformat(timespec="seconds"), "commit": commit,
       "tests_rc": int(trc), "tests_seconds": num(tests_s), "checkpoint_seconds": num(make_s),
       "compile_seconds": num(compile_s), "compile_rc": int(crc) if crc else None,
       "cpu_check_rc": int(ccrc) if ccrc else None}
try:
    log = open(f"{w}/compile.log").read()
    m = re.search(r"GPTQ on the GPU: (\d+) layers, (\d+) calibration tokens in ([\d.]+) s: (.*)", log)
    if m:
        out["layers"], out["calibration_tokens"], out["gptq_seconds"] = int(m[1]), int(m[2]), float(m[3])
        out["gptq_stages_seconds"] = {k.strip(): float(v) for k, v in re.findall(r"([A-Za-z+ ]+?) ([\d.]+) s", m[4])}
    m = re.search(r"wrote .* in ([\d.]+) s", log)
    if m: out["qwc_reported_seconds"] = float(m[1])
except OSError:
    pass
try:
    out["cpu_check_last_line"] = open(f"{w}/cpucheck.txt").read().strip().splitlines()[-1]
except (OSError, IndexError):
    pass
try:
    out["tiny_model_agreement"] = [l.strip() for l in open(f"{w}/gptq_tests.txt") if "tiny model, group" in l]
except OSError:
    pass
json.dump(out, open(f"{r}/gptq_gpu_7b.json", "w"), indent=2)
print(json.dumps(out, indent=2))
PY
