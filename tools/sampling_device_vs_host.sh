#!/usr/bin/env bash
# Seeded completions from `qwrun serve` with sampling on the device and with
# --no-device-sampling (whole rows to the host): the tokens must be the same.
# Usage: tools/sampling_device_vs_host.sh BIN_DIR ARTIFACT OUT_DIR [PORT]   (exit 1 if they differ)
set -u -o pipefail
BIN=$1; ART=$2; R=$3; PORT=${4:-8010}
for mode in device host; do
  flag=$([ $mode = host ] && echo --no-device-sampling)
  $BIN/qwrun serve "$ART" --device gpu --port $PORT --kv-cache-gb 2 $flag > $R/serve_sampling_$mode.log 2>&1 &
  sp=$!
  for i in $(seq 1 120); do curl -sf localhost:$PORT/ready > /dev/null && break; sleep 0.5; done
  python3 tools/sampling_consistency.py --url http://127.0.0.1:$PORT/v1/completions > $R/sampling_$mode.json
  curl -s localhost:$PORT/metrics | grep -E '^qwrun:sampled_rows' > $R/sampling_metrics_$mode.txt
  kill -TERM $sp; wait $sp
done
echo "sampling on the device vs on the host: $(python3 tools/sampling_consistency.py --compare $R/sampling_device.json $R/sampling_host.json)"
echo "  device: $(tr '\n' ' ' < $R/sampling_metrics_device.txt)"
