// The built-in calibration set (compiler/gptq/calib/builtin.txt, embedded at build time): a
// few KB of prose, dialogue, code and math in about twenty languages, so GPTQ's Hessians see
// the scripts and token statistics a multilingual Qwen model serves.
#pragma once

namespace qw::gptq {

const char* builtin_calibration_text();

}  // namespace qw::gptq
