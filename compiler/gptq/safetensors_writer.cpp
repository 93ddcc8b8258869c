#include "compiler/gptq/safetensors_writer.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace qw::gptq {

namespace {

const char* st_dtype(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::U8: return "U8";
  }
  return "?";
}

Status write_file(const std::string& path, const std::string& head, const std::vector<uint8_t>& body) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return Status::Error(path + ": cannot write");
  const uint64_t n = head.size();
  out.write(reinterpret_cast<const char*>(&n), 8);
  out.write(head.data(), std::streamsize(head.size()));
  out.write(reinterpret_cast<const char*>(body.data()), std::streamsize(body.size()));
  out.close();
  if (!out) return Status::Error(path + ": write failed");
  return Status::Ok();
}

}  // namespace

void SafetensorsWriter::add(std::string name, DType dtype, std::vector<int64_t> shape,
                            std::span<const uint8_t> bytes) {
  entries_.push_back({dtype, std::move(shape), data_.size(), bytes.size()});
  names_.push_back(std::move(name));
  data_.insert(data_.end(), bytes.begin(), bytes.end());
}

Status SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  h["__metadata__"] = {{"format", "pt"}};
  for (size_t i = 0; i < names_.size(); ++i) {
    const Entry& e = entries_[i];
    h[names_[i]] = {{"dtype", st_dtype(e.dtype)}, {"shape", e.shape},
                    {"data_offsets", {e.offset, e.offset + e.size}}};
  }
  std::string head = h.dump();
  head.resize((head.size() + 7) / 8 * 8, ' ');
  return write_file(path, head, data_);
}

Status write_safetensors_index(const std::string& dir,
                               const std::vector<std::pair<std::string, std::string>>& weight_map) {
  nlohmann::ordered_json j;
  j["metadata"] = nlohmann::ordered_json::object();
  j["weight_map"] = nlohmann::ordered_json::object();
  for (const auto& [t, f] : weight_map) j["weight_map"][t] = f;
  const auto p = (std::filesystem::path(dir) / "model.safetensors.index.json").string();
  std::ofstream out(p, std::ios::trunc);
  if (!out) return Status::Error(p + ": cannot write");
  out << j.dump(2);
  out.close();
  if (!out) return Status::Error(p + ": write failed");
  return Status::Ok();
}

}  // namespace qw::gptq
