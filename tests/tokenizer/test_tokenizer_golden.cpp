// Golden tests: ids, decode and streaming decode against HF `tokenizers` on the same
// tokenizer.json (tests/data/tokenizer/goldens_ids.jsonl, made by
// tools/gen_tokenizer_goldens.py ids on the device machine).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "test_support.h"
#include "tokenizer/nfc.h"
#include "tokenizer/utf8.h"

namespace {

using nlohmann::json;

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::vector<int32_t> ids_of(const json& j) {
  return j.get<std::vector<int32_t>>();
}

std::string show(const std::vector<int32_t>& v) {
  return json(v).dump();
}

}  // namespace

TEST_CASE("golden: ids, decode and stream decode equal HF tokenizers on the golden corpus") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  std::ifstream in(qw::test::data_dir() + "/tokenizer/goldens_ids.jsonl");
  REQUIRE(in.good());
  std::string line;
  size_t cases = 0, failures = 0, no_special_cases = 0;
  const auto fail = [&](const json& c, const std::string& what) {
    if (++failures <= 20) MESSAGE(c["name"].get<std::string>() << ": " << what);
  };
  while (std::getline(in, line)) {
    const json c = json::parse(line);
    if (c.contains("meta")) {
      MESSAGE("goldens from " << c["meta"].dump());
      continue;
    }
    ++cases;
    const std::string text =
        c.contains("hex") ? from_hex(c["hex"].get<std::string>()) : c["text"].get<std::string>();
    const std::vector<int32_t> want = ids_of(c["ids"]);
    const std::vector<int32_t> got = tok.encode(text);
    if (got != want) fail(c, "ids " + show(got) + " != HF " + show(want));
    const std::vector<int32_t> want_ns =
        c.contains("ids_no_special") ? ids_of(c["ids_no_special"]) : want;
    if (c.contains("ids_no_special")) ++no_special_cases;
    const std::vector<int32_t> got_ns = tok.encode(text, /*allow_special=*/false);
    if (got_ns != want_ns) fail(c, "no-special ids " + show(got_ns) + " != HF " + show(want_ns));
    const std::string decoded = c["decoded"].get<std::string>();
    if (tok.decode(want) != decoded) fail(c, "decode differs from HF");
    const std::string skip = c.value("decoded_skip_special", decoded);
    if (tok.decode(want, /*skip_special=*/true) != skip) fail(c, "decode(skip_special) differs");
    // decode(encode(s)) == NFC(s), with invalid UTF-8 replaced first.
    std::string sanitized, nfc;
    qw::utf8::append_lossy(text, sanitized);
    qw::nfc_normalize(sanitized, nfc);
    if (!c.value("roundtrip_differs", false) && nfc != decoded) fail(c, "NFC(s) != HF decode");
    qw::StreamDecoder stream(tok);
    std::string streamed;
    for (int32_t id : want) {
      const std::string piece = stream.push(id);
      if (!qw::utf8::is_valid(piece)) fail(c, "stream emitted invalid UTF-8");
      streamed += piece;
    }
    streamed += stream.flush();
    if (streamed != decoded) fail(c, "stream decode differs");
  }
  MESSAGE(cases << " golden strings, " << no_special_cases << " with distinct no-special ids, "
                << failures << " failures");
  CHECK(cases >= 2000);
  CHECK(failures == 0);
}
