// libFuzzer target: arbitrary bytes through encode (both special-token modes), decode and the
// streaming decoder. Checks: no crash / hang, decode(encode(s)) equals NFC of s with invalid
// UTF-8 replaced, every id in range, streamed text equals decode and is valid UTF-8.
// Tokenizer: $QW_FUZZ_TOKENIZER_DIR, else tests/data (QW_TEST_DATA_DIR).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "tokenizer/nfc.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

#ifndef QW_TEST_DATA_DIR
#define QW_TEST_DATA_DIR "tests/data"
#endif

namespace {

const qw::Tokenizer& tokenizer() {
  static const qw::Tokenizer tok = [] {
    const char* dir = std::getenv("QW_FUZZ_TOKENIZER_DIR");
    auto t = qw::Tokenizer::from_hf_dir(dir != nullptr ? dir : QW_TEST_DATA_DIR);
    if (!t.ok()) std::abort();
    return std::move(t).value();
  }();
  return tok;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const qw::Tokenizer& tok = tokenizer();
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string expected, sanitized;
  qw::utf8::append_lossy(input, sanitized);
  qw::nfc_normalize(sanitized, expected);
  for (bool allow_special : {true, false}) {
    const std::vector<int32_t> ids = tok.encode(input, allow_special);
    for (int32_t id : ids) {
      if (id < 0 || id >= tok.vocab_size()) std::abort();
    }
    const std::string decoded = tok.decode(ids);
    if (decoded != expected) std::abort();
    qw::StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      if (!qw::utf8::is_valid(piece)) std::abort();
      streamed += piece;
    }
    streamed += stream.flush();
    if (streamed != decoded) std::abort();
  }
  return 0;
}
