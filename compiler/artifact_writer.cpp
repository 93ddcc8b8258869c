#include "compiler/artifact_writer.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "artifact/config_codec.h"
#include "artifact_format.h"

namespace qw {

namespace {
constexpr size_t kWriteBuffer = size_t(16) << 20;
// Level 19 costs seconds on the few MB of tokenizer/kernel data and is read once per start.
constexpr int kZstdLevel = 19;
}  // namespace

Expected<ArtifactWriter> ArtifactWriter::create(const std::string& out_path) {
  ArtifactWriter w;
  w.out_path_ = out_path;
  w.tmp_path_ = out_path + ".tmp." + std::to_string(::getpid());
  w.fd_ = ::open(w.tmp_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd_ < 0) return Status::Error(out_path + ": cannot write: " + std::strerror(errno));
  w.buffer_.reserve(kWriteBuffer);
  std::vector<uint8_t> zeros(kPreambleSize, 0);  // patched in finish()
  QW_RETURN_IF_ERROR(w.write_raw(zeros.data(), zeros.size()));
  return w;
}

ArtifactWriter::ArtifactWriter(ArtifactWriter&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      out_path_(std::move(o.out_path_)),
      tmp_path_(std::move(o.tmp_path_)),
      buffer_(std::move(o.buffer_)),
      file_pos_(o.file_pos_),
      in_section_(o.in_section_),
      section_pos_(o.section_pos_),
      hash_(std::move(o.hash_)),
      sections_(std::move(o.sections_)),
      tensors_(std::move(o.tensors_)),
      finished_(std::exchange(o.finished_, true)) {}

ArtifactWriter::~ArtifactWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!finished_ && !tmp_path_.empty()) ::unlink(tmp_path_.c_str());
}

