#include "compiler/compile_pipeline.h"

#include <unistd.h>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <optional>

#include "artifact_format.h"
#include "compiler/gptq/calib_text.h"
#include "compiler/gptq/int4_emitter.h"
#include "compiler/gptq/int4_plan.h"
#include "compiler/gptq/model_quantizer.h"
#include "compiler/gptq/quality_report.h"
#include "compiler/gptq/quant_config.h"
#include "compiler/hf_config.h"
#include "compiler/safetensors_reader.h"
#include "compiler/tp_partition.h"
#include "compiler/weight_convert.h"
#include "core/checksum.h"
#include "core/parallel.h"
#include "core/progress.h"
#include "tokenizer/tokenizer.h"

namespace qw {

namespace {

namespace fs = std::filesystem;

// Output is produced in chunks of whole rows of about this size: large enough for
// sequential I/O, small enough to keep peak RSS far under the model size.
constexpr uint64_t kChunkBytes = uint64_t(64) << 20;

std::string dtype_flag(DType d) {
  return d == DType::BF16 ? "bf16" : "fp16";
}

// Removes the quantizer's scratch checkpoint however the compile ends.
struct ScratchDir {
  std::string path;
  ~ScratchDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

// The INT4 source: the GPTQ tensors (imported or just quantized) and their settings.
struct Int4Source {
  gptq::GptqConfig config;
  std::optional<Checkpoint> quantized;  // scratch checkpoint when qwc quantized the model
  ScratchDir scratch;
  std::string calib_sha256;                    // of the calibration text, for provenance
  double seconds = 0;                          // spent quantizing
  std::string gptq_device;                     // where GPTQ ran ("cpu" / "gpu"), empty otherwise
  std::optional<gptq::QualityReport> quality;  // with --quality-report
  std::string damp_search_summary;             // when the damping search ran
};

Expected<std::vector<std::vector<int32_t>>> calibration_tokens(const CompileOptions& o,
                                                               std::string& sha) {
  std::string text;
  if (!o.calib_file.empty()) {
    std::ifstream in(o.calib_file, std::ios::binary);
    if (!in) return Status::Error(o.calib_file + ": cannot open the calibration text");
    text.assign(std::istreambuf_iterator<char>(in), {});
  } else {
    text = gptq::builtin_calibration_text();
  }
  if (text.empty()) return Status::Error("the calibration text is empty");
  sha = sha256_hex({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  QW_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::from_hf_dir(o.checkpoint_dir));
  std::vector<int32_t> ids = tok.encode(text, false);
  if (int64_t(ids.size()) > o.calib_max_tokens) ids.resize(size_t(o.calib_max_tokens));
  return gptq::split_calibration(ids, o.calib_seq_len);
}

Status prepare_int4(const CompileOptions& o, const ModelConfig& config, const Checkpoint& ckpt,
                    const std::optional<gptq::GptqConfig>& imported, Int4Source& src) {
  if (imported) {
    if (o.rtn || !o.calib_file.empty() || o.calib_builtin || o.act_order ||
        !o.quality_report.empty())
      return Status::Error(imported->source +
                           ": the checkpoint is already GPTQ-quantized; "
                           "--rtn, --calib, --calib-builtin, --act-order and --quality-report "
                           "do not apply");
    src.config = *imported;
    return Status::Ok();
  }
  if (o.group_size != 32 && o.group_size != 64 && o.group_size != 128 && o.group_size != -1)
    return Status::Error("--group-size must be 32, 64, 128 or -1");
  if (!o.rtn && o.calib_file.empty() && !o.calib_builtin)
    return Status::Error(
        "--dtype int4-gptq on an FP16/BF16 checkpoint needs --calib FILE, "
        "--calib-builtin or --rtn");
  gptq::ModelQuantizeOptions q;
  q.settings.group_size = o.group_size;
  q.settings.sym = true;
  q.settings.act_order = o.act_order;
  q.settings.damp_percent = o.damp_percent;
  q.settings.threads = o.threads ? o.threads : default_threads();
  q.rtn = o.rtn;
  q.cancel = o.cancel;
  // RTN is a per-element rounding: it stays on the CPU whatever --gptq-device says.
  gptq::GptqDeviceChoice where;
  if (!o.rtn) {
    QW_ASSIGN_OR_RETURN(where,
                        gptq::resolve_gptq_device(o.gptq_device, o.gptq_gpu, q.settings.threads));
    QW_ASSIGN_OR_RETURN(q.calibration, calibration_tokens(o, src.calib_sha256));
    std::fprintf(stderr, "qwc: GPTQ on %s\n", where.description.c_str());
    src.gptq_device = gptq::gptq_device_name(where.device);
  }
  std::vector<gptq::LinearQuality> linears;
  // The report's held-out sequences are removed first: the search splits what GPTQ uses.
  gptq::DampSearchPlan search;
  std::vector<gptq::DampChoice> choices;
  if (!o.quality_report.empty()) {
    QW_ASSIGN_OR_RETURN(gptq::CalibrationSplit split, gptq::split_heldout(q.calibration));
    gptq::QualityReport& r = src.quality.emplace();
    r.device = src.gptq_device;
    r.group_size = o.group_size;
    r.act_order = o.act_order;
    r.damp_percent = o.damp_percent;
    r.calib_sequences = int64_t(split.calibration.size());
    r.heldout_sequences = int64_t(split.heldout.size());
    for (const auto& s : split.calibration) r.calib_tokens += int64_t(s.size());
    for (const auto& s : split.heldout) r.heldout_tokens += int64_t(s.size());
    std::fprintf(stderr,
                 "qwc: quality report: %lld calibration sequences (%lld tokens) for the "
                 "Hessians, %lld held out (%lld tokens)\n",
                 (long long)r.calib_sequences, (long long)r.calib_tokens,
                 (long long)r.heldout_sequences, (long long)r.heldout_tokens);
    q.calibration = std::move(split.calibration);
    q.heldout = std::move(split.heldout);
    q.quality = &linears;
  }
  if (!o.rtn) {
    search = gptq::plan_damp_search(q.calibration, o.damp_search);
    if (search.requested && !search.enabled) std::fprintf(stderr, "qwc: %s\n", search.note.c_str());
    q.damp_search = search.enabled;
    if (search.enabled) q.damp_choices = &choices;
    if (src.quality) {
      gptq::DampSearchInfo& d = src.quality->damp_search;
      d.requested = search.requested;
      d.enabled = search.enabled;
      d.fit_tokens = search.fit_tokens;
      d.val_tokens = search.val_tokens;
      d.by_sequence = search.by_sequence;
      d.note = search.note;
    }
  }
  src.scratch.path = o.output + ".gptq.tmp." + std::to_string(::getpid());
  q.out_dir = src.scratch.path;
  const auto t0 = std::chrono::steady_clock::now();
  if (where.device == gptq::GptqDevice::kGpu) {
    QW_ASSIGN_OR_RETURN(src.config, o.gptq_gpu->quantize_model(config, ckpt, q));
  } else {
    QW_ASSIGN_OR_RETURN(src.config, gptq::quantize_model(config, ckpt, q));
  }
  src.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (search.enabled) {
    const size_t want = size_t(config.num_hidden_layers) * 7;
    if (choices.size() != want)
      return Status::Error("internal: the damping search chose for " +
                           std::to_string(choices.size()) + " linears, the model has " +
                           std::to_string(want));
    src.damp_search_summary = gptq::damp_search_summary(choices);
    if (src.quality) src.quality->damp_choices = choices;
  }
  if (src.quality) {
    const size_t want = size_t(config.num_hidden_layers) * 7;
    if (linears.size() != want)
      return Status::Error("internal: the quality report has " + std::to_string(linears.size()) +
                           " linears, the model " + std::to_string(want));
    src.quality->linears = std::move(linears);
  }
  QW_ASSIGN_OR_RETURN(Checkpoint qc, Checkpoint::open(src.scratch.path));
  src.quantized.emplace(std::move(qc));
  return Status::Ok();
}

// Files whose bytes determine the artifact, hashed for provenance in background threads
// so hashing overlaps the conversion.
std::vector<std::string> provenance_files(const std::string& dir, const Checkpoint& ckpt) {
  std::vector<std::string> names = {"config.json",          "generation_config.json",
                                    "quantize_config.json", "model.safetensors.index.json",
                                    "tokenizer.json",       "tokenizer_config.json",
                                    "chat_template.jinja"};
  std::vector<std::string> out;
  for (const auto& n : names)
    if (fs::exists(fs::path(dir) / n)) out.push_back(n);
  for (const auto& p : ckpt.shard_paths()) out.push_back(fs::path(p).filename().string());
  return out;
}

class TensorEmitter {
 public:
  TensorEmitter(const Checkpoint& ckpt, ArtifactWriter& w, DType dtype, unsigned threads,
                ConversionStats& stats)
      : ckpt_(ckpt), w_(w), dtype_(dtype), threads_(threads), stats_(stats) {}

  Status emit(const OutputTensorPlan& t, int rank, uint32_t section, ProgressBar& bar,
              uint64_t& bytes_read) {
    QW_ASSIGN_OR_RETURN(uint64_t offset, w_.align(kTensorAlignment));
    const uint64_t esize = dtype_size(dtype_);
    const uint64_t row_bytes = uint64_t(t.row_elems()) * esize;
    for (const SourceSlice& p : t.pieces) {
      QW_ASSIGN_OR_RETURN(const SafetensorInfo* src, ckpt_.find(p.source));
      const uint64_t src_cols = src->shape.size() < 2 ? 1 : uint64_t(src->shape[1]);
      const uint64_t src_esize = dtype_size(src->dtype);
      const int64_t rows_per_chunk = std::max<int64_t>(1, int64_t(kChunkBytes / row_bytes));
      for (int64_t r0 = 0; r0 < p.row_count; r0 += rows_per_chunk) {
        const int64_t nr = std::min(rows_per_chunk, p.row_count - r0);
        buf_.resize(size_t(nr) * row_bytes);
        const uint64_t over_before = stats_.overflows.load();
        Status st = Status::Ok();
        std::mutex mu;
        parallel_for(nr, threads_, [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) {
            const uint8_t* s =
                src->data +
                (uint64_t(p.row_begin + r0 + r) * src_cols + uint64_t(p.col_begin)) * src_esize;
            Status rs = convert_elements(s, src->dtype, buf_.data() + uint64_t(r) * row_bytes,
                                         dtype_, uint64_t(p.col_count), stats_);
            if (!rs.ok()) {
              std::lock_guard<std::mutex> lock(mu);
              st = rs;
            }
          }
        });
        if (!st.ok()) return st.context("tensor " + p.source);
        if (stats_.overflows.load() != over_before)
          return Status::Error("tensor " + p.source +
                               " has values beyond the fp16 range (±65504); "
                               "compile with --dtype bf16");
        QW_RETURN_IF_ERROR(w_.write(buf_));
        bytes_read += uint64_t(nr) * uint64_t(p.col_count) * src_esize;
        bar.advance(buf_.size());
        // Drop the rows just read from our mapping: peak RSS stays near one chunk even for
        // the 1 GB embedding (the page cache keeps them for the next rank).
        const uint64_t row0 = uint64_t(p.row_begin + r0) * src_cols * src_esize;
        ckpt_.release(*src, row0, uint64_t(nr) * src_cols * src_esize);
      }
    }
    if (t.zero_rows > 0) {
      buf_.assign(size_t(t.zero_rows) * row_bytes, 0);
      QW_RETURN_IF_ERROR(w_.write(buf_));
    }
    const uint64_t size = uint64_t(t.rows()) * row_bytes;
    if (w_.section_offset() - offset != size)
      return Status::Error("internal: tensor " + t.name + " wrote the wrong number of bytes");
    w_.add_tensor({t.name, dtype_, t.shape, rank, section, offset, size, t.layout, t.tp_split});
    return Status::Ok();
  }

 private:
  const Checkpoint& ckpt_;
  ArtifactWriter& w_;
  DType dtype_;
  unsigned threads_;
  ConversionStats& stats_;
  std::vector<uint8_t> buf_;
};

}  // namespace

std::string normalized_command_line(const CompileOptions& o) {
  std::string s = "qwc compile CHECKPOINT --dtype " + (o.int4 ? "int4-gptq" : dtype_flag(o.dtype)) +
                  " --tp " + std::to_string(o.tp);
  if (o.int4 && (o.rtn || o.calib_builtin || !o.calib_file.empty())) {
    s += " --group-size " + std::to_string(o.group_size);
    s += o.rtn                                     ? " --rtn"
         : o.calib_builtin && o.calib_file.empty() ? " --calib-builtin"
                                                   : " --calib FILE";
    if (o.act_order) s += " --act-order";
    if (!o.rtn && o.damp_percent != 0.01) s += " --damp " + std::to_string(o.damp_percent);
    // The held-out split changes the Hessians, so the weights; the report's path does not.
    if (!o.rtn && !o.quality_report.empty()) s += " --quality-report";
    if (!o.rtn) s += " --calib-max-tokens " + std::to_string(o.calib_max_tokens);
    if (!o.rtn && !o.damp_search) s += " --no-damp-search";
  }
  if (!o.archs.empty()) {
    s += " --arch ";
    for (size_t i = 0; i < o.archs.size(); ++i) s += (i ? "," : "") + o.archs[i];
  }
  return s;
}

Expected<CompileReport> compile_checkpoint(const CompileOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  if (o.dtype != DType::F16 && o.dtype != DType::BF16)
    return Status::Error("--dtype must be fp16 or bf16");
  if (o.calib_max_tokens < 1)
    return Status::Error("--calib-max-tokens must be at least 1, got " +
                         std::to_string(o.calib_max_tokens));
  // The report compares GPTQ with RTN: refused before anything is read when GPTQ will not run,
  // and an unwritable path is found now, not after the quantization.
  if (!o.quality_report.empty()) {
    if (!o.int4 || o.rtn)
      return Status::Error(
          "--quality-report compares GPTQ with RTN: it needs --dtype int4-gptq with --calib FILE "
          "or --calib-builtin" +
          std::string(o.rtn ? ", not --rtn" : ""));
    QW_RETURN_IF_ERROR(gptq::check_quality_report_path(o.quality_report));
  }
  QW_ASSIGN_OR_RETURN(ModelConfig config, read_hf_config(o.checkpoint_dir));
  QW_ASSIGN_OR_RETURN(GenerationDefaults gen, read_generation_config(o.checkpoint_dir, config));
  QW_ASSIGN_OR_RETURN(TpPlan plan, make_tp_plan(config, o.tp));
  QW_ASSIGN_OR_RETURN(Checkpoint ckpt, Checkpoint::open(o.checkpoint_dir));
  QW_ASSIGN_OR_RETURN(std::optional<gptq::GptqConfig> imported,
                      gptq::read_gptq_config(o.checkpoint_dir));
  if (imported && !o.int4)
    return Status::Error(imported->source +
                         ": the checkpoint is GPTQ-quantized; compile it with "
                         "--dtype int4-gptq");
  if (o.int4 && o.dtype != DType::F16)
    return Status::Error("internal: int4-gptq keeps its unquantized tensors in fp16");
  // Each rank's tensors in artifact order; with INT4 the linear weights come from GPTQ tensors.
  std::vector<std::vector<gptq::Int4Entry>> ranks;
  Int4Source int4;
  if (o.int4) {
    QW_RETURN_IF_ERROR(prepare_int4(o, config, ckpt, imported, int4));
    QW_ASSIGN_OR_RETURN(ranks, gptq::plan_int4_partition(config, plan, ckpt,
                                                         int4.quantized ? *int4.quantized : ckpt));
  } else {
    QW_ASSIGN_OR_RETURN(auto plain, plan_partition(config, plan, ckpt));
    ranks.resize(plain.size());
    for (size_t r = 0; r < plain.size(); ++r)
      for (auto& t : plain[r]) {
        gptq::Int4Entry e;
        e.plain = std::move(t);
        ranks[r].push_back(std::move(e));
      }
  }
  std::vector<uint8_t> tokenizer;
  if (o.tokenizer_builder) {
    QW_ASSIGN_OR_RETURN(tokenizer, o.tokenizer_builder(o.checkpoint_dir));
  }
  KernelBundle kernels;
  if (o.kernel_builder && !o.archs.empty()) {
    std::optional<Int4KernelConstants> int4_consts;
    if (o.int4) int4_consts = int4_kernel_constants_for(config, plan, int4.config.group_size);
    QW_ASSIGN_OR_RETURN(kernels, o.kernel_builder(config, plan, o.dtype, o.archs,
                                                  int4_consts ? &*int4_consts : nullptr));
  }

  // Hash the sources while converting (the hashing threads also warm the page cache).
  const auto files = provenance_files(o.checkpoint_dir, ckpt);
  std::vector<std::future<Expected<std::string>>> hashes;
  for (const auto& f : files)
    hashes.push_back(
        std::async(std::launch::async,
                   [p = (fs::path(o.checkpoint_dir) / f).string()] { return sha256_file(p); }));

  uint64_t total = 0;
  for (const auto& r : ranks)
    for (const auto& e : r)
      total += e.quantized
                   ? gptq::Int4Emitter::approx_bytes(e.quant)
                   : uint64_t(e.plain.rows()) * uint64_t(e.plain.row_elems()) * dtype_size(o.dtype);

  QW_ASSIGN_OR_RETURN(ArtifactWriter w, ArtifactWriter::create(o.output));
  ConversionStats stats;
  CompileReport report;
  const unsigned threads = o.threads ? o.threads : default_threads();
  TensorEmitter emitter(ckpt, w, o.dtype, threads, stats);
  gptq::Int4Emitter int4_emitter(int4.quantized ? *int4.quantized : ckpt, int4.config, w);
  {
    ProgressBar bar("compile", total);
    for (size_t r = 0; r < ranks.size(); ++r) {
      QW_ASSIGN_OR_RETURN(uint32_t sec, w.begin_section("weights.rank" + std::to_string(r),
                                                        fb::SectionKind::Weights, int(r)));
      for (const auto& e : ranks[r]) {
        if (o.cancel && o.cancel->load()) return Status::Error("interrupted");
        if (e.quantized)
          QW_RETURN_IF_ERROR(int4_emitter.emit(e.quant, int(r), o.tp, sec, bar, report.bytes_read));
        else
          QW_RETURN_IF_ERROR(emitter.emit(e.plain, int(r), sec, bar, report.bytes_read));
      }
      QW_RETURN_IF_ERROR(w.end_section());
    }
    bar.finish();
  }
  if (!tokenizer.empty()) {
    QW_RETURN_IF_ERROR(
        w.add_compressed_section("tokenizer", fb::SectionKind::Tokenizer, tokenizer).status());
  }
  if (!kernels.blob.empty()) {
    QW_RETURN_IF_ERROR(
        w.add_compressed_section("kernels", fb::SectionKind::Kernels, kernels.blob).status());
  }

  ArtifactMetadata meta;
  meta.config = config;
  meta.generation = gen;
  meta.weight_dtype = o.dtype;
  meta.tp_size = o.tp;
  meta.target_archs = o.archs;
  meta.compiler_version = o.compiler_version;
  meta.command_line = normalized_command_line(o);
  // The GPU's GPTQ differs from the CPU's in rare rounding ties (docs/int4_layout.md), so the
  // artifact says which one ran; CPU compiles keep the command line they always had.
  if (int4.gptq_device == "gpu") meta.command_line += " --gptq-device gpu";
  if (!int4.calib_sha256.empty())
    meta.command_line += " (calibration text sha256 " + int4.calib_sha256 + ")";
  meta.kernels = kernels.images;
  for (size_t i = 0; i < files.size(); ++i) {
    QW_ASSIGN_OR_RETURN(std::string sha, hashes[i].get());
    meta.sources.push_back(
        {files[i], uint64_t(fs::file_size(fs::path(o.checkpoint_dir) / files[i])), sha});
  }
  QW_RETURN_IF_ERROR(w.finish(meta));
  if (int4.quality) {
    QW_RETURN_IF_ERROR(gptq::write_quality_report(o.quality_report, *int4.quality));
    report.quality_summary = gptq::quality_summary_line(*int4.quality);
  }

  report.bytes_written = fs::file_size(o.output);
  report.elements = stats.elements;
  report.underflows = stats.underflows;
  report.overflows = stats.overflows;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  report.quantize_seconds = int4.seconds;
  report.gptq_device = int4.gptq_device;
  report.damp_search_summary = int4.damp_search_summary;
  return report;
}

}  // namespace qw
