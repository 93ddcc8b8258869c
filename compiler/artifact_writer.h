// Streams a .qwart to `OUT.tmp.<pid>`: preamble placeholder, sections (each 64 KiB-aligned,
// hashed while written), then the metadata, then the patched preamble; fsync and rename on
// finish(). Destroying an unfinished writer removes the temporary file.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "core/dtype.h"
#include "core/model_config.h"
#include "core/status.h"
#include "qw_schema/artifact_generated.h"

namespace qw {

// QuantParams of an INT4 weight (schema/artifact.fbs, docs/int4_layout.md).
struct QuantRecord {
  std::string method = "gptq";
  int bits = 4;
  int group_size = 0;
  bool symmetric = true;
  bool act_order = false;
  std::string scales_tensor, zeros_tensor, g_idx_tensor, packing, perm_tensor;
  int64_t rows = 0, cols = 0;
  int zero_point = 8;
};

struct TensorRecord {
  std::string name;
  DType dtype = DType::F16;
  std::vector<int64_t> shape;
  int tp_rank = 0;
  uint32_t section = 0;
  uint64_t offset = 0;  // within the section
  uint64_t size = 0;
  fb::Layout layout = fb::Layout::Plain;
  fb::TpSplit tp_split = fb::TpSplit::Replicated;
  std::optional<QuantRecord> quant;
};

struct KernelImageRecord {
  std::string module, arch, format, key;
  uint64_t offset = 0, size = 0;
};

struct SourceFileRecord {
  std::string name;
  uint64_t size = 0;
  std::string sha256;
};

struct ArtifactMetadata {
  ModelConfig config;
  GenerationDefaults generation;
  DType weight_dtype = DType::F16;
  int tp_size = 1;
  std::vector<std::string> target_archs;
  std::string compiler_version;
  std::string command_line;
  std::vector<SourceFileRecord> sources;
  std::vector<KernelImageRecord> kernels;
};

class ArtifactWriter {
 public:
  static Expected<ArtifactWriter> create(const std::string& out_path);
  ArtifactWriter(ArtifactWriter&&) noexcept;
  ArtifactWriter& operator=(ArtifactWriter&&) = delete;
  ArtifactWriter(const ArtifactWriter&) = delete;
  ~ArtifactWriter();

  // Raw (uncompressed) section written piecewise.
  Expected<uint32_t> begin_section(const std::string& name, fb::SectionKind kind, int tp_rank);
  Status write(std::span<const uint8_t> bytes);
  // Pads the current section with zeros to a multiple of `alignment`; returns the offset.
  Expected<uint64_t> align(uint64_t alignment);
  uint64_t section_offset() const { return section_pos_; }
  Status end_section();
  // A whole section from memory, zstd-compressed.
  Expected<uint32_t> add_compressed_section(const std::string& name, fb::SectionKind kind,
                                            std::span<const uint8_t> payload);
  void add_tensor(TensorRecord t) { tensors_.push_back(std::move(t)); }

  Status finish(const ArtifactMetadata& meta);
  const std::string& temp_path() const { return tmp_path_; }

 private:
  struct SectionRecord {
    std::string name;
    fb::SectionKind kind;
    int tp_rank;
    uint64_t offset, size, uncompressed_size;
    fb::Compression compression;
    uint64_t checksum;
  };
  ArtifactWriter() = default;
  Status write_raw(const uint8_t* p, size_t n);  // buffered, file position advances
  Status flush();
  Status pad_file_to(uint64_t alignment);

  int fd_ = -1;
  std::string out_path_, tmp_path_;
  std::vector<uint8_t> buffer_;
  uint64_t file_pos_ = 0;
  bool in_section_ = false;
  uint64_t section_pos_ = 0;
  std::unique_ptr<Xxh3Stream> hash_;
  std::vector<SectionRecord> sections_;
  std::vector<TensorRecord> tensors_;
  bool finished_ = false;
};

}  // namespace qw
