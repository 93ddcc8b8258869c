#!/usr/bin/env bash
# Installs every build/test dependency from Debian's packages. Idempotent: re-running
# installs nothing new. The CUDA toolkit is expected under /usr/local/cuda already.
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git python3
  flatbuffers-compiler libflatbuffers-dev   # artifact metadata
  libcli11-dev                              # command lines
  libzstd-dev                               # tokenizer/kernel sections
  doctest-dev                               # unit tests
  libpcre2-dev                              # Qwen2 pre-tokenizer regex (Unicode properties, JIT)
  nlohmann-json3-dev                        # config.json, safetensors headers, tokenizer.json, HTTP bodies
  libxxhash-dev                             # per-section checksums (XXH3-64)
  libcpp-httplib-dev                        # qwrun serve
  libssl-dev                                # SHA-256 of source files (provenance)
  clang libclang-rt-14-dev                  # libFuzzer targets, sanitizers
  clang-format
  shellcheck curl                           # deployment checks (tools/check_deploy.sh)
  chromium                                  # web chat page test (headless, playwright-core)
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js runs the official openai client in the server tests; any installed node will do.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
if [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "setup.sh: CUDA toolkit not found under /usr/local/cuda (install CUDA 13 first)" >&2
  exit 1
fi
# The openai npm client for tests/server/js (versions pinned by its package-lock.json).
root=$(cd "$(dirname "$0")/.." && pwd)
# npm packages for tests, pinned by each folder's package-lock.json.
for d in tests/server/js tests/deploy tests/web; do
  if [ -f "$root/$d/package-lock.json" ] && [ ! -d "$root/$d/node_modules" ]; then
    (cd "$root/$d" && npm ci --no-audit --no-fund >/dev/null)
  fi
done
echo "setup.sh: all dependencies present"
