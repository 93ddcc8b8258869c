// Minimal safetensors writer: tensors collected in memory, written as one file (header JSON
// padded to 8 bytes, then the data in insertion order). Used for the per-layer GPTQ files the
// quantizer hands to the importer, and by tests to build GPTQ checkpoints without Python.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"

namespace qw::gptq {

class SafetensorsWriter {
 public:
  void add(std::string name, DType dtype, std::vector<int64_t> shape, std::span<const uint8_t> bytes);
  template <typename T>
  void add_typed(std::string name, DType dtype, std::vector<int64_t> shape, const std::vector<T>& v) {
    add(std::move(name), dtype, std::move(shape),
        {reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(T)});
  }
  const std::vector<std::string>& names() const { return names_; }
  Status write(const std::string& path) const;

 private:
  struct Entry {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t offset, size;
  };
  std::vector<std::string> names_;
  std::vector<Entry> entries_;
  std::vector<uint8_t> data_;
};

// Writes model.safetensors.index.json mapping each tensor name to its shard file name.
Status write_safetensors_index(const std::string& dir,
                               const std::vector<std::pair<std::string, std::string>>& weight_map);

}  // namespace qw::gptq
