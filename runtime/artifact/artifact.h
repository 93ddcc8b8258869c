// Read side of a .qwart: maps the file, checks the framing and the FlatBuffers metadata,
// and hands out zero-copy views of tensors and sections.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "artifact_format.h"
#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/model_config.h"
#include "core/status.h"
#include "qw_schema/artifact_generated.h"

namespace qw {

struct TensorView {
  std::string_view name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  int tp_rank = 0;
  fb::Layout layout = fb::Layout::Plain;
  fb::TpSplit tp_split = fb::TpSplit::Replicated;
  uint32_t section = 0;
  uint64_t offset_in_section = 0;
  const uint8_t* data = nullptr;  // points into the mapping
  uint64_t size = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  int64_t rows() const { return shape.empty() ? 0 : shape[0]; }
  int64_t cols() const { return shape.size() < 2 ? 1 : shape[1]; }
};

struct SectionView {
  std::string_view name;
  fb::SectionKind kind = fb::SectionKind::Weights;
  int tp_rank = -1;
  uint64_t offset = 0;
  uint64_t size = 0;
  const uint8_t* data = nullptr;
};

class Artifact {
 public:
  struct OpenOptions {
    bool verify_checksums = false;  // hash every section (reads the whole file)
  };
  static Expected<Artifact> open(const std::string& path, OpenOptions opts);
  static Expected<Artifact> open(const std::string& path) { return open(path, OpenOptions{}); }

  const std::string& path() const { return file_.path(); }
  const MappedFile& file() const { return file_; }
  const fb::Artifact& metadata() const { return *meta_; }
  const ModelConfig& config() const { return config_; }
  const GenerationDefaults& generation() const { return generation_; }
  const TpPlan& tp_plan() const { return plan_; }
  int tp_size() const { return int(plan_.tp); }
  DType weight_dtype() const { return DType(meta_->weight_dtype()); }

  Expected<TensorView> tensor(std::string_view name, int tp_rank = 0) const;
  bool has_tensor(std::string_view name, int tp_rank = 0) const;
  std::vector<TensorView> tensors() const;
  std::vector<SectionView> sections() const;
  // The one weights section of a rank: a single contiguous range to copy to its GPU.
  Expected<SectionView> weights_section(int tp_rank) const;
  // Decompressed payload of the (single) section of that kind, e.g. Tokenizer or Kernels;
  // empty vector if the artifact has none.
  Expected<std::vector<uint8_t>> section_payload(fb::SectionKind kind) const;
  // Hashes every section and compares with the metadata; names the first bad section.
  Status verify_checksums() const;

 private:
  TensorView view_of(const fb::Tensor& t) const;
  MappedFile file_;
  const fb::Artifact* meta_ = nullptr;
  ModelConfig config_;
  GenerationDefaults generation_;
  TpPlan plan_;
};

// One Expected-returning entry for tools: open + verify everything.
Status verify_artifact(const std::string& path);

}  // namespace qw
