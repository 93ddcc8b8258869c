// qwc compile --dtype int4-gptq --quality-report on the tiny model (CPU GPTQ): the report's
// shape and numbers, what it shows, that the held-out split changes nothing but the
// Hessians, and the refusals.
//
// What GPTQ <= RTN depends on, measured on this model (seed 11, g128, damp 0.01), and so what
// is asserted:
// * Built-in text (1,736 tokens, 4 sequences of <= 512: 1,536 calibration tokens, 200 held
//   out): GPTQ <= RTN on 8 of 14 linears, ratios 0.69-1.27, mean 0.975. Not a bug: measured
//   on its own calibration tokens GPTQ wins on all 14 (ratios 0.11-0.86, asserted below), so
//   the loss out of sample is GPTQ fitting its error feedback to a sample too small for the
//   inputs' width. The test model's weights and embeddings are i.i.d. uniform, so its
//   activations have no outlier channels or low-rank structure that would carry over to new
//   tokens (layer 0's q/k/v inputs are the normalized embeddings of the token ids, so unseen
//   tokens are unseen random directions), and down_proj has 384 inputs for 1,536 tokens.
//   More text turns it around: with 12,800 calibration tokens of the repository's docs GPTQ
//   wins on 14/14 (worst ratio 0.83, mean 0.64; act-order g32: worst 0.82; the docs move
//   these by a few hundredths as they are edited); with only 64 or 128 calibration tokens of
//   the built-in text it loses on 14 and 13 of 14 (ratios up to 2.8).
// * So: with the built-in text only bounds (every ratio < 1.5, mean < 1, GPTQ ahead on at
//   least half); with the docs text GPTQ <= RTN on every linear, worst ratio <= 0.95.
// * Those numbers are without the damping search (--no-damp-search). With it (qwc's default,
//   so the CLI-shaped compiles below) each linear ships RTN or GPTQ with d, 10d or 100d, chosen
//   on validation blocks of the calibration sequences (compiler/gptq/damp_search.h): built-in
//   text 9/14, worst 1.10, mean 0.93 (all 14 GPTQ: 4 d, 6 10d, 4 100d); docs text (now every
//   ~23k tokens, the default --calib-max-tokens being 32768) 14/14, worst 0.78 (act-order g32:
//   0.76). The bounds above hold either way; check_report checks the search's fields.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>

#include "compiler/gptq/calib_text.h"
#include "compiler/gptq/damp_search.h"
#include "compiler/gptq/model_quantizer.h"
#include "compiler/gptq/quality_report.h"
#include "compiler/hf_config.h"
#include "quant_test_support.h"
#include "tokenizer/tokenizer.h"

using namespace qw;
using namespace qw::gptq;
namespace fs = std::filesystem;

