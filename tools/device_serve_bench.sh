#!/usr/bin/env bash
# One device call: 7b-shape checkpoint -> artifact (with kernels) -> qwrun GPU smoke, startup
# and throughput benches, then `qwrun serve` under 64 concurrent streaming clients, and the
# transformers batch-generate peer. Writes JSON under $OUT; prints a table.
# Usage: tools/device_serve_bench.sh BIN_DIR [duration_s]
#   QW_PREFIX_BENCH=1: also 32 clients whose 2048-token prompts share a 1536-token prefix,
#                      with and without prefix caching (TTFT, hit rate)
#   QW_SOAK_S=N: after the load run, an N-second soak at 64 clients sampling RSS, GPU memory
#                and KV blocks (the device tool allows 10 minutes a command)
set -u -o pipefail
BIN=$1; DUR=${2:-90}
W=/tmp/qw_serve_work; mkdir -p $W; R=${OUT:-/tmp/qw_out}; mkdir -p $R
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee $R/gpu.txt
$BIN/qwc make-test-model --preset tiny --seed 1 -o $W/tiny --tokenizer tests/data >/dev/null 2>&1
$BIN/qwc compile $W/tiny -o $W/tiny.qwart --arch sm_90a 2>&1 | tail -1
$BIN/qwrun generate $W/tiny.qwart --device gpu -p "Hello" -n 16 --temperature 0 > $R/tiny_gpu.txt 2>&1; tail -1 $R/tiny_gpu.txt
$BIN/qwrun generate $W/tiny.qwart --device cpu -p "Hello" -n 16 --temperature 0 > $R/tiny_cpu.txt 2>&1
cmp <(head -1 $R/tiny_gpu.txt) <(head -1 $R/tiny_cpu.txt) && echo "tiny greedy: GPU text == CPU text" || echo "tiny greedy: GPU and CPU text differ"
t0=$(date +%s)
$BIN/qwc make-test-model --preset 7b --seed 1 -o $W/ck7b --tokenizer tests/data >/dev/null 2>&1
$BIN/qwc compile $W/ck7b -o $W/m7b.qwart --arch sm_90a 2>&1 | tail -1
echo "make+compile 7b: $(( $(date +%s) - t0 )) s"
cat $W/m7b.qwart > /dev/null
$BIN/qwrun bench $W/m7b.qwart --startup --out $R/startup7b.json > /dev/null 2>$R/startup.err || tail -3 $R/startup.err
$BIN/qwrun bench $W/m7b.qwart --device gpu --kv-cache-gb 16 --out $R/bench7b.json > /dev/null 2>$R/bench.err || tail -3 $R/bench.err
$BIN/qwrun serve $W/m7b.qwart --device gpu --port 8011 --kv-cache-gb 40 --max-num-seqs 128 --max-queue 1024 > $R/serve.log 2>&1 &
SP=$!
for i in $(seq 1 120); do curl -sf localhost:8011/ready >/dev/null && break; sleep 0.5; done
python3 tools/serve_load_test.py --url http://127.0.0.1:8011/v1/completions --concurrency 64 \
  --prompt-tokens 512 --max-tokens 256 --duration $DUR > $R/load64.json 2>$R/load.err || tail -3 $R/load.err
if [ "${QW_SOAK_S:-0}" -gt 0 ]; then
  python3 tools/serve_load_test.py --url http://127.0.0.1:8011/v1/completions --concurrency 64 \
    --prompt-tokens 512 --max-tokens 256 --duration $QW_SOAK_S --watch-pid $SP --sample-every 20 > $R/soak.json 2>$R/soak.err || tail -3 $R/soak.err
fi
curl -s localhost:8011/metrics | grep -E "kv_cache_blocks_used|num_requests_running|preemptions|prefix_cache" > $R/metrics_after.txt
kill -TERM $SP; wait $SP; echo "serve exit code: $?"
if [ "${QW_PREFIX_BENCH:-0}" = 1 ]; then
  for mode in on off; do
    flag=$([ $mode = off ] && echo --no-prefix-caching)
    $BIN/qwrun serve $W/m7b.qwart --device gpu --port 8012 --kv-cache-gb 40 $flag > $R/serve_prefix_$mode.log 2>&1 &
    PP=$!
    for i in $(seq 1 120); do curl -sf localhost:8012/ready >/dev/null && break; sleep 0.5; done
    python3 tools/serve_load_test.py --url http://127.0.0.1:8012/v1/completions --concurrency 32 \
      --prompt-tokens 2048 --shared-prefix-tokens 1536 --max-tokens 64 --duration 45 > $R/prefix_$mode.json 2>>$R/load.err
    kill -TERM $PP; wait $PP
  done
fi
python3 tools/hf_batch_generate.py $W/ck7b --batch 64 --prompt-tokens 512 --max-tokens 256 > $R/hf_batch.json 2>$R/hf.err || tail -3 $R/hf.err
echo "== results"; for f in startup7b bench7b load64 soak prefix_on prefix_off hf_batch; do echo "$f: $(cat $R/$f.json 2>/dev/null | tr -d '\n' | cut -c1-900)"; done
cat $R/metrics_after.txt
