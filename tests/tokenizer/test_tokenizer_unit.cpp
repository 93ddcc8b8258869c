// Unit tests: UTF-8 handling, NFC, BPE edge cases, added tokens, blob format, HF import
// validation, streaming decode, CLI helpers.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "test_support.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/nfc.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenize_cli.h"
#include "tokenizer/tokenizer_data.h"
#include "tokenizer/utf8.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kQwenRegex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string lossy(std::string_view s) {
  std::string out;
  qw::utf8::append_lossy(s, out);
  return out;
}

std::string nfc(std::string_view s) {
  std::string out;
  qw::nfc_normalize(s, out);
  return out;
}

// A tiny tokenizer.json: the 256 byte tokens, "ab" and "abc" via two merges, one special
// token. Tests mutate it to check that unsupported components are refused by name.
json tiny_tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) {
    vocab[qw::byte_level::encode_bytes(std::string(1, static_cast<char>(b)))] = b;
  }
  vocab["ab"] = 256;
  vocab["abc"] = 257;
  return json{
      {"version", "1.0"},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         json::array(
             {{{"type", "Split"},
               {"pattern", {{"Regex", kQwenRegex}}},
               {"behavior", "Isolated"},
               {"invert", false}},
              {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}})}}},
      {"post_processor", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"vocab", vocab},
        {"merges", json::array({json::array({"a", "b"}), "ab c"})}}},
      {"added_tokens", json::array({{{"id", 258},
                                     {"content", "<s>"},
                                     {"special", true},
                                     {"normalized", false},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"single_word", false}}})}};
}

std::string write_dir(const std::string& name, const json& tokenizer, const json& config) {
  const fs::path dir = fs::path(QW_SCRATCH_ROOT) / "tokenizer_test_tmp" / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << tokenizer.dump();
  if (!config.is_null()) std::ofstream(dir / "tokenizer_config.json") << config.dump();
  return dir.string();
}

std::string import_error(const std::string& name, const json& tokenizer) {
  auto r = qw::build_tokenizer_blob(write_dir(name, tokenizer, nullptr));
  return r.ok() ? std::string("(accepted)") : r.status().message();
}

}  // namespace

