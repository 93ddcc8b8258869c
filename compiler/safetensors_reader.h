// Bounds-checked reader for HuggingFace safetensors files and sharded checkpoints.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/mapped_file.h"
#include "core/status.h"

namespace qw {

struct SafetensorInfo {
  std::string name;
  std::string file;  // path of the shard holding it
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  uint64_t size = 0;
  uint64_t file_offset = 0;  // absolute offset of the bytes in the shard
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// Same cap on the JSON header as the reference safetensors implementation.
inline constexpr uint64_t kMaxSafetensorsHeader = 100ull << 20;

class SafetensorsFile {
 public:
  static Expected<SafetensorsFile> open(const std::string& path);
  // Parses a header held in memory (fuzzing and tests); `file_size` bounds the offsets.
  static Expected<std::vector<SafetensorInfo>> parse_header(const uint8_t* data, uint64_t size,
                                                            const std::string& path);
  const std::vector<SafetensorInfo>& tensors() const { return tensors_; }
  const MappedFile& file() const { return file_; }

 private:
  MappedFile file_;
  std::vector<SafetensorInfo> tensors_;
};

// A checkpoint directory: model.safetensors.index.json + shards, or one model.safetensors.
class Checkpoint {
 public:
  static Expected<Checkpoint> open(const std::string& dir);
  Expected<const SafetensorInfo*> find(const std::string& name) const;
  bool has(const std::string& name) const { return by_name_.count(name) != 0; }
  const std::map<std::string, SafetensorInfo>& tensors() const { return by_name_; }
  const std::vector<std::string>& shard_paths() const { return shard_paths_; }
  // Drops the pages of a tensor from our mapping once converted (bounded RSS).
  void release(const SafetensorInfo& t, uint64_t offset, uint64_t length) const;

 private:
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::vector<std::string> shard_paths_;
  std::map<std::string, SafetensorInfo> by_name_;
  std::map<std::string, const SafetensorsFile*> shard_of_;
};

}  // namespace qw
