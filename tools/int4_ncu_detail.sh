#!/usr/bin/env bash
# Nsight Compute detail (stall reasons, issue rate, memory) of two batch-1 INT4 decode GEMMs
# on a 7b-shaped 2-layer model. Usage: tools/int4_ncu_detail.sh BIN_DIR [KERNEL_REGEX]
set -u -o pipefail
BIN=$1; RE=${2:-gemv_int4_(down|qkv)}; W=/tmp/qw_int4_step; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export QW_KERNEL_CACHE=$W/kcache
[ -f $W/q.qwart ] || {
  $BIN/qwc make-test-model --preset 7b --layers 2 -o $W/ck --tokenizer tests/data > /dev/null
  $BIN/qwc compile $W/ck -o $W/q.qwart --dtype int4-gptq --rtn --group-size 128 --arch sm_90a | tail -1; }
python3 -c "import struct;open('$W/p.i32','wb').write(struct.pack('1i',1000))"
QW_GRAPH_MAX=0 timeout 300 ncu --clock-control none --set full -k "regex:$RE" --launch-skip 2 --launch-count 2 \
  $BIN/qwgpu greedy $W/q.qwart $W/p.i32 3 > $R/ncu_detail.txt 2>&1
grep -E "^  [a-z_0-9]+ \(|Duration|Executed Ipc A|Issue Slots Busy|No Eligible|Active Warps Per|Eligible Warps|Warp Cycles Per Issued|Stall|L2 Hit|Mem Busy|Max Bandwidth|DRAM Through|L1/TEX Hit|Achieved Occ|Theoretical Occ|Block Limit|Registers Per|Waves Per" $R/ncu_detail.txt | head -90