Status ArtifactWriter::flush() {
  size_t done = 0;
  while (done < buffer_.size()) {
    ssize_t n = ::write(fd_, buffer_.data() + done, buffer_.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::Error(tmp_path_ + ": write failed: " + std::strerror(errno));
    done += size_t(n);
  }
  buffer_.clear();
  return Status::Ok();
}

Status ArtifactWriter::write_raw(const uint8_t* p, size_t n) {
  while (n > 0) {
    const size_t take = std::min(n, kWriteBuffer - buffer_.size());
    buffer_.insert(buffer_.end(), p, p + take);
    p += take;
    n -= take;
    file_pos_ += take;
    if (buffer_.size() == kWriteBuffer) QW_RETURN_IF_ERROR(flush());
  }
  return Status::Ok();
}

Status ArtifactWriter::pad_file_to(uint64_t alignment) {
  static const std::vector<uint8_t> zeros(kSectionAlignment, 0);
  const uint64_t pad = (alignment - file_pos_ % alignment) % alignment;
  return write_raw(zeros.data(), size_t(pad));
}

Expected<uint32_t> ArtifactWriter::begin_section(const std::string& name, fb::SectionKind kind,
                                                 int tp_rank) {
  if (in_section_) return Status::Error("internal: section " + name + " begun inside another");
  QW_RETURN_IF_ERROR(pad_file_to(kSectionAlignment));
  sections_.push_back({name, kind, tp_rank, file_pos_, 0, 0, fb::Compression::None, 0});
  in_section_ = true;
  section_pos_ = 0;
  hash_ = std::make_unique<Xxh3Stream>();
  return uint32_t(sections_.size() - 1);
}

Status ArtifactWriter::write(std::span<const uint8_t> bytes) {
  if (!in_section_) return Status::Error("internal: write outside a section");
  hash_->update(bytes);
  section_pos_ += bytes.size();
  return write_raw(bytes.data(), bytes.size());
}

Expected<uint64_t> ArtifactWriter::align(uint64_t alignment) {
  static const std::vector<uint8_t> zeros(kSectionAlignment, 0);
  const uint64_t pad = (alignment - section_pos_ % alignment) % alignment;
  QW_RETURN_IF_ERROR(write({zeros.data(), size_t(pad)}));
  return section_pos_;
}

Status ArtifactWriter::end_section() {
  if (!in_section_) return Status::Error("internal: end_section without a section");
  SectionRecord& s = sections_.back();
  s.size = s.uncompressed_size = section_pos_;
  s.checksum = hash_->digest();
  in_section_ = false;
  return Status::Ok();
}

Expected<uint32_t> ArtifactWriter::add_compressed_section(const std::string& name,
                                                          fb::SectionKind kind,
                                                          std::span<const uint8_t> payload) {
  std::vector<uint8_t> z(ZSTD_compressBound(payload.size()));
  const size_t n = ZSTD_compress(z.data(), z.size(), payload.data(), payload.size(), kZstdLevel);
  if (ZSTD_isError(n)) return Status::Error("zstd failed on section " + name);
  z.resize(n);
  QW_ASSIGN_OR_RETURN(uint32_t idx, begin_section(name, kind, -1));
  QW_RETURN_IF_ERROR(write(z));
  QW_RETURN_IF_ERROR(end_section());
  sections_[idx].compression = fb::Compression::Zstd;
  sections_[idx].uncompressed_size = payload.size();
  return idx;
}

Status ArtifactWriter::finish(const ArtifactMetadata& m) {
  if (in_section_) return Status::Error("internal: finish inside a section");
  flatbuffers::FlatBufferBuilder b(1 << 20);
  b.ForceDefaults(false);
  std::vector<flatbuffers::Offset<fb::Section>> secs;
  for (const auto& s : sections_)
    secs.push_back(fb::CreateSectionDirect(b, s.name.c_str(), s.kind, s.tp_rank, s.offset, s.size,
                                           s.compression, s.uncompressed_size,
                                           fb::ChecksumAlgorithm::XXH3_64, s.checksum));
  std::vector<flatbuffers::Offset<fb::Tensor>> tens;
  for (const auto& t : tensors_) {
    flatbuffers::Offset<fb::QuantParams> quant = 0;
    if (t.quant) {
      const QuantRecord& q = *t.quant;
      auto opt = [](const std::string& v) { return v.empty() ? nullptr : v.c_str(); };
      quant = fb::CreateQuantParamsDirect(b, q.method.c_str(), q.bits, q.group_size, q.symmetric,
                                          q.act_order, opt(q.scales_tensor), opt(q.zeros_tensor),
                                          opt(q.g_idx_tensor), opt(q.packing), q.rows, q.cols,
                                          opt(q.perm_tensor), q.zero_point);
    }
    tens.push_back(fb::CreateTensorDirect(b, t.name.c_str(), fb::DType(t.dtype), &t.shape,
                                          t.tp_rank, t.section, t.offset, t.size, t.layout,
                                          t.tp_split, quant));
  }
  std::vector<flatbuffers::Offset<fb::KernelImage>> kers;
  for (const auto& k : m.kernels)
    kers.push_back(fb::CreateKernelImageDirect(b, k.module.c_str(), k.arch.c_str(),
                                               k.format.c_str(), k.key.c_str(), k.offset, k.size));
  std::vector<flatbuffers::Offset<fb::SourceFile>> srcs;
  for (const auto& s : m.sources)
    srcs.push_back(fb::CreateSourceFileDirect(b, s.name.c_str(), s.size, s.sha256.c_str()));
  auto prov = fb::CreateProvenanceDirect(b, m.compiler_version.c_str(), m.command_line.c_str(),
                                         &srcs);
  std::vector<flatbuffers::Offset<flatbuffers::String>> archs;
  for (const auto& a : m.target_archs) archs.push_back(b.CreateString(a));
  auto cfg = encode_model_config(b, m.config);
  auto gen = encode_generation(b, m.generation);
  auto root = fb::CreateArtifactDirect(b, kArtifactFormatVersion, fb::DType(m.weight_dtype),
                                       m.tp_size, cfg, gen, &secs, &tens, &kers, &archs, prov);
  fb::FinishArtifactBuffer(b, root);

  QW_RETURN_IF_ERROR(pad_file_to(8));
  ArtifactPreamble pre{};
  std::memcpy(pre.magic, kArtifactMagic, sizeof pre.magic);
  pre.format_version = kArtifactFormatVersion;
  pre.preamble_size = uint32_t(kPreambleSize);
  pre.metadata_offset = file_pos_;
  pre.metadata_size = b.GetSize();
  pre.metadata_checksum = xxh3_64({b.GetBufferPointer(), b.GetSize()});
  QW_RETURN_IF_ERROR(write_raw(b.GetBufferPointer(), b.GetSize()));
  QW_RETURN_IF_ERROR(flush());
  pre.file_size = file_pos_;
  if (::pwrite(fd_, &pre, sizeof pre, 0) != ssize_t(sizeof pre))
    return Status::Error(tmp_path_ + ": cannot write the preamble: " + std::strerror(errno));
  if (::fsync(fd_) != 0) return Status::Error(tmp_path_ + ": fsync failed: " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  if (::rename(tmp_path_.c_str(), out_path_.c_str()) != 0)
    return Status::Error(out_path_ + ": cannot rename from " + tmp_path_ + ": " +
                         std::strerror(errno));
  finished_ = true;
  return Status::Ok();
}

}  // namespace qw
