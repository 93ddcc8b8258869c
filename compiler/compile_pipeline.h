// qwc compile: HF checkpoint directory -> one .qwart.
#pragma once
#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "compiler/artifact_writer.h"
#include "compiler/gptq/gptq_device.h"
#include "core/dtype.h"
#include "core/model_config.h"
#include "core/status.h"
#include "quant/int4_kernel_constants.h"

namespace qw {

struct KernelBundle {
  std::vector<uint8_t> blob;  // stored zstd-compressed as the Kernels section
  std::vector<KernelImageRecord> images;
};

struct CompileOptions {
  std::string checkpoint_dir;
  std::string output;
  DType dtype = DType::F16;
  int tp = 1;
  std::vector<std::string> archs;
  unsigned threads = 0;  // 0 = all cores
  const std::atomic<bool>* cancel = nullptr;
  // Builds the tokenizer section from the checkpoint dir; null = no tokenizer section.
  std::function<Expected<std::vector<uint8_t>>(const std::string& dir)> tokenizer_builder;
  // Compiles kernels for the model; null or empty archs = no kernel section. The last
  // argument is null for FP16/BF16 artifacts and carries the INT4 kernels' constants for
  // --dtype int4-gptq (qw::compile_kernels plugs in directly).
  std::function<Expected<KernelBundle>(const ModelConfig&, const TpPlan&, DType,
                                       const std::vector<std::string>&, const Int4KernelConstants*)>
      kernel_builder;
  std::string compiler_version;

  // --dtype int4-gptq: the linear layers become 4-bit GPTQ (docs/int4_layout.md); the other
  // tensors use `dtype` (fp16). A GPTQ checkpoint is imported as is; an FP16/BF16 one is
  // quantized: RTN with `rtn`, else GPTQ on calibration text (`calib_file` or the built-in
  // set). The group size, act-order and dampening apply to quantization only.
  bool int4 = false;
  int group_size = 128;
  bool rtn = false;
  bool act_order = false;
  double damp_percent = 0.01;
  std::string calib_file;
  bool calib_builtin = false;
  int64_t calib_seq_len = 512;
  // --calib-max-tokens: the calibration text's first tokens used (>= 1). The default is above
  // the 18,944 inputs of 7B's down_proj. The calibration forward keeps every token's
  // activations, so its memory grows linearly with this: at most 2 (hidden + intermediate)
  // fp32 per token on the GPU (7B: 5.9 GB at 32768 tokens), 4 hidden + 2 q + 2 kv + 2
  // intermediate in RAM on the CPU (7B: 7.9 GB); the Hessians do not depend on it.
  int64_t calib_max_tokens = 32768;
  // GPTQ's dampening chosen per linear on a validation split of the calibration tokens
  // (compiler/gptq/damp_search.h); false = --no-damp-search, plain GPTQ with damp_percent.
  bool damp_search = true;
  // Where GPTQ runs (--gptq-device): auto = the GPU when `gptq_gpu` is set and finds a
  // device, else the CPU. qwc sets `gptq_gpu` when built with CUDA; it must outlive the call.
  gptq::GptqDevice gptq_device = gptq::GptqDevice::kAuto;
  const gptq::GpuGptqBackend* gptq_gpu = nullptr;
  // --quality-report FILE (GPTQ only): every 5th calibration sequence is held out of the
  // Hessians, and GPTQ's and RTN's output errors on it, per linear, are written here as JSON
  // (compiler/gptq/quality_report.h). The artifact is then the one GPTQ makes from the other
  // sequences.
  std::string quality_report;
};

struct CompileReport {
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t elements = 0;
  uint64_t underflows = 0;
  uint64_t overflows = 0;
  double seconds = 0;
  double quantize_seconds = 0;      // RTN/GPTQ into the scratch checkpoint (int4-gptq only)
  std::string gptq_device;          // "cpu" or "gpu" when qwc ran GPTQ, else empty
  std::string quality_summary;      // with --quality-report: its one-line summary
  std::string damp_search_summary;  // GPTQ with the damping search: its one-line summary
};

Expected<CompileReport> compile_checkpoint(const CompileOptions& opts);

// The options that determine the artifact's bytes, as recorded in its provenance.
std::string normalized_command_line(const CompileOptions& opts);

}  // namespace qw