namespace {

const char* const kLinears[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                "gate_proj", "up_proj", "down_proj"};

// The options qwc's CLI gives compile_checkpoint for
//   qwc compile TINY -o OUT --dtype int4-gptq --calib-builtin --gptq-device cpu
//       --quality-report REPORT
// (the CLI's defaults: group 128, sequences of 512 tokens, at most 32768, damping search).
CompileOptions cli_options(const fs::path& dir) {
  CompileOptions o;
  o.checkpoint_dir = testing::tiny_checkpoint();
  o.output = (dir / "m.qwart").string();
  o.threads = 2;
  o.int4 = true;
  o.calib_builtin = true;
  o.gptq_device = GptqDevice::kCpu;
  o.quality_report = (dir / "quality.json").string();
  return o;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE_MESSAGE(in.good(), path);
  return nlohmann::json::parse(in);
}

// The calibration sequences compile_checkpoint cuts from `text`.
std::vector<std::vector<int32_t>> sequences_of(const std::string& text, const CompileOptions& o) {
  auto tok = Tokenizer::from_hf_dir(o.checkpoint_dir);
  REQUIRE(tok.ok());
  std::vector<int32_t> ids = tok->encode(text, false);
  if (int64_t(ids.size()) > o.calib_max_tokens) ids.resize(size_t(o.calib_max_tokens));
  return split_calibration(ids, o.calib_seq_len);
}

struct Ratios {
  double worst = 0, mean = 0;
  int wins = 0, count = 0;
};

// Checks the report's shape and arithmetic against `seqs` (the calibration sequences before
// the split) and returns its ratios; prints every linear.
Ratios check_report(const nlohmann::json& j, const std::vector<std::vector<int32_t>>& seqs,
                    const CompileOptions& o) {
  CHECK(j["device"] == "cpu");
  CHECK(j["group_size"] == o.group_size);
  CHECK(j["act_order"] == o.act_order);
  CHECK(j["propagation"].get<std::string>().rfind("quantized:", 0) == 0);
  int64_t tokens = 0;
  for (const auto& s : seqs) tokens += int64_t(s.size());
  const int64_t cs = j["calib_sequences"], hs = j["heldout_sequences"];
  const int64_t ct = j["calib_tokens"], ht = j["heldout_tokens"];
  CHECK(cs + hs == int64_t(seqs.size()));
  CHECK(hs >= 1);
  CHECK(hs == (int64_t(seqs.size()) + 4) / 5);  // every 5th, counting back from the last
  CHECK(ct + ht == tokens);
  int64_t held = 0;
  for (size_t i = seqs.size() - 1;; i -= 5) {
    held += int64_t(seqs[i].size());
    if (i < 5) break;
  }
  CHECK(ht == held);
  const auto& layers = j["layers"];
  auto cfg = read_hf_config(o.checkpoint_dir);
  REQUIRE(cfg.ok());
  REQUIRE(layers.size() == size_t(cfg->num_hidden_layers) * 7);
  Ratios r;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto& e = layers[i];
    CAPTURE(e.dump());
    CHECK(e["layer"] == int64_t(i / 7));
    CHECK(e["linear"] == kLinears[i % 7]);
    for (const char* f : {"gptq_err", "rtn_err", "gptq_rel", "rtn_rel", "reference"}) {
      REQUIRE(e[f].is_number());
      const double v = e[f];
      CHECK(std::isfinite(v));
      CHECK(v >= 0);
    }
    const double g = e["gptq_err"], t = e["rtn_err"], ref = e["reference"];
    REQUIRE(t > 0);
    REQUIRE(ref > 0);
    CHECK(e["gptq_rel"].get<double>() == doctest::Approx(g / ref));
    CHECK(e["rtn_rel"].get<double>() == doctest::Approx(t / ref));
    CHECK(e["ratio"].get<double>() == doctest::Approx(g / t));
    CHECK(e["gptq_le_rtn"] == (g <= t));
    // 4-bit weights keep the outputs within a few percent: a sanity bound on the scale.
    CHECK(t / ref < 0.05);
    MESSAGE("layer " << e["layer"] << " " << e["linear"].get<std::string>() << ": GPTQ " << g
                     << ", RTN " << t << ", ratio " << g / t << " (rel " << g / ref << " vs "
                     << t / ref << ")");
    r.worst = std::max(r.worst, g / t);
    r.mean += g / t;
    r.wins += g <= t;
    ++r.count;
  }
  r.mean /= double(r.count);
  // The damping search: its description and, when it ran, each linear's choice.
  const auto& ds = j["damp_search"];
  REQUIRE(ds.is_object());
  const bool searched = ds["enabled"];
  CHECK(searched == o.damp_search);  // these texts give enough validation tokens
  REQUIRE(ds["candidates"].size() == size_t(kDampCandidates));
  CHECK(ds["candidates"][0]["damp"].is_null());
  CHECK(ds["candidates"][3]["damp"].get<double>() == doctest::Approx(100 * o.damp_percent));
  std::array<int64_t, kDampCandidates> count{};
  for (const auto& e : layers) {
    CAPTURE(e.dump());
    const std::string method = e["method"];
    if (!searched) {
      CHECK(method == "gptq");
      CHECK(e["damp"].get<double>() == o.damp_percent);
      CHECK(!e.contains("val_err"));
      continue;
    }
    std::array<double, kDampCandidates> v{};
    for (int c = 0; c < kDampCandidates; ++c) {
      v[size_t(c)] = e["val_err"][kDampCandidateList[size_t(c)].name];
      CHECK(std::isfinite(v[size_t(c)]));
      CHECK(v[size_t(c)] > 0);
    }
    const int want = choose_damp_candidate(v);
    ++count[size_t(want)];
    CHECK(e["damp_candidate"] == kDampCandidateList[size_t(want)].name);
    CHECK(method == (want == 0 ? "rtn" : "gptq"));
    if (want == 0) {
      CHECK(e["damp"].is_null());
      // RTN shipped is RTN measured (with act-order its groups follow GPTQ's order instead).
      if (!o.act_order) CHECK(e["gptq_err"].get<double>() == e["rtn_err"].get<double>());
    } else {
      CHECK(e["damp"].get<double>() ==
            doctest::Approx(o.damp_percent * kDampCandidateList[size_t(want)].factor));
    }
  }
  if (searched) {
    const int64_t vt = ds["validation_tokens"], ft = ds["fit_tokens"];
    CHECK(vt + ft == ct);
    CHECK(vt >= kDampMinValTokens);
    const auto& sd = j["summary"]["damp_search"];
    CHECK(sd["rtn"] == count[0]);
    CHECK(sd["d"] == count[1]);
    CHECK(sd["10d"] == count[2]);
    CHECK(sd["100d"] == count[3]);
    CHECK(sd["gptq"] == count[1] + count[2] + count[3]);
  } else {
    CHECK(!j["summary"].contains("damp_search"));
  }
  const auto& s = j["summary"];
  CHECK(s["linears"] == r.count);
  CHECK(s["gptq_le_rtn"] == r.wins);
  CHECK(s["worst_ratio"].get<double>() == doctest::Approx(r.worst));
  CHECK(s["mean_ratio"].get<double>() == doctest::Approx(r.mean));
  return r;
}