TEST_CASE("utf8: lossy decoding replaces maximal subparts like Python errors='replace'") {
  CHECK(lossy("plain") == "plain");
  CHECK(lossy("abc\xff"
              "def") ==
        "abc\xEF\xBF\xBD"
        "def");
  CHECK(lossy("\xf0\x9f\x98x") == "\xEF\xBF\xBDx");                        // truncated 4-byte
  CHECK(lossy("\xe0\x80\xaf") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong
  CHECK(lossy("\xed\xa0\x80") == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
  CHECK(lossy("\xf4\x90\x80\x80") ==
        "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // > U+10FFFF
  CHECK(lossy("\xe4\xbd") == "\xEF\xBF\xBD");                 // cut at end
  CHECK(qw::utf8::complete_prefix_length("a\xe4\xbd") == 1);
  CHECK(qw::utf8::complete_prefix_length("a\xe4\x41") == 3);  // invalid: nothing to hold
  CHECK(qw::utf8::complete_prefix_length("\xf0\x9f\x98\x80") == 4);
}

TEST_CASE("nfc: composition, reordering, Hangul, singletons, exclusions") {
  CHECK(nfc("e\xCC\x81") == "\xC3\xA9");              // e + acute -> é
  CHECK(nfc("\xE2\x84\xAB") == "\xC3\x85");           // Angstrom sign -> Å
  CHECK(nfc("a\xCC\xA3\xCC\x82") == "\xE1\xBA\xAD");  // a + dot below + circumflex
  CHECK(nfc("a\xCC\x82\xCC\xA3") == "\xE1\xBA\xAD");  // same after reordering
  CHECK(nfc("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8") == "\xEA\xB0\x81");  // jamo -> 각
  CHECK(nfc("\xE0\xA4\x95\xE0\xA4\xBC") == "\xE0\xA4\x95\xE0\xA4\xBC");  // excluded: stays
  CHECK(nfc("\xCC\x81x") == "\xCC\x81x");                                // leading mark stays
  // HF's tables predate Unicode 14: U+089C has class 0 there, so no reordering happens.
  CHECK(nfc("\xE4\x93\xA6\xE0\xA2\x9C\xE1\xB7\xBD") == "\xE4\x93\xA6\xE0\xA2\x9C\xE1\xB7\xBD");
  CHECK(qw::nfc_quick_check("plain ascii and 中文"));
  CHECK(!qw::nfc_quick_check("e\xCC\x81"));
}

TEST_CASE("pretokenizer: HF regex conversion spells out Oniguruma's \\s") {
  auto p = qw::convert_hf_regex(R"(\s+(?!\S)|[^\s\p{L}])");
  REQUIRE(p.ok());
  REQUIRE(p->starts_with(R"([\t-\r\x{85}\p{Z}]+(?![^\t-\r\x{85}\p{Z}])|[^\t-\r\x{85}\p{Z}\p{L})"));
  // Letters assigned after PCRE2's Unicode 14 that HF's Oniguruma knows (CJK Ext. H).
  CHECK(p->find(R"(\x{31350}-\x{323AF})") != std::string::npos);
  CHECK(!qw::convert_hf_regex(R"(\w+)").ok());
  CHECK(!qw::convert_hf_regex(R"([\S])").ok());
  auto pre = qw::Pretokenizer::create(kQwenRegex);
  REQUIRE(pre.ok());
  std::vector<std::string> pieces;
  // U+0085 is white space for Oniguruma: "\u0085\u0085x" splits like "  x".
  pre->split("Hello  world's 123\r\n\u0085\u0085x",
             [&](std::string_view s) { pieces.emplace_back(s); });
  const std::vector<std::string> want = {"Hello", " ", " world", "'s",     " ",      "1",
                                         "2",     "3", "\r\n",   "\u0085", "\u0085x"};
  CHECK(pieces == want);
}

TEST_CASE("encode: basic ids, special tokens, allow_special=false, invalid UTF-8") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  CHECK(tok.vocab_size() == 151669);
  CHECK(tok.encode("Hello world!") == std::vector<int32_t>{9707, 1879, 0});
  CHECK(tok.encode("").empty());
  const auto with = tok.encode("<|im_start|>user\nhi<|im_end|>");
  CHECK(with.front() == 151644);
  CHECK(with.back() == 151645);
  const auto without = tok.encode("<|im_start|>user\nhi<|im_end|>", false);
  CHECK(std::find(without.begin(), without.end(), 151644) == without.end());
  CHECK(std::find(without.begin(), without.end(), 151645) == without.end());
  CHECK(tok.decode(without) == "<|im_start|>user\nhi<|im_end|>");
  // Non-special added tokens stay tokens without allow_special, as in HF.
  CHECK(tok.encode("<tool_call>", false) == std::vector<int32_t>{151657});
  // Invalid UTF-8: each maximal ill-formed subpart becomes U+FFFD, then normal encoding.
  CHECK(tok.encode("abc\xff"
                   "def") == tok.encode("abc\xEF\xBF\xBD"
                                        "def"));
  CHECK(tok.encode("\xe4\xbd") == tok.encode("\xEF\xBF\xBD"));
  CHECK(tok.decode(tok.encode("x\xc3(")) == "x\xEF\xBF\xBD(");
}

TEST_CASE("encode: long inputs without spaces do not stall") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  constexpr size_t kLen = 100 * 1000;
  std::mt19937 rng(1);
  std::string letters(kLen, 'a'), random_letters, cjk;
  for (size_t i = 0; i < kLen; ++i) random_letters.push_back(static_cast<char>('a' + rng() % 26));
  for (size_t i = 0; i < kLen / 3; ++i) cjk += "\xE4\xBD\xA0";  // 你
  const std::string spaces(kLen, ' '), punct(kLen, '!');
  for (const std::string* s :
       std::vector<const std::string*>{&letters, &random_letters, &cjk, &spaces, &punct}) {
    const auto t0 = std::chrono::steady_clock::now();
    const auto ids = tok.encode(*s);
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CHECK(tok.decode(ids) == *s);
    CHECK(secs < 2.0);
  }
}

TEST_CASE("decode: unknown ids skipped, skip_special, partial UTF-8 replaced") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  const std::vector<int32_t> ids = {151644, 9707, -5, 999999, 151645};
  CHECK(tok.decode(ids) == "<|im_start|>Hello<|im_end|>");
  CHECK(tok.decode(ids, true) == "Hello");
  // A token that is a lone UTF-8 lead byte decodes to U+FFFD.
  const auto lead = tok.token_id(qw::byte_level::encode_bytes("\xE4"));
  REQUIRE(lead.has_value());
  CHECK(tok.decode(std::vector<int32_t>{*lead}) == "\xEF\xBF\xBD");
}

