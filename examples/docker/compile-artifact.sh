#!/usr/bin/env bash
# The compile stage of examples/docker/Dockerfile, as one script so that CI
# (tools/check_deploy.sh, examples/ci/github-actions.yml) runs exactly the same steps:
#   qwc compile CHECKPOINT -> OUT/model.qwart, qwc verify, sha256 -> OUT/model.qwart.sha256
# Inputs (environment; the Dockerfile sets them from build args):
#   QW_CHECKPOINT  HF checkpoint directory            (default /checkpoint)
#   QW_OUT         output directory                   (default /out)
#   QWC_DTYPE      fp16 | bf16                        (default fp16)
#   QWC_TP         tensor-parallel degree 1|2|4|8     (default 1)
#   QWC_ARCH       NVRTC kernel targets, e.g. sm_80,sm_90a; empty = no kernels section
#   QWC            the qwc binary                     (default: qwc on PATH)
# CPU only: no GPU is needed (NVRTC compiles kernels without one).
set -euo pipefail
ckpt=${QW_CHECKPOINT:-/checkpoint}
out=${QW_OUT:-/out}
qwc=${QWC:-qwc}
flags=(--dtype "${QWC_DTYPE:-fp16}" --tp "${QWC_TP:-1}")
if [ -n "${QWC_ARCH:-}" ]; then flags+=(--arch "$QWC_ARCH"); fi
mkdir -p "$out"
"$qwc" compile "$ckpt" -o "$out/model.qwart" "${flags[@]}"
"$qwc" verify "$out/model.qwart"
(cd "$out" && sha256sum model.qwart > model.qwart.sha256)
cat "$out/model.qwart.sha256"