bool has_temp_files(const fs::path& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) return true;
  return false;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Runs a command, returning its exit status and (merged) output.
std::pair<int, std::string> run(const std::string& cmd) {
  std::string out;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  REQUIRE(p != nullptr);
  std::array<char, 512> buf{};
  while (fgets(buf.data(), int(buf.size()), p)) out += buf.data();
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace

TEST_CASE("quality report: tiny model, built-in text, as the CLI compiles it") {
  const auto dir = testing::scratch_dir("quality_builtin");
  const CompileOptions o = cli_options(dir);
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->gptq_device == "cpu");
  CHECK(r->quality_summary.rfind("quality: GPTQ <= RTN on ", 0) == 0);
  MESSAGE(r->quality_summary);
  MESSAGE(r->damp_search_summary);
  CHECK(r->damp_search_summary.rfind("damping search: 14 linears: ", 0) == 0);
  CHECK(!has_temp_files(dir));
  const nlohmann::json j = read_json(o.quality_report);
  const auto seqs = sequences_of(builtin_calibration_text(), o);
  const Ratios q = check_report(j, seqs, o);
  // Bounds only: the built-in text is too short for this model (header comment).
  CHECK(q.worst < 1.5);
  CHECK(q.mean < 1.0);
  CHECK(2 * q.wins >= q.count);
  // The artifact is whole and says its Hessians came from a split.
  REQUIRE(verify_artifact(o.output).ok());
  auto a = Artifact::open(o.output);
  REQUIRE(a.ok());
  CHECK(a->metadata().provenance()->command_line()->str().find(
            "--calib-builtin --quality-report --calib-max-tokens 32768") != std::string::npos);
  CHECK(a->metadata().provenance()->command_line()->str().find("damp-search") == std::string::npos);
  // Without the flag the command line is the one it always was.
  CompileOptions plain = o;
  plain.quality_report.clear();
  CHECK(normalized_command_line(plain).find("quality") == std::string::npos);
}

