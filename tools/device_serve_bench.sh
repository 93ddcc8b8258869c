#!/usr/bin/env bash
# One device call: 7b-shape checkpoint -> artifact (with kernels) -> qwrun GPU smoke, then
# `qwrun serve` under 64 concurrent streaming clients and the transformers batch-generate
# peer. Sections run in order of importance so a call cut short still returns the first ones.
# Writes JSON under $OUT; prints a table.
# Usage: tools/device_serve_bench.sh BIN_DIR [duration_s]
#   QW_TINY_CHECKS=1 (default): tiny GPU==CPU greedy, qwgpu prefix-check, qw_gpu_tests
#   QW_DECODE_BENCH=1 (default): qwrun bench --startup and the decode/TTFT bench
#   QW_GRAMMAR_BENCH=1: one client (batch 1), plain vs response_format json_object, ITL
#   QW_PREFIX_BENCH=1: greedy outputs with prefix caching on == off, then 32 clients whose
#                      2048-token prompts share a 1536-token prefix, on and off (TTFT)
#   QW_SOAK_S=N: last, an N-second soak at 64 clients sampling RSS, GPU memory and KV blocks
set -u -o pipefail
BIN=$1; DUR=${2:-90}
W=/tmp/qw_serve_work; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export PYTHONUNBUFFERED=1 QW_KERNEL_CACHE=$W/kcache
T0=$(date +%s)
mark() { echo "[$(( $(date +%s) - T0 )) s] $*"; }
start_server() { # port, extra flags...; sets SP
  local port=$1; shift
  $BIN/qwrun serve $W/m7b.qwart --device gpu --port $port --kv-cache-gb 40 "$@" > $R/serve_$port.log 2>&1 &
  SP=$!
  for i in $(seq 1 240); do curl -sf localhost:$port/ready >/dev/null && return 0; sleep 0.5; done
  echo "server on $port not ready"; tail -5 $R/serve_$port.log; return 1
}
stop_server() { kill -TERM $SP; wait $SP; echo "serve exit code: $?"; }
load() { # out-name, port, args...
  local name=$1 port=$2; shift 2
  python3 tools/serve_load_test.py --url http://127.0.0.1:$port/v1/completions "$@" > $R/$name.json 2>>$R/load.err ||
    { echo "$name failed"; tail -3 $R/load.err; }
}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $R/gpu.txt
if [ "${QW_TINY_CHECKS:-1}" = 1 ]; then
  $BIN/qwc make-test-model --preset tiny --seed 1 -o $W/tiny --tokenizer tests/data >/dev/null 2>&1
  $BIN/qwc compile $W/tiny -o $W/tiny.qwart --arch sm_90a 2>&1 | tail -1
  $BIN/qwrun generate $W/tiny.qwart --device gpu -p "Hello" -n 16 --temperature 0 > $R/tiny_gpu.txt 2>$R/tiny_gpu.err
  $BIN/qwrun generate $W/tiny.qwart --device cpu -p "Hello" -n 16 --temperature 0 > $R/tiny_cpu.txt 2>$R/tiny_cpu.err
  cmp -s $R/tiny_gpu.txt $R/tiny_cpu.txt && echo "tiny greedy: GPU text == CPU text" || echo "tiny greedy: GPU and CPU text DIFFER"
  $BIN/qwgpu prefix-check $W/tiny.qwart --prefix 300 --steps 16 > $R/tiny_prefix_check.txt 2>&1; echo "tiny prefix-check rc=$?: $(tail -1 $R/tiny_prefix_check.txt)"
  timeout 120 $BIN/qw_gpu_tests > $R/qw_gpu_tests.txt 2>&1; echo "qw_gpu_tests rc=$?: $(tail -2 $R/qw_gpu_tests.txt | tr '\n' ' ')"
  tools/sampling_device_vs_host.sh $BIN $W/tiny.qwart $W
  mark "tiny checks done"
fi
$BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data >/dev/null 2>&1
$BIN/qwc compile $W/ck7b -o $W/m7b.qwart --arch sm_90a 2>&1 | tail -1
cat $W/m7b.qwart > /dev/null
mark "7b make+compile done"
if [ "${QW_DECODE_BENCH:-1}" = 1 ]; then
  $BIN/qwrun bench $W/m7b.qwart --startup --out $R/startup7b.json > /dev/null 2>$R/startup.err || tail -3 $R/startup.err
  $BIN/qwrun bench $W/m7b.qwart --device gpu --kv-cache-gb 16 --out $R/bench7b.json > /dev/null 2>$R/bench.err || tail -3 $R/bench.err
  mark "decode bench done"
fi
start_server 8011 --max-num-seqs 128 --max-queue 1024 && {
  load load64 8011 --concurrency 64 --prompt-tokens 512 --max-tokens 256 --duration $DUR
  mark "load64 done"
  if [ "${QW_GRAMMAR_BENCH:-0}" = 1 ]; then
    load grammar_b1_plain 8011 --concurrency 1 --prompt-tokens 64 --max-tokens 128 --duration 20
    load grammar_b1_json 8011 --concurrency 1 --prompt-tokens 64 --max-tokens 128 --duration 20 --response-format json_object
    mark "grammar b1 done"
  fi
  curl -s localhost:8011/metrics | grep -E "kv_cache_blocks_used|num_requests_running|preemptions" > $R/metrics_after.txt
  stop_server
}
python3 tools/hf_batch_generate.py $W/ck7b --batch 64 --prompt-tokens 512 --max-tokens 256 > $R/hf_batch.json 2>$R/hf.err || tail -3 $R/hf.err
mark "transformers peer done"
if [ "${QW_PREFIX_BENCH:-0}" = 1 ]; then
  for mode in on off; do
    flag=$([ $mode = off ] && echo --no-prefix-caching)
    start_server 8012 $flag || continue
    python3 tools/prefix_consistency.py --url http://127.0.0.1:8012/v1/completions > $R/prefix_texts_$mode.json 2>>$R/load.err
    load prefix_$mode 8012 --concurrency 32 --prompt-tokens 2048 --shared-prefix-tokens 1536 --max-tokens 64 --duration 40
    stop_server
  done
  python3 - "$R" <<'PY'
import json, sys
on, off = (json.load(open(f"{sys.argv[1]}/prefix_texts_{m}.json"))["texts"] for m in ("on", "off"))
same = sum(a == b for a, b in zip(on, off))
print(f"prefix caching on vs off: {same}/{len(on)} greedy completions identical")
PY
  mark "prefix bench done"
fi
if [ "${QW_SOAK_S:-0}" -gt 0 ]; then
  start_server 8013 --max-num-seqs 128 --max-queue 1024 && {
    load soak 8013 --concurrency 64 --prompt-tokens 512 --max-tokens 256 --duration $QW_SOAK_S --watch-pid $SP --sample-every 15
    stop_server
  }
  mark "soak done"
fi
echo "== results"
for f in startup7b bench7b load64 grammar_b1_plain grammar_b1_json hf_batch prefix_on prefix_off soak; do
  [ -f $R/$f.json ] && echo "$f: $(tr -d '\n' < $R/$f.json | cut -c1-700)"
done
cat $R/metrics_after.txt 2>/dev/null
