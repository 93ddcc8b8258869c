#!/usr/bin/env bash
# INT4 decode GEMMs under Nsight Compute on a 7b-shaped, 2-layer model (seconds to build):
# one decode step's eight INT4 launches (speed of light, occupancy, warp stalls), and qwrun
# bench of the INT4 and FP16 artifacts. Usage: tools/int4_profile.sh BIN_DIR
#   QW_NCU=0 skips Nsight Compute; QW_MIN_UNITS_SWEEP="1 4 16" benches INT4 work splits.
set -u -o pipefail
BIN=$1; W=/tmp/qw_int4_prof; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
$BIN/qwc make-test-model --preset 7b --layers 2 -o $W/ck --tokenizer tests/data > /dev/null
$BIN/qwc compile $W/ck -o $W/q.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a | tail -1
$BIN/qwc compile $W/ck -o $W/f.qwart --arch sm_90a | tail -1
python3 -c "import struct;open('$W/p.i32','wb').write(struct.pack('100i',*range(1000,1100)))"
if [ "${QW_NCU:-1}" = 1 ]; then
QW_GRAPH_MAX=0 timeout 200 ncu --clock-control none --section SpeedOfLight --section Occupancy \
  --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
  -k regex:gemv_int4 --launch-count 8 $BIN/qwgpu greedy $W/q.qwart $W/p.i32 2 > $R/ncu_int4.txt 2>&1
grep -E "gemv_int4|Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Stall|Grid Size|Local" $R/ncu_int4.txt | head -120
fi
# The work split: chunks per warp at least N (Int4Linear, QW_INT4_MIN_UNITS), GPU ms of one
# decode step (graph replay: 2 layers + lm_head).
for mu in ${QW_MIN_UNITS_SWEEP:-}; do
  QW_INT4_MIN_UNITS=$mu $BIN/qwrun bench $W/q.qwart --device gpu --kv-cache-gb 4 --batch-sizes 1 8 16 --decode-steps 64 \
    --no-ceilings --prompt-lengths 128 --out $R/bench_q_mu$mu.json > /dev/null 2> $W/b_mu.err || tail -3 $W/b_mu.err
  python3 -c "import json;d=json.load(open('$R/bench_q_mu$mu.json'));print('min_units $mu', {k: round(v, 3) for k, v in d['graph_replay_ms'].items()})"
done
for a in q f; do
  $BIN/qwrun bench $W/$a.qwart --device gpu --kv-cache-gb 4 --batch-sizes 1 8 16 --decode-steps 128 --no-ceilings \
    --prompt-lengths 128 --out $R/bench_$a.json > /dev/null 2> $W/b_$a.err || tail -3 $W/b_$a.err
  python3 -c "import json;d=json.load(open('$R/bench_$a.json'));print('$a', d['decode_tok_s'], d.get('graph_replay_ms'))"
done