TEST_CASE("stream decoder: never emits partial UTF-8, matches decode") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  // Byte tokens of 😀 (F0 9F 98 80) pushed one at a time.
  std::vector<int32_t> ids;
  for (char b : std::string("x\xF0\x9F\x98\x80y")) {
    ids.push_back(*tok.token_id(qw::byte_level::encode_bytes(std::string(1, b))));
  }
  qw::StreamDecoder s(tok);
  std::vector<std::string> outs;
  for (int32_t id : ids) outs.push_back(s.push(id));
  CHECK(outs == std::vector<std::string>{"x", "", "", "", "\xF0\x9F\x98\x80", "y"});
  CHECK(s.flush().empty());
  // A held prefix that never completes is flushed as one U+FFFD.
  CHECK(s.push(ids[1]).empty());
  CHECK(s.flush() == "\xEF\xBF\xBD");
  // An invalid continuation emits the replacement at once.
  CHECK(s.push(ids[1]).empty());
  CHECK(s.push(ids[0]) == "\xEF\xBF\xBDx");
  // Random byte-token streams: the concatenation equals decode(all).
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<int32_t> seq;
    for (int i = 0; i < 20; ++i) {
      const std::string b(1, static_cast<char>(rng() % 256));
      seq.push_back(*tok.token_id(qw::byte_level::encode_bytes(b)));
    }
    qw::StreamDecoder sd(tok);
    std::string all;
    for (int32_t id : seq) {
      const std::string piece = sd.push(id);
      CHECK(qw::utf8::is_valid(piece));
      all += piece;
    }
    all += sd.flush();
    CHECK(all == tok.decode(seq));
  }
}

TEST_CASE("vocabulary accessors and special ids") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  CHECK(tok.token_id("<|im_end|>") == 151645);
  CHECK(tok.token_id("Hello") == 9707);
  CHECK(tok.token_id("\xC4\xA0world") == 1879);  // "Ġworld"
  CHECK(!tok.token_id("no such token").has_value());
  CHECK(tok.token_text(1879) == "\xC4\xA0world");
  CHECK(tok.token_text(151643) == "<|endoftext|>");
  CHECK(tok.token_text(-1).empty());
  CHECK(tok.token_bytes(1879) == " world");
  CHECK(tok.is_special(151645));
  CHECK(!tok.is_special(151657));  // <tool_call> is added but not special
  CHECK(!tok.is_special(9707));
  CHECK(tok.eos_ids() == std::vector<int32_t>{151645});
  CHECK(tok.pad_id() == 151643);
}

TEST_CASE("blob: round trip, truncation and corruption are errors") {
  auto blob = qw::build_tokenizer_blob(qw::test::data_dir());
  REQUIRE(blob.ok());
  auto data = qw::deserialize_tokenizer_data(*blob);
  REQUIRE(data.ok());
  CHECK(qw::serialize_tokenizer_data(*data) == *blob);
  CHECK(data->vocab.size() == 151643);
  CHECK(data->merges.size() == 151387);
  CHECK(data->added_tokens.size() == 26);
  auto tok = qw::Tokenizer::from_blob(*blob);
  REQUIRE(tok.ok());
  CHECK(tok->encode("Hello world!") == std::vector<int32_t>{9707, 1879, 0});
  for (size_t cut : {size_t(0), size_t(5), size_t(20), blob->size() / 2, blob->size() - 1}) {
    auto r = qw::Tokenizer::from_blob(std::span(blob->data(), cut));
    CHECK(!r.ok());
  }
  std::vector<uint8_t> bad = *blob;
  bad[0] = 'X';
  auto r = qw::Tokenizer::from_blob(bad);
  REQUIRE(!r.ok());
  CHECK(r.status().message().find("magic") != std::string::npos);
}

