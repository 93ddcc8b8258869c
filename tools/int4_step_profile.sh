#!/usr/bin/env bash
# Where one INT4 decode step's time goes: Nsight Compute durations of every kernel of a
# batch-1 decode step on a 7b-shaped 2-layer model (1-token prompt, so every launch is
# decode-shaped), plus graph-replay times of the INT4 and FP16 artifacts.
# Usage: tools/int4_step_profile.sh BIN_DIR   (JSON/text under $OUT)
set -u -o pipefail
BIN=$1; W=/tmp/qw_int4_step; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
$BIN/qwc make-test-model --preset 7b --layers 2 -o $W/ck --tokenizer tests/data > /dev/null
$BIN/qwc compile $W/ck -o $W/q.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a | tail -1
$BIN/qwc compile $W/ck -o $W/f.qwart --arch sm_90a | tail -1
python3 -c "import struct;open('$W/p.i32','wb').write(struct.pack('1i',1000))"
for a in q f; do
  QW_GRAPH_MAX=0 timeout 200 ncu --clock-control none --section SpeedOfLight --launch-skip ${QW_NCU_SKIP:-20} --launch-count ${QW_NCU_COUNT:-25} \
    $BIN/qwgpu greedy $W/$a.qwart $W/p.i32 4 > $R/ncu_step_$a.txt 2>&1
  python3 - $R/ncu_step_$a.txt $a <<'PY'
import re, sys
name, rows, tot = None, [], 0.0
for line in open(sys.argv[1]):
    m = re.match(r'\s+(\w+)(?:<.*>)?\s*\(\d+, \d+, \d+\)x\(\d+, \d+, \d+\)', line)
    if m: name = m.group(1)
    m = re.search(r'Duration\s+(\S+)\s+([\d.,]+)', line)
    if m and name:
        v = float(m.group(2).replace(',', ''))
        v = v / 1000 if m.group(1) == 'ns' else v * 1000 if m.group(1) == 'ms' else v
        rows.append((name, v)); name = None
    m = re.search(r'DRAM Throughput\s+%\s+([\d.]+)', line)
    if m and rows: rows[-1] = rows[-1] + (float(m.group(1)),)
for r in rows: print(f"{sys.argv[2]} {r[0]:40s} {r[1]:8.1f} us  dram {r[2] if len(r) > 2 else 0:5.1f}%")
print(sys.argv[2], "total us", round(sum(r[1] for r in rows), 1))
PY
done
for a in q f; do
  QW_STEP_TRACE=1 $BIN/qwrun bench $W/$a.qwart --device gpu --kv-cache-gb 4 --batch-sizes 1 8 16 --decode-steps 128 --no-ceilings \
    --prompt-lengths 128 --out $R/bench_step_$a.json > /dev/null 2> $W/b_$a.err || tail -3 $W/b_$a.err
  grep -i "trace\|step" $W/b_$a.err | tail -4
  python3 -c "import json;d=json.load(open('$R/bench_step_$a.json'));print('$a', d['decode_tok_s'], d.get('graph_replay_ms'))"
done
# QW_INT4_SPLIT_SWEEP="1 2 4": graph-replay ms of the INT4 artifact with each forced split-K.
for s in ${QW_INT4_SPLIT_SWEEP:-}; do
  QW_INT4_SPLITS=$s $BIN/qwrun bench $W/q.qwart --device gpu --kv-cache-gb 4 --batch-sizes 1 8 16 --decode-steps 64 \
    --no-ceilings --prompt-lengths 128 --out $W/sweep_$s.json > /dev/null 2>&1
  python3 -c "import json;d=json.load(open('$W/sweep_$s.json'));print('splits $s', {k: round(v, 3) for k, v in d['graph_replay_ms'].items()})"
done