TEST_CASE("quality report: with enough calibration text GPTQ <= RTN on every linear") {
  // Real text the model has not been calibrated on elsewhere: the repository's own
  // documentation, README first, then docs/*.md by name (about 23k tokens, all used; four
  // fifths of the sequences for the Hessians).
  std::string text = read_file(fs::path(QW_SOURCE_DIR) / "README.md");
  std::vector<fs::path> docs;
  for (const auto& e : fs::directory_iterator(fs::path(QW_SOURCE_DIR) / "docs"))
    if (e.path().extension() == ".md") docs.push_back(e.path());
  std::sort(docs.begin(), docs.end());
  for (const auto& p : docs) text += "\n" + read_file(p);
  const auto dir = testing::scratch_dir("quality_docs");
  const fs::path calib = dir / "docs.txt";
  std::ofstream(calib, std::ios::binary) << text;
  for (auto [gs, act] : {std::pair{128, false}, std::pair{32, true}}) {
    CAPTURE(gs);
    CAPTURE(act);
    CompileOptions o = cli_options(dir);
    o.calib_builtin = false;
    o.calib_file = calib.string();
    o.group_size = gs;
    o.act_order = act;
    const auto seqs = sequences_of(text, o);
    int64_t tokens = 0;
    for (const auto& s : seqs) tokens += int64_t(s.size());
    REQUIRE_MESSAGE(tokens >= 12000, "the docs give only " << tokens << " tokens");
    auto r = compile_checkpoint(o);
    REQUIRE_MESSAGE(r.ok(), r.status().message());
    MESSAGE("docs text, group " << gs << std::string(act ? " act-order" : "") << ": "
                                << r->quality_summary);
    const Ratios q = check_report(read_json(o.quality_report), seqs, o);
    CHECK(q.wins == q.count);
    CHECK(q.worst <= 0.95);
  }
}

TEST_CASE("quality report: on its own calibration tokens GPTQ beats RTN everywhere") {
  // Held-out = calibration: each held-out Hessian is then the one GPTQ minimized (undamped),
  // so a report that measured a linear on the wrong input (another sublayer's, misaligned
  // token rows) would show here as GPTQ losing.
  const auto dir = testing::scratch_dir("quality_in_sample");
  auto config = read_hf_config(testing::tiny_checkpoint());
  auto ck = Checkpoint::open(testing::tiny_checkpoint());
  REQUIRE(config.ok());
  REQUIRE(ck.ok());
  CompileOptions co = cli_options(dir);
  auto split = split_heldout(sequences_of(builtin_calibration_text(), co));
  REQUIRE(split.ok());
  ModelQuantizeOptions o;
  o.settings.threads = 2;
  o.calibration = split->calibration;
  o.heldout = split->calibration;
  std::vector<LinearQuality> linears;
  o.quality = &linears;
  o.out_dir = (dir / "out").string();
  auto r = quantize_model(*config, *ck, o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  REQUIRE(linears.size() == size_t(config->num_hidden_layers) * 7);
  QualityReport rep;
  rep.linears = linears;
  MESSAGE("in sample: " << quality_summary_line(rep));
  for (const LinearQuality& l : linears) {
    CAPTURE(l.layer);
    CAPTURE(l.linear);
    CHECK(l.err.gptq <= 0.95 * l.err.rtn);  // measured: at most 0.86
  }
}

TEST_CASE("quality report: the weights are those GPTQ makes from the calibration part alone") {
  const auto dir = testing::scratch_dir("quality_same_weights");
  auto config = read_hf_config(testing::tiny_checkpoint());
  auto ck = Checkpoint::open(testing::tiny_checkpoint());
  REQUIRE(config.ok());
  REQUIRE(ck.ok());
  CompileOptions co = cli_options(dir);
  co.calib_seq_len = 128;  // several held-out sequences, between calibration ones
  auto split = split_heldout(sequences_of(builtin_calibration_text(), co));
  REQUIRE(split.ok());
  REQUIRE(split->heldout.size() >= 2);
  ModelQuantizeOptions o;
  o.settings.threads = 2;
  o.calibration = split->calibration;
  o.out_dir = (dir / "alone").string();
  REQUIRE(quantize_model(*config, *ck, o).ok());
  std::vector<LinearQuality> linears;
  o.heldout = split->heldout;
  o.quality = &linears;
  o.settings.threads = 3;  // the thread count changes nothing either
  o.out_dir = (dir / "with_report").string();
  REQUIRE(quantize_model(*config, *ck, o).ok());
  CHECK(linears.size() == size_t(config->num_hidden_layers) * 7);
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "alone")) {
    CAPTURE(e.path().filename().string());
    CHECK(read_file(e.path()) == read_file(dir / "with_report" / e.path().filename()));
    ++files;
  }
  CHECK(files == config->num_hidden_layers + 1);  // a file per layer and the index
  // Held-out sequences without a report (or the reverse) are a caller's mistake.
  o.quality = nullptr;
  auto bad = quantize_model(*config, *ck, o);
  REQUIRE(!bad.ok());
  CHECK(bad.status().message().find("internal") != std::string::npos);
}

