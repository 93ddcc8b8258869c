// Shared fixtures for compiler tests: a tiny checkpoint written once per test binary.
#pragma once
#include <filesystem>
#include <string>

#include "compiler/compile_pipeline.h"
#include "compiler/test_model_writer.h"

namespace qw::testing {

inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(QW_SCRATCH_ROOT) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

// A tiny checkpoint with the real vocabulary, written on first use.
inline const std::string& tiny_checkpoint(bool tied = false) {
  static std::string dirs[2];
  std::string& dir = dirs[tied ? 1 : 0];
  if (dir.empty()) {
    TestModelOptions o;
    o.preset = "tiny";
    o.seed = 7;
    o.output_dir = scratch_dir(tied ? "tiny_tied" : "tiny").string();
    o.tokenizer_dir = QW_TEST_DATA_DIR;
    o.tie_embeddings_override = true;
    o.tie_embeddings = tied;
    Status s = write_test_model(o);
    if (!s.ok()) throw std::runtime_error(s.message());
    dir = o.output_dir;
  }
  return dir;
}

inline Expected<CompileReport> compile_to(const std::string& ckpt, const std::string& out, int tp,
                                          DType dtype = DType::F16) {
  CompileOptions o;
  o.checkpoint_dir = ckpt;
  o.output = out;
  o.tp = tp;
  o.dtype = dtype;
  o.threads = 2;
  return compile_checkpoint(o);
}

}  // namespace qw::testing
