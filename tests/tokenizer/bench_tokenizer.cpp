// Encode-throughput benchmark (single thread) and id dump for cross-checking against HF.
//   bench_tokenizer --hf-dir DIR --corpus FILE [--passes N] [--ids-out FILE] [--json-out FILE]
// FILE: records of (u32 little-endian length, UTF-8 bytes), written by
// tools/tokenizer_corpus.py bench. --ids-out writes per record (u32 count, i32 ids...) from
// the first pass, which tools/gen_tokenizer_goldens.py compares with HF's ids.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace {

std::vector<std::string> read_corpus(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<std::string> docs;
  uint32_t len = 0;
  while (in.read(reinterpret_cast<char*>(&len), sizeof(len))) {
    std::string d(len, '\0');
    in.read(d.data(), len);
    docs.push_back(std::move(d));
  }
  return docs;
}

}  // namespace

int main(int argc, char** argv) {
  std::string hf_dir, corpus, ids_out, json_out;
  int passes = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--hf-dir")
      hf_dir = v;
    else if (k == "--corpus")
      corpus = v;
    else if (k == "--ids-out")
      ids_out = v;
    else if (k == "--json-out")
      json_out = v;
    else if (k == "--passes")
      passes = std::stoi(v);
  }
  if (hf_dir.empty() || corpus.empty()) {
    std::cerr << "usage: bench_tokenizer --hf-dir DIR --corpus FILE [--passes N] "
                 "[--ids-out FILE] [--json-out FILE]\n";
    return 2;
  }
  using clock = std::chrono::steady_clock;
  const auto t_load = clock::now();
  auto tok = qw::Tokenizer::from_hf_dir(hf_dir);
  if (!tok.ok()) {
    std::cerr << tok.status().message() << "\n";
    return 1;
  }
  const double load_s = std::chrono::duration<double>(clock::now() - t_load).count();
  const std::vector<std::string> docs = read_corpus(corpus);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.size();
  nlohmann::json result;
  result["docs"] = docs.size();
  result["bytes"] = bytes;
  result["load_from_hf_dir_s"] = load_s;
  std::vector<double> mbps;
  size_t tokens = 0;
  for (int p = 0; p < passes; ++p) {
    std::vector<std::vector<int32_t>> all(p == 0 ? docs.size() : 0);
    std::vector<int32_t> ids;
    tokens = 0;
    const auto t0 = clock::now();
    for (size_t i = 0; i < docs.size(); ++i) {
      ids.clear();
      tok->encode_append(docs[i], true, ids);
      tokens += ids.size();
      if (p == 0) all[i] = ids;
    }
    const double s = std::chrono::duration<double>(clock::now() - t0).count();
    mbps.push_back(static_cast<double>(bytes) / 1e6 / s);
    if (p == 0 && !ids_out.empty()) {
      std::ofstream out(ids_out, std::ios::binary);
      for (const auto& v : all) {
        const auto n = static_cast<uint32_t>(v.size());
        out.write(reinterpret_cast<const char*>(&n), sizeof(n));
        out.write(reinterpret_cast<const char*>(v.data()), std::streamsize(n * sizeof(int32_t)));
      }
    }
  }
  result["tokens"] = tokens;
  result["mb_per_s_per_pass"] = mbps;
  result["mb_per_s_first_pass"] = mbps.front();
  result["mb_per_s_best"] = *std::max_element(mbps.begin(), mbps.end());
  std::cout << result.dump(2) << "\n";
  if (!json_out.empty()) std::ofstream(json_out) << result.dump(2) << "\n";
  return 0;
}