TEST_CASE("quality report: refusals are one line, before any output") {
  const auto dir = testing::scratch_dir("quality_refused");
  auto expect_error = [&](const CompileOptions& o, const std::string& has) {
    auto r = compile_checkpoint(o);
    REQUIRE(!r.ok());
    const std::string& m = r.status().message();
    CAPTURE(m);
    CHECK(m.find(has) != std::string::npos);
    CHECK(m.find('\n') == std::string::npos);
    CHECK(!fs::exists(o.output));
    CHECK(!has_temp_files(dir));
  };
  CompileOptions o = cli_options(dir);
  // RTN has no Hessians to compare against.
  o.calib_builtin = false;
  o.rtn = true;
  expect_error(o, "--quality-report");
  expect_error(o, "not --rtn");
  CHECK(!fs::exists(o.quality_report));
  // Not int4-gptq at all.
  o = cli_options(dir);
  o.int4 = false;
  o.calib_builtin = false;
  expect_error(o, "--dtype int4-gptq");
  // Unwritable report paths name the file.
  o = cli_options(dir);
  o.quality_report = (dir / "no_such_dir" / "q.json").string();
  expect_error(o, o.quality_report + ": cannot write the quality report");
  o.quality_report = dir.string();
  expect_error(o, dir.string() + ": cannot write the quality report: is a directory");
  // Too little calibration text to hold a sequence out.
  const fs::path small = dir / "small.txt";
  std::ofstream(small) << "A short calibration text of one sequence.";
  o = cli_options(dir);
  o.calib_builtin = false;
  o.calib_file = small.string();
  expect_error(o, "--quality-report needs at least 2 calibration sequences");
  CHECK(!fs::exists(o.quality_report));
}

TEST_CASE("qwc --quality-report: errors are one line and exit non-zero") {
  const auto dir = testing::scratch_dir("quality_cli");
  const std::string qwc = std::string(QW_BINARY_DIR) + "/compiler/qwc";
  const std::string base = qwc + " compile " + testing::tiny_checkpoint() + " -o " +
                           (dir / "m.qwart").string() + " --gptq-device cpu ";
  const std::string report = " --quality-report " + (dir / "q.json").string();
  for (const std::string& args :
       {std::string("--dtype int4-gptq --rtn") + report, std::string("--dtype fp16") + report,
        std::string("--dtype int4-gptq --calib-builtin --quality-report ") + dir.string() +
            "/missing/q.json"}) {
    CAPTURE(args);
    auto [rc, out] = run(base + args);
    CHECK(rc != 0);
    CHECK(out.rfind("qwc: error: ", 0) == 0);
    CHECK(out.find('\n') == out.size() - 1);  // one line
    CHECK(out.find(args.find("missing") != std::string::npos
                       ? "missing/q.json"
                       : "--quality-report") != std::string::npos);
  }
  CHECK(!fs::exists(dir / "m.qwart"));
  CHECK(!fs::exists(dir / "q.json"));
  // And it works: the summary line comes last.
  auto [rc, out] = run(base + "--dtype int4-gptq --calib-builtin" + report);
  REQUIRE_MESSAGE(rc == 0, out);
  CHECK(out.find("qwc: quality: GPTQ <= RTN on ") != std::string::npos);
  CHECK(fs::exists(dir / "q.json"));
}

TEST_CASE("quality report: --no-damp-search is plain GPTQ, and report and provenance say so") {
  const auto dir = testing::scratch_dir("quality_no_search");
  CompileOptions o = cli_options(dir);
  o.damp_search = false;
  auto r = compile_checkpoint(o);
  REQUIRE_MESSAGE(r.ok(), r.status().message());
  CHECK(r->damp_search_summary.empty());
  MESSAGE("without the search: " << r->quality_summary);
  const nlohmann::json j = read_json(o.quality_report);
  CHECK(j["damp_search"]["enabled"] == false);
  CHECK(!j["damp_search"].contains("note"));  // not asked for: nothing to explain
  check_report(j, sequences_of(builtin_calibration_text(), o), o);
  auto a = Artifact::open(o.output);
  REQUIRE(a.ok());
  CHECK(a->metadata().provenance()->command_line()->str().find(
            "--quality-report --calib-max-tokens 32768 --no-damp-search") != std::string::npos);
  // The flag and the token limit are GPTQ's: RTN's command line has neither.
  CompileOptions rtn = o;
  rtn.calib_builtin = false;
  rtn.rtn = true;
  rtn.quality_report.clear();
  CHECK(normalized_command_line(rtn).find("damp") == std::string::npos);
  CHECK(normalized_command_line(rtn).find("--calib-max-tokens") == std::string::npos);
}