TEST_CASE("import: tiny tokenizer works; unsupported components are refused by name") {
  const json base = tiny_tokenizer_json();
  const json config = {{"eos_token", "<s>"},
                       {"pad_token", {{"content", "<s>"}}},
                       {"chat_template", "{{ messages }}"}};
  auto tok = qw::Tokenizer::from_hf_dir(write_dir("ok", base, config));
  REQUIRE_MESSAGE(tok.ok(), tok.status().message());
  CHECK(tok->encode("abc ab<s>") == std::vector<int32_t>{257, 32, 256, 258});  // "Ġ" = byte 32
  CHECK(tok->eos_ids() == std::vector<int32_t>{258});
  CHECK(tok->pad_id() == 258);
  CHECK(tok->chat_template() == "{{ messages }}");
  CHECK(!tok->render_chat(json::array({{{"role", "user"}, {"content", "x"}}}), nullptr, true).ok());

  json j = base;
  j["normalizer"] = {{"type", "NFKC"}};
  CHECK(import_error("nfkc", j).find("normalizer: unsupported type 'NFKC'") != std::string::npos);
  j = base;
  j["model"]["type"] = "WordPiece";
  CHECK(import_error("wp", j).find("model: unsupported type 'WordPiece'") != std::string::npos);
  j = base;
  j["pre_tokenizer"] = {{"type", "Whitespace"}};
  CHECK(import_error("ws", j).find("pre_tokenizer") != std::string::npos);
  j = base;
  j["decoder"] = {{"type", "WordPiece"}};
  CHECK(import_error("dec", j).find("decoder: unsupported type 'WordPiece'") != std::string::npos);
  j = base;
  j["post_processor"] = {{"type", "TemplateProcessing"}};
  CHECK(import_error("post", j).find("post_processor") != std::string::npos);
  j = base;
  j["model"]["byte_fallback"] = true;
  CHECK(import_error("bf", j).find("byte_fallback") != std::string::npos);
  j = base;
  j["added_tokens"][0]["normalized"] = true;
  CHECK(import_error("norm", j).find("normalized=true") != std::string::npos);
  j = base;
  j["model"]["merges"].push_back(json::array({"zz", "q"}));
  CHECK(import_error("merge", j).find("merges") != std::string::npos);
  j = base;
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = R"(\w+)";
  CHECK(import_error("regex", j).find("regex") != std::string::npos);
}

TEST_CASE("added tokens: lstrip / rstrip swallow white space as in HF") {
  json j = tiny_tokenizer_json();
  j["added_tokens"][0]["lstrip"] = true;
  j["added_tokens"][0]["rstrip"] = true;
  auto tok = qw::Tokenizer::from_hf_dir(write_dir("strip", j, nullptr));
  REQUIRE(tok.ok());
  CHECK(tok->encode("a  <s>  b") == std::vector<int32_t>{'a', 258, 'b'});
}

TEST_CASE("cli helpers: tokenize / detokenize output") {
  const qw::Tokenizer& tok = qw::test::qwen_tokenizer();
  std::ostringstream out;
  qw::print_tokenize(tok, "Hello world!", {}, out);
  CHECK(out.str() == "[9707, 1879, 0]\n");
  out.str("");
  qw::print_tokenize(tok, "Hello world!", {qw::IdsFormat::kSpaces, true, true}, out);
  CHECK(out.str() == "9707 1879 0\n9707\tHello\n1879\t\xC4\xA0world\n0\t!\n");
  auto ids = qw::parse_ids("[9707, 1879,0]\n");
  REQUIRE(ids.ok());
  CHECK(*ids == std::vector<int32_t>{9707, 1879, 0});
  CHECK(!qw::parse_ids("1 x 2").ok());
  out.str("");
  CHECK(qw::print_detokenize(tok, "9707 1879 0", false, out).ok());
  CHECK(out.str() == "Hello world!");
  CHECK(!qw::print_detokenize(tok, "9707 999999", false, out).ok());
}
