#include "artifact/artifact.h"

#include <zstd.h>

#include <cstring>

#include "artifact/config_codec.h"
#include "core/checksum.h"

namespace qw {

namespace {

Status check_preamble(const MappedFile& f, ArtifactPreamble& p) {
  const std::string& path = f.path();
  if (f.size() < sizeof(ArtifactPreamble))
    return Status::Error(path + ": not a qwart artifact (file too small for the preamble)");
  std::memcpy(&p, f.data(), sizeof p);
  if (std::memcmp(p.magic, kArtifactMagic, sizeof kArtifactMagic) != 0)
    return Status::Error(path + ": not a qwart artifact (bad magic)");
  if (p.format_version != kArtifactFormatVersion)
    return Errorf("%s: artifact format version %u, this build reads version %u (recompile with "
                  "this qwc)",
                  path.c_str(), p.format_version, kArtifactFormatVersion);
  if (p.file_size != f.size())
    return Errorf("%s: truncated or padded: preamble says %llu bytes, file has %zu", path.c_str(),
                  (unsigned long long)p.file_size, f.size());
  if (p.metadata_offset < kPreambleSize || p.metadata_offset > f.size() ||
      p.metadata_size > f.size() - p.metadata_offset || p.metadata_size == 0)
    return Status::Error(path + ": metadata range lies outside the file");
  const uint64_t h = xxh3_64({f.data() + p.metadata_offset, size_t(p.metadata_size)});
  if (h != p.metadata_checksum) return Status::Error(path + ": metadata checksum mismatch");
  return Status::Ok();
}

bool valid_dtype(fb::DType d) { return uint8_t(d) <= uint8_t(fb::DType::U8); }

}  // namespace

Expected<Artifact> Artifact::open(const std::string& path, OpenOptions opts) {
  Artifact a;
  QW_ASSIGN_OR_RETURN(a.file_, MappedFile::open(path));
  ArtifactPreamble pre{};
  QW_RETURN_IF_ERROR(check_preamble(a.file_, pre));

  const uint8_t* meta = a.file_.data() + pre.metadata_offset;
  flatbuffers::Verifier verifier(meta, size_t(pre.metadata_size));
  if (!fb::VerifyArtifactBuffer(verifier))
    return Status::Error(path + ": metadata fails the FlatBuffers verifier");
  a.meta_ = fb::GetArtifact(meta);
  const fb::Artifact& m = *a.meta_;
  if (m.format_version() != kArtifactFormatVersion)
    return Status::Error(path + ": metadata format_version disagrees with the preamble");
  if (m.config() == nullptr || m.sections() == nullptr || m.tensors() == nullptr)
    return Status::Error(path + ": metadata lacks config, sections or tensors");
  if (!valid_dtype(m.weight_dtype()))
    return Errorf("%s: unknown weight dtype %u", path.c_str(), unsigned(m.weight_dtype()));

  // Every section inside the file, aligned, before the metadata, and not overlapping.
  uint64_t prev_end = kPreambleSize;
  for (uint32_t i = 0; i < m.sections()->size(); ++i) {
    const fb::Section* s = m.sections()->Get(i);
    const std::string name = s->name() ? s->name()->str() : "#" + std::to_string(i);
    if (s->offset() % kSectionAlignment != 0)
      return Status::Error(path + ": section " + name + " is not aligned");
    if (s->offset() < prev_end || s->size() > pre.metadata_offset ||
        s->offset() > pre.metadata_offset - s->size())
      return Status::Error(path + ": section " + name + " lies outside its place in the file");
    prev_end = s->offset() + s->size();
  }
  for (const fb::Tensor* t : *m.tensors()) {
    const std::string name = t->name() ? t->name()->str() : "?";
    if (!valid_dtype(t->dtype()))
      return Errorf("%s: tensor %s has unknown dtype %u", path.c_str(), name.c_str(),
                    unsigned(t->dtype()));
    if (t->section() >= m.sections()->size())
      return Status::Error(path + ": tensor " + name + " names a missing section");
    const fb::Section* s = m.sections()->Get(t->section());
    if (t->offset() > s->size() || t->size() > s->size() - t->offset())
      return Status::Error(path + ": tensor " + name + " lies outside its section");
    uint64_t numel = 1;
    if (t->shape() == nullptr) return Status::Error(path + ": tensor " + name + " has no shape");
    for (int64_t d : *t->shape()) {
      if (d < 0 || (d > 0 && numel > (uint64_t(1) << 48) / uint64_t(d)))
        return Status::Error(path + ": tensor " + name + " has a bad shape");
      numel *= uint64_t(d);
    }
    if (t->quant() == nullptr && numel * dtype_size(DType(t->dtype())) != t->size())
      return Status::Error(path + ": tensor " + name + " size disagrees with dtype x shape");
  }

  a.config_ = decode_model_config(*m.config());
  a.generation_ = decode_generation(m.generation());
  auto plan = make_tp_plan(a.config_, m.tp_size());
  if (!plan.ok()) return plan.status().context(path);
  a.plan_ = *plan;
  if (opts.verify_checksums) QW_RETURN_IF_ERROR(a.verify_checksums());
  return a;
}

TensorView Artifact::view_of(const fb::Tensor& t) const {
  TensorView v;
  v.name = t.name()->string_view();
  v.dtype = DType(t.dtype());
  v.shape.assign(t.shape()->begin(), t.shape()->end());
  v.tp_rank = t.tp_rank();
  v.layout = t.layout();
  v.tp_split = t.tp_split();
  v.section = t.section();
  v.offset_in_section = t.offset();
  v.size = t.size();
  v.data = file_.data() + meta_->sections()->Get(t.section())->offset() + t.offset();
  return v;
}

Expected<TensorView> Artifact::tensor(std::string_view name, int tp_rank) const {
  for (const fb::Tensor* t : *meta_->tensors())
    if (t->tp_rank() == tp_rank && t->name() && t->name()->string_view() == name)
      return view_of(*t);
  return Status::Error(path() + ": no tensor " + std::string(name) + " for tp rank " +
                       std::to_string(tp_rank));
}

bool Artifact::has_tensor(std::string_view name, int tp_rank) const {
  return tensor(name, tp_rank).ok();
}

std::vector<TensorView> Artifact::tensors() const {
  std::vector<TensorView> out;
  out.reserve(meta_->tensors()->size());
  for (const fb::Tensor* t : *meta_->tensors()) out.push_back(view_of(*t));
  return out;
}

std::vector<SectionView> Artifact::sections() const {
  std::vector<SectionView> out;
  for (const fb::Section* s : *meta_->sections()) {
    SectionView v;
    v.name = s->name() ? s->name()->string_view() : std::string_view();
    v.kind = s->kind();
    v.tp_rank = s->tp_rank();
    v.offset = s->offset();
    v.size = s->size();
    v.data = file_.data() + s->offset();
    out.push_back(v);
  }
  return out;
}

Expected<SectionView> Artifact::weights_section(int tp_rank) const {
  for (const SectionView& s : sections())
    if (s.kind == fb::SectionKind::Weights && s.tp_rank == tp_rank) return s;
  return Status::Error(path() + ": no weights section for tp rank " + std::to_string(tp_rank));
}

Expected<std::vector<uint8_t>> Artifact::section_payload(fb::SectionKind kind) const {
  for (const fb::Section* s : *meta_->sections()) {
    if (s->kind() != kind) continue;
    const uint8_t* data = file_.data() + s->offset();
    const std::string name = s->name() ? s->name()->str() : "?";
    if (s->compression() == fb::Compression::None) return std::vector<uint8_t>(data, data + s->size());
    if (s->uncompressed_size() > (uint64_t(1) << 34))
      return Status::Error(path() + ": section " + name + " claims an implausible size");
    std::vector<uint8_t> out(s->uncompressed_size());
    size_t n = ZSTD_decompress(out.data(), out.size(), data, s->size());
    if (ZSTD_isError(n) || n != out.size())
      return Status::Error(path() + ": section " + name + " does not decompress (" +
                           (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch") + ")");
    return out;
  }
  return std::vector<uint8_t>();
}

Status Artifact::verify_checksums() const {
  for (const fb::Section* s : *meta_->sections()) {
    if (s->checksum_algorithm() != fb::ChecksumAlgorithm::XXH3_64)
      return Status::Error(path() + ": section " + s->name()->str() +
                           " uses an unknown checksum algorithm");
    Xxh3Stream h;
    constexpr uint64_t kChunk = uint64_t(256) << 20;
    for (uint64_t off = 0; off < s->size(); off += kChunk) {
      const uint64_t n = std::min(kChunk, s->size() - off);
      file_.advise_sequential(s->offset() + off, n);
      h.update({file_.data() + s->offset() + off, size_t(n)});
      file_.release(s->offset() + off, n);
    }
    if (h.digest() != s->checksum())
      return Status::Error(path() + ": section " + s->name()->str() +
                           " is corrupt (XXH3-64 checksum mismatch)");
  }
  return Status::Ok();
}

Status verify_artifact(const std::string& path) {
  Artifact::OpenOptions opts;
  opts.verify_checksums = true;
  return Artifact::open(path, opts).status();
}

}  // namespace qw
