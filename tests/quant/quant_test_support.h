// Shared fixtures: the tiny checkpoint, compiling it, and reading an artifact's INT4 weights
// back as the HF layers they came from.
#pragma once
#include <doctest/doctest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "artifact/artifact.h"
#include "artifact/tensor_names.h"
#include "compiler/compile_pipeline.h"
#include "compiler/test_model_writer.h"
#include "quant/int4_artifact.h"

namespace qw::testing {

inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::path(QW_SCRATCH_ROOT) / name;
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

inline const std::string& tiny_checkpoint() {
  static std::string dir;
  if (dir.empty()) {
    TestModelOptions o;
    o.preset = "tiny";
    o.seed = 11;
    o.output_dir = scratch_dir("tiny").string();
    o.tokenizer_dir = QW_TEST_DATA_DIR;
    Status s = write_test_model(o);
    if (!s.ok()) throw std::runtime_error(s.message());
    dir = o.output_dir;
  }
  return dir;
}

struct Int4Compile {
  int tp = 1;
  bool rtn = false, calib_builtin = false, act_order = false;
  int group_size = 128;
};

inline Expected<CompileReport> compile_int4(const std::string& ckpt, const std::string& out,
                                            const Int4Compile& c) {
  CompileOptions o;
  o.checkpoint_dir = ckpt;
  o.output = out;
  o.tp = c.tp;
  o.threads = 2;
  o.int4 = true;
  o.rtn = c.rtn;
  o.calib_builtin = c.calib_builtin;
  o.act_order = c.act_order;
  o.group_size = c.group_size;
  o.calib_max_tokens = 1024;
  o.calib_seq_len = 256;
  return compile_checkpoint(o);
}

// Source (HF layer, row, col) of every element of a rank's fused/split INT4 tensor, so each
// dequantized element can be compared with its HF origin: fn(hf_base, src_row, src_col, value).
using ElementFn = std::function<void(const std::string&, int64_t, int64_t, float)>;

inline void for_each_int4_element(const Artifact& a, const ElementFn& fn) {
  const ModelConfig& c = a.config();
  const TpPlan& p = a.tp_plan();
  const int64_t hd = c.head_dim;
  for (int rank = 0; rank < a.tp_size(); ++rank) {
    const int64_t q0 = p.q_head_begin(rank) * hd, qn = p.q_heads_per_rank * hd;
    const int64_t kv0 = p.kv_head_begin(rank) * hd, kvn = p.kv_heads_per_rank * hd;
    const int64_t i0 = rank * p.intermediate_per_rank, in = p.intermediate_per_rank;
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      auto L = [&](const char* s) { return names::layer(l, s); };
      struct Part {
        std::string src;
        int64_t out_row0, src_row0, rows, src_col0;
      };
      const std::vector<std::pair<std::string, std::vector<Part>>> tensors = {
          {L(names::kQkvWeight),
           {{L("self_attn.q_proj"), 0, q0, qn, 0},
            {L("self_attn.k_proj"), qn, kv0, kvn, 0},
            {L("self_attn.v_proj"), qn + kvn, kv0, kvn, 0}}},
          {L(names::kOProj), {{L("self_attn.o_proj"), 0, 0, c.hidden_size, q0}}},
          {L(names::kGateUp), {{L("mlp.gate_proj"), 0, i0, in, 0}, {L("mlp.up_proj"), in, i0, in, 0}}},
          {L(names::kDown), {{L("mlp.down_proj"), 0, 0, c.hidden_size, i0}}}};
      for (const auto& [name, parts] : tensors) {
        auto m = quant::int4_matrix(a, name, rank);
        REQUIRE_MESSAGE(m.ok(), m.status().message());
        std::vector<float> w(size_t(m->rows * m->cols));
        REQUIRE(quant::dequantize_int4_rows(*m, 0, m->rows, 0, m->cols, w.data(), m->cols).ok());
        for (const Part& part : parts)
          for (int64_t r = 0; r < part.rows; ++r)
            for (int64_t col = 0; col < m->cols; ++col)
              fn(part.src, part.src_row0 + r, part.src_col0 + col,
                 w[size_t((part.out_row0 + r) * m->cols + col)]);
      }
    }
  }
}

}  // namespace qw::testing
