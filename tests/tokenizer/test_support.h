// Shared helpers for the tokenizer tests: the Qwen tokenizer from tests/data, loaded once.
#pragma once
#include <filesystem>
#include <string>

#include "tokenizer/tokenizer.h"

namespace qw::test {

inline std::string data_dir() {
  return QW_TEST_DATA_DIR;
}

// The Qwen tokenizer of tests/data (tokenizer.json + Qwen3's tokenizer_config.json).
inline const Tokenizer& qwen_tokenizer() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_hf_dir(data_dir());
    if (!t.ok()) throw std::runtime_error(t.status().message());
    return std::move(t).value();
  }();
  return tok;
}

// A checkpoint-like dir with tests/data's tokenizer.json and Qwen2.5's chat_template.jinja.
inline std::string qwen25_dir() {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(QW_SCRATCH_ROOT) / "tokenizer_test_qwen25";
  fs::create_directories(dir);
  for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
    if (!fs::exists(dir / f)) fs::create_symlink(fs::path(data_dir()) / f, dir / f);
  }
  fs::copy_file(fs::path(data_dir()) / "qwen2.5-instruct-chat-template.jinja",
                dir / "chat_template.jinja", fs::copy_options::overwrite_existing);
  return dir.string();
}

inline const Tokenizer& qwen25_tokenizer() {
  static const Tokenizer tok = [] {
    auto t = Tokenizer::from_hf_dir(qwen25_dir());
    if (!t.ok()) throw std::runtime_error(t.status().message());
    return std::move(t).value();
  }();
  return tok;
}

}  // namespace qw::test
