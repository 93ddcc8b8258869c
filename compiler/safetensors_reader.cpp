#include "compiler/safetensors_reader.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace qw {

namespace {

Expected<DType> parse_dtype(const std::string& s, const std::string& where) {
  if (s == "BF16") return DType::BF16;
  if (s == "F16") return DType::F16;
  if (s == "F32") return DType::F32;
  if (s == "I32") return DType::I32;
  if (s == "U8") return DType::U8;
  return Status::Error(where + ": unsupported dtype \"" + s + "\" (supported: BF16, F16, F32, I32, U8)");
}

}  // namespace

Expected<std::vector<SafetensorInfo>> SafetensorsFile::parse_header(const uint8_t* data,
                                                                    uint64_t size,
                                                                    const std::string& path) {
  if (size < 8) return Status::Error(path + ": too small to be a safetensors file");
  uint64_t header_len = 0;
  std::memcpy(&header_len, data, 8);
  if (header_len > kMaxSafetensorsHeader)
    return Errorf("%s: header length %llu exceeds the %llu-byte cap", path.c_str(),
                  (unsigned long long)header_len, (unsigned long long)kMaxSafetensorsHeader);
  if (header_len > size - 8)
    return Errorf("%s: truncated: header claims %llu bytes, file has %llu", path.c_str(),
                  (unsigned long long)header_len, (unsigned long long)(size - 8));
  nlohmann::json h = nlohmann::json::parse(data + 8, data + 8 + header_len, nullptr, false);
  if (h.is_discarded() || !h.is_object())
    return Status::Error(path + ": header is not a JSON object");

  const uint64_t data_start = 8 + header_len;
  const uint64_t data_size = size - data_start;
  std::vector<SafetensorInfo> out;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    const std::string where = path + ": tensor " + it.key();
    const nlohmann::json& e = it.value();
    if (!e.is_object() || !e.contains("dtype") || !e["dtype"].is_string() ||
        !e.contains("shape") || !e["shape"].is_array() || !e.contains("data_offsets") ||
        !e["data_offsets"].is_array() || e["data_offsets"].size() != 2)
      return Status::Error(where + ": entry needs dtype, shape and data_offsets[2]");
    SafetensorInfo t;
    t.name = it.key();
    t.file = path;
    QW_ASSIGN_OR_RETURN(t.dtype, parse_dtype(e["dtype"].get<std::string>(), where));
    uint64_t numel = 1;
    for (const auto& d : e["shape"]) {
      if (!d.is_number_unsigned()) return Status::Error(where + ": shape must be non-negative integers");
      const uint64_t v = d.get<uint64_t>();
      if (v > (uint64_t(1) << 40) || (v > 0 && numel > (uint64_t(1) << 48) / v))
        return Status::Error(where + ": shape is implausibly large");
      numel *= v;
      t.shape.push_back(int64_t(v));
    }
    const auto& off = e["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      return Status::Error(where + ": data_offsets must be non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    if (b > en || en > data_size)
      return Errorf("%s: data_offsets [%llu, %llu] outside the %llu data bytes (truncated file?)",
                    where.c_str(), (unsigned long long)b, (unsigned long long)en,
                    (unsigned long long)data_size);
    if (en - b != numel * dtype_size(t.dtype))
      return Errorf("%s: %llu bytes for shape with %llu elements of %s", where.c_str(),
                    (unsigned long long)(en - b), (unsigned long long)numel,
                    std::string(dtype_name(t.dtype)).c_str());
    t.file_offset = data_start + b;
    t.size = en - b;
    t.data = data + t.file_offset;
    out.push_back(std::move(t));
  }
  // Overlapping byte ranges would alias two tensors: refuse them.
  std::vector<const SafetensorInfo*> sorted;
  for (const auto& t : out) sorted.push_back(&t);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->file_offset < b->file_offset; });
  for (size_t i = 1; i < sorted.size(); ++i)
    if (sorted[i - 1]->file_offset + sorted[i - 1]->size > sorted[i]->file_offset)
      return Status::Error(path + ": tensors " + sorted[i - 1]->name + " and " + sorted[i]->name +
                           " overlap");
  return out;
}

Expected<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  QW_ASSIGN_OR_RETURN(f.file_, MappedFile::open(path));
  QW_ASSIGN_OR_RETURN(f.tensors_, parse_header(f.file_.data(), f.file_.size(), path));
  return f;
}

Expected<Checkpoint> Checkpoint::open(const std::string& dir) {
  namespace fs = std::filesystem;
  Checkpoint c;
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shard_names;
  std::map<std::string, std::string> weight_map;
  if (fs::exists(index)) {
    std::ifstream in(index);
    nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") ||
        !j["weight_map"].is_object())
      return Status::Error(index.string() + ": not a JSON object with a weight_map");
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        return Status::Error(index.string() + ": weight_map[" + it.key() + "] is not a string");
      const std::string shard = it.value().get<std::string>();
      if (shard.find('/') != std::string::npos || shard.find("..") != std::string::npos)
        return Status::Error(index.string() + ": shard name " + shard + " leaves the directory");
      weight_map[it.key()] = shard;
      if (std::find(shard_names.begin(), shard_names.end(), shard) == shard_names.end())
        shard_names.push_back(shard);
    }
    std::sort(shard_names.begin(), shard_names.end());
  } else if (fs::exists(fs::path(dir) / "model.safetensors")) {
    shard_names.push_back("model.safetensors");
  } else {
    return Status::Error(dir + ": no model.safetensors.index.json or model.safetensors");
  }
  for (const auto& name : shard_names) {
    const std::string p = (fs::path(dir) / name).string();
    QW_ASSIGN_OR_RETURN(SafetensorsFile f, SafetensorsFile::open(p));
    c.shards_.push_back(std::make_unique<SafetensorsFile>(std::move(f)));
    c.shard_paths_.push_back(p);
    for (const auto& t : c.shards_.back()->tensors()) {
      if (!weight_map.empty()) {
        auto w = weight_map.find(t.name);
        if (w == weight_map.end() || w->second != name) continue;  // index decides
      }
      if (c.by_name_.count(t.name))
        return Status::Error(p + ": tensor " + t.name + " appears in two shards");
      c.by_name_[t.name] = t;
      c.shard_of_[t.name] = c.shards_.back().get();
    }
  }
  for (const auto& [tensor, shard] : weight_map)
    if (!c.by_name_.count(tensor))
      return Status::Error(index.string() + ": tensor " + tensor + " is not in shard " + shard);
  return c;
}

Expected<const SafetensorInfo*> Checkpoint::find(const std::string& name) const {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) return Status::Error("checkpoint lacks tensor " + name);
  return &it->second;
}

void Checkpoint::release(const SafetensorInfo& t, uint64_t offset, uint64_t length) const {
  auto it = shard_of_.find(t.name);
  if (it != shard_of_.end()) it->second->file().release(t.file_offset + offset, length);
}

}  // namespace qw