TEST_CASE("qwc --calib-max-tokens and --no-damp-search: checks, stderr, report, provenance") {
  const auto dir = testing::scratch_dir("quality_cli_search");
  const std::string qwc = std::string(QW_BINARY_DIR) + "/compiler/qwc";
  const std::string out = (dir / "m.qwart").string(), report = (dir / "q.json").string();
  const std::string base = qwc + " compile " + testing::tiny_checkpoint() + " -o " + out +
                           " --gptq-device cpu --dtype int4-gptq --calib-builtin";
  // Below 1: one line naming the option, nothing written.
  for (const char* bad : {"0", "-5"}) {
    CAPTURE(bad);
    auto [rc, text] = run(base + " --calib-max-tokens " + bad);
    CHECK(rc != 0);
    CHECK(text ==
          "qwc: error: --calib-max-tokens must be at least 1, got " + std::string(bad) + "\n");
    CHECK(!fs::exists(out));
  }
  auto provenance = [&]() {
    auto a = Artifact::open(out);
    REQUIRE(a.ok());
    return a->metadata().provenance()->command_line()->str();
  };
  auto count = [](const std::string& text, const std::string& what) {
    int64_t n = 0;
    for (size_t p = text.find(what); p != std::string::npos; p = text.find(what, p + 1)) ++n;
    return n;
  };
  {
    // 1024 tokens: sequences of 512 and 512, one held out; the search on the other's 64
    // validation tokens. The summary line agrees with the report.
    auto [rc, text] = run(base + " --calib-max-tokens 1024 --quality-report " + report);
    REQUIRE_MESSAGE(rc == 0, text);
    CHECK(provenance().find("--calib-max-tokens 1024") != std::string::npos);
    const nlohmann::json j = read_json(report);
    CHECK(j["calib_tokens"].get<int64_t>() + j["heldout_tokens"].get<int64_t>() == 1024);
    CHECK(j["damp_search"]["enabled"] == true);
    CHECK(j["damp_search"]["validation_tokens"] == 64);
    CHECK(j["damp_search"]["fit_tokens"] == 448);
    const auto& sd = j["summary"]["damp_search"];
    char line[160];
    std::snprintf(line, sizeof line,
                  "qwc: damping search: 14 linears: %lld GPTQ (d %lld, 10d %lld, 100d %lld), "
                  "%lld RTN\n",
                  (long long)sd["gptq"].get<int64_t>(), (long long)sd["d"].get<int64_t>(),
                  (long long)sd["10d"].get<int64_t>(), (long long)sd["100d"].get<int64_t>(),
                  (long long)sd["rtn"].get<int64_t>());
    CHECK(count(text, line) == 1);
    for (const auto& e : j["layers"]) {
      CHECK(e.contains("method"));
      CHECK(e.contains("damp"));
      CHECK(e["val_err"].size() == size_t(kDampCandidates));
    }
  }
  {
    // 300 tokens: one sequence, 44 validation tokens: no search, said once, no summary.
    auto [rc, text] = run(base + " --calib-max-tokens 300");
    REQUIRE_MESSAGE(rc == 0, text);
    CHECK(count(text, "qwc: damping search off: 44 validation tokens") == 1);
    CHECK(count(text, "qwc: damping search:") == 0);
    CHECK(provenance().find("--calib-max-tokens 300") != std::string::npos);
    CHECK(provenance().find("--no-damp-search") == std::string::npos);
  }
  {
    auto [rc, text] = run(base + " --no-damp-search");
    REQUIRE_MESSAGE(rc == 0, text);
    CHECK(count(text, "damping search") == 0);
    CHECK(provenance().find("--calib-builtin --calib-max-tokens 32768 --no-damp-search") !=
          std::string::npos);
  }
  // --help documents both.
  auto [rc, help] = run(qwc + " compile --help");
  CHECK(rc == 0);
  CHECK(help.find("--calib-max-tokens") != std::string::npos);
  CHECK(help.find("--no-damp-search") != std::string::npos);
}
