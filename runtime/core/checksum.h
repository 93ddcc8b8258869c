// Hashes: XXH3-64 for artifact sections (fast enough to check 15 GB in seconds),
// SHA-256 for provenance of source files (what users compare with HF's published hashes).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "core/status.h"

namespace qw {

uint64_t xxh3_64(std::span<const uint8_t> bytes);

// Incremental XXH3-64 (same result as xxh3_64 over the concatenation).
class Xxh3Stream {
 public:
  Xxh3Stream();
  ~Xxh3Stream();
  Xxh3Stream(const Xxh3Stream&) = delete;
  Xxh3Stream& operator=(const Xxh3Stream&) = delete;
  void update(std::span<const uint8_t> bytes);
  uint64_t digest() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Lower-case hex SHA-256 of a whole file.
Expected<std::string> sha256_file(const std::string& path);
std::string sha256_hex(std::span<const uint8_t> bytes);

}  // namespace qw
