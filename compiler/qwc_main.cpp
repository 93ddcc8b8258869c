// qwc: the offline model compiler. Runs on machines without a GPU.
#include <CLI/CLI.hpp>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "artifact/artifact.h"
#include "compiler/compile_pipeline.h"
#include "compiler/gptq/gptq_device.h"
#ifdef QW_HAVE_GPTQ_GPU
#include "compiler/gptq/gpu/gpu_backend.h"
#endif
#include "compiler/inspect.h"
#include "compiler/kernel_compiler.h"
#include "compiler/test_model_writer.h"
#include "qw_version.h"
#include "tokenizer/tokenize_cli.h"
#include "tokenizer/tokenizer.h"

namespace {

std::atomic<bool> g_cancel{false};
void on_signal(int) {
  g_cancel = true;
}

int fail(const qw::Status& s) {
  std::fprintf(stderr, "qwc: error: %s\n", s.message().c_str());
  return 1;
}

std::vector<std::string> split_archs(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"qwc " QW_VERSION " - compiles HuggingFace Qwen2 checkpoints into .qwart artifacts"};
  app.require_subcommand(1);
  app.set_version_flag("--version", QW_VERSION);

  // compile
  qw::CompileOptions copt;
  std::string dtype = "fp16", archs, gptq_device = "auto";
  auto* compile = app.add_subcommand("compile", "Compile a checkpoint directory into one artifact");
  compile
      ->add_option("checkpoint", copt.checkpoint_dir,
                   "HF directory: config.json, *.safetensors (+ index), tokenizer files")
      ->required()
      ->check(CLI::ExistingDirectory);
  compile->add_option("-o,--output", copt.output, "Output artifact (.qwart)")->required();
  compile->add_option("--dtype", dtype, "Weight type in the artifact")
      ->check(CLI::IsMember({"fp16", "bf16", "int4-gptq"}))
      ->capture_default_str();
  compile
      ->add_option("--group-size", copt.group_size,
                   "int4-gptq quantization: input features per scale group (32, 64, 128, -1 = "
                   "whole row)")
      ->check(CLI::IsMember({32, 64, 128, -1}))
      ->capture_default_str();
  auto* calib_opt =
      compile
          ->add_option("--calib", copt.calib_file, "int4-gptq: GPTQ calibration text file (UTF-8)")
          ->check(CLI::ExistingFile);
  auto* calib_builtin =
      compile->add_flag("--calib-builtin", copt.calib_builtin,
                        "int4-gptq: GPTQ on the built-in multilingual calibration text");
  auto* rtn = compile->add_flag("--rtn", copt.rtn, "int4-gptq: round-to-nearest instead of GPTQ");
  calib_opt->excludes(calib_builtin)->excludes(rtn);
  calib_builtin->excludes(rtn);
  compile->add_flag("--act-order", copt.act_order,
                    "int4-gptq GPTQ: quantize columns by decreasing Hessian diagonal (desc_act)");
  compile
      ->add_option("--damp", copt.damp_percent,
                   "int4-gptq GPTQ: dampening, fraction of the mean Hessian diagonal")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  compile
      ->add_option("--calib-max-tokens", copt.calib_max_tokens,
                   "int4-gptq GPTQ: use at most the first N tokens of the calibration text "
                   "(>= 1; the default is above 7B's 18,944 down_proj inputs). The calibration "
                   "forward holds every token's activations: memory grows linearly with N, at "
                   "most 2 x (hidden + intermediate) fp32 per token on the GPU (7B: 5.9 GB at "
                   "32768), about 8 GB of RAM for 7B on the CPU")
      ->capture_default_str();
  bool no_damp_search = false;
  compile->add_flag("--no-damp-search", no_damp_search,
                    "int4-gptq GPTQ: no damping search. By default every linear picks RTN or GPTQ "
                    "with d, 10d or 100d (d = --damp) by its output error on a validation split of "
                    "the calibration text (every 5th block of 64 positions of each sequence), then "
                    "a GPTQ winner is quantized again on all calibration tokens");
  compile
      ->add_option("--gptq-device", gptq_device,
                   "int4-gptq GPTQ: where to quantize (auto = the GPU when one is present)")
      ->check(CLI::IsMember({"auto", "cpu", "gpu"}))
      ->capture_default_str();
  compile->add_option("--quality-report", copt.quality_report,
                      "int4-gptq GPTQ: hold every 5th calibration sequence out of the Hessians "
                      "and write GPTQ's and RTN's per-linear output errors on it to FILE (JSON)");
  compile->add_option("--tp", copt.tp, "Tensor-parallel degree (per-rank weight sections)")
      ->check(CLI::IsMember({1, 2, 4, 8}))
      ->capture_default_str();
  compile->add_option(
      "--arch", archs,
      "GPU targets for NVRTC-compiled kernels, comma separated (e.g. sm_80,sm_90a); "
      "empty = no kernels section");
  compile->add_option("-j,--threads", copt.threads, "Conversion threads (0 = all cores)");

  // inspect / verify
  std::string file;
  bool as_json = false;
  auto* inspect = app.add_subcommand("inspect", "Print an artifact's config, sections and tensors");
  inspect->add_option("file", file, "Artifact")->required();
  inspect->add_flag("--json", as_json, "Machine-readable output");
  auto* verify =
      app.add_subcommand("verify",
                         "Check framing, FlatBuffers metadata, bounds and every section checksum "
                         "(reads the whole file)");
  verify->add_option("file", file, "Artifact")->required();

