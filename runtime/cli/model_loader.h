// Opens an artifact and builds what every qwrun command needs: tokenizer + executor.
#pragma once
#include <memory>
#include <string>

#include "artifact/artifact.h"
#include "core/status.h"
#include "engine/executor.h"
#include "tokenizer/tokenizer.h"

namespace qw {

struct LoadOptions {
  std::string device = "auto";  // auto | cpu | gpu
  int threads = 0;              // CPU backend threads (0 = all)
  bool verify = false;          // hash every section before use (reads the whole file)
  double kv_cache_gb = 0;       // 0 = backend default
  bool prefix_caching = true;   // reuse KV blocks of earlier prompts with the same prefix
  int tp = 0;                   // GPUs for tensor parallelism (0: the artifact's degree)
  bool reduce_rows_on_host = false;  // CPU: sample from host-reduced candidates (tests)
  bool device_sampling = true;       // GPU: reduce logits rows to candidates on the device
};

struct LoadedModel {
  std::shared_ptr<const Artifact> artifact;
  Tokenizer tokenizer;
  std::unique_ptr<ModelExecutor> executor;  // refers to `artifact`: destroyed first
  double load_seconds = 0;
  ~LoadedModel() { executor.reset(); }
};

Expected<std::unique_ptr<LoadedModel>> load_model(const std::string& path, const LoadOptions& o);
Expected<Tokenizer> load_tokenizer(const Artifact& artifact);

}  // namespace qw