  // make-test-model
  qw::TestModelOptions topt;
  topt.tokenizer_dir = QW_DEFAULT_TOKENIZER_DIR;
  std::string tie;
  auto* mk = app.add_subcommand("make-test-model",
                                "Write a random-weight Qwen2 checkpoint in exact HF layout");
  mk->add_option("--preset", topt.preset, "Model shape")
      ->check(CLI::IsMember({"tiny", "0.5b", "7b"}))
      ->capture_default_str();
  mk->add_option("--seed", topt.seed, "Random seed (same seed, same bytes)")->capture_default_str();
  mk->add_option("-o,--output", topt.output_dir, "Output directory")->required();
  mk->add_option("--tokenizer", topt.tokenizer_dir,
                 "Directory with tokenizer.json, tokenizer_config.json and "
                 "qwen2.5-instruct-chat-template.jinja")
      ->capture_default_str();
  mk->add_option("--tie-embeddings", tie, "Override the preset: true|false")
      ->check(CLI::IsMember({"true", "false"}));
  mk->add_option("--layers", topt.layers,
                 "Override the preset's number of layers (a 7b-shaped model with 2 layers profiles "
                 "the 7b kernels in seconds)")
      ->check(CLI::Range(1, 1000));
  mk->add_option("--rope-scaling", topt.rope_scaling_json,
                 "JSON object for config.json rope_scaling, e.g. "
                 "'{\"type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":32768}'");

  // tokenize (no artifact needed)
  std::string tok_dir, tok_text;
  bool tok_spaces = false, tok_no_special = false, tok_show = false;
  auto* tokc = app.add_subcommand("tokenize", "Encode text with a HF tokenizer directory");
  tokc->add_option("--tokenizer", tok_dir, "Directory with tokenizer.json + tokenizer_config.json")
      ->required()
      ->check(CLI::ExistingDirectory);
  tokc->add_option("text", tok_text, "Text to encode")->required();
  tokc->add_flag("--ids", tok_spaces, "Space-separated ids instead of a JSON array");
  tokc->add_flag("--no-special", tok_no_special, "Encode special-token text as plain text");
  tokc->add_flag("--show-tokens", tok_show, "Also print one id<TAB>token line per token");

  CLI11_PARSE(app, argc, argv);
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);

  if (*compile) {
    copt.dtype = dtype == "bf16" ? qw::DType::BF16 : qw::DType::F16;
    copt.int4 = dtype == "int4-gptq";
    copt.archs = split_archs(archs);
    copt.cancel = &g_cancel;
    copt.damp_search = !no_damp_search;
    copt.compiler_version = QW_VERSION;
    copt.kernel_builder = qw::compile_kernels;
    auto device = qw::gptq::parse_gptq_device(gptq_device);
    if (!device.ok()) return fail(device.status());
    copt.gptq_device = *device;
#ifdef QW_HAVE_GPTQ_GPU
    copt.gptq_gpu = &qw::gptq::gpu::gpu_gptq_backend();
#endif
    copt.tokenizer_builder = [](const std::string& dir) -> qw::Expected<std::vector<uint8_t>> {
      if (!std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json")) {
        std::fprintf(stderr,
                     "qwc: warning: %s has no tokenizer.json; the artifact will have no "
                     "tokenizer section\n",
                     dir.c_str());
        return std::vector<uint8_t>();
      }
      return qw::build_tokenizer_blob(dir);
    };
    auto r = qw::compile_checkpoint(copt);
    if (!r.ok()) return fail(r.status());
    std::fprintf(stderr,
                 "qwc: wrote %s (%.2f GB) in %.1f s; read %.2f GB; %llu elements, %llu fp16 "
                 "underflows to zero\n",
                 copt.output.c_str(), double(r->bytes_written) / 1e9, r->seconds,
                 double(r->bytes_read) / 1e9, (unsigned long long)r->elements,
                 (unsigned long long)r->underflows);
    if (!r->gptq_device.empty())
      std::fprintf(stderr, "qwc: GPTQ on the %s took %.1f s of the %.1f s\n",
                   r->gptq_device.c_str(), r->quantize_seconds, r->seconds);
    if (!r->damp_search_summary.empty())
      std::fprintf(stderr, "qwc: %s\n", r->damp_search_summary.c_str());
    if (!r->quality_summary.empty())
      std::fprintf(stderr, "qwc: %s (%s)\n", r->quality_summary.c_str(),
                   copt.quality_report.c_str());
    return 0;
  }
  if (*inspect) {
    auto a = qw::Artifact::open(file);
    if (!a.ok()) return fail(a.status());
    if (as_json)
      std::cout << qw::describe_artifact(*a).dump(2) << "\n";
    else
      std::cout << qw::format_artifact_text(*a);
    return 0;
  }
  if (*verify) {
    qw::Status s = qw::verify_artifact(file);
    if (!s.ok()) return fail(s);
    std::printf("%s: OK (framing, metadata, bounds, all section checksums)\n", file.c_str());
    return 0;
  }
  if (*tokc) {
    auto tok = qw::Tokenizer::from_hf_dir(tok_dir);
    if (!tok.ok()) return fail(tok.status());
    qw::TokenizeCliOptions opt;
    opt.format = tok_spaces ? qw::IdsFormat::kSpaces : qw::IdsFormat::kJson;
    opt.allow_special = !tok_no_special;
    opt.show_tokens = tok_show;
    qw::print_tokenize(*tok, tok_text, opt, std::cout);
    return 0;
  }
  if (*mk) {
    if (!tie.empty()) {
      topt.tie_embeddings_override = true;
      topt.tie_embeddings = tie == "true";
    }
    qw::Status s = qw::write_test_model(topt);
    if (!s.ok()) return fail(s);
    std::fprintf(stderr, "qwc: wrote %s test model to %s\n", topt.preset.c_str(),
                 topt.output_dir.c_str());
    return 0;
  }
  return 0;
}
