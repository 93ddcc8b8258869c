#include "core/checksum.h"

#include <openssl/evp.h>
#include <xxhash.h>

#include <cstdio>
#include <vector>

#include "core/mapped_file.h"

namespace qw {

uint64_t xxh3_64(std::span<const uint8_t> bytes) { return XXH3_64bits(bytes.data(), bytes.size()); }

struct Xxh3Stream::State {
  XXH3_state_t* s = XXH3_createState();
  ~State() { XXH3_freeState(s); }
};

Xxh3Stream::Xxh3Stream() : state_(std::make_unique<State>()) { XXH3_64bits_reset(state_->s); }
Xxh3Stream::~Xxh3Stream() = default;
void Xxh3Stream::update(std::span<const uint8_t> bytes) {
  XXH3_64bits_update(state_->s, bytes.data(), bytes.size());
}
uint64_t Xxh3Stream::digest() const { return XXH3_64bits_digest(state_->s); }

namespace {
struct MdCtx {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~MdCtx() { EVP_MD_CTX_free(ctx); }
};
std::string to_hex(const unsigned char* d, unsigned n) {
  static const char* kHex = "0123456789abcdef";
  std::string s(n * 2, '0');
  for (unsigned i = 0; i < n; ++i) {
    s[2 * i] = kHex[d[i] >> 4];
    s[2 * i + 1] = kHex[d[i] & 15];
  }
  return s;
}
}  // namespace

std::string sha256_hex(std::span<const uint8_t> bytes) {
  MdCtx c;
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestInit_ex(c.ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(c.ctx, bytes.data(), bytes.size());
  EVP_DigestFinal_ex(c.ctx, d, &n);
  return to_hex(d, n);
}

Expected<std::string> sha256_file(const std::string& path) {
  QW_ASSIGN_OR_RETURN(MappedFile f, MappedFile::open(path));
  MdCtx c;
  EVP_DigestInit_ex(c.ctx, EVP_sha256(), nullptr);
  constexpr size_t kChunk = size_t(64) << 20;
  for (size_t off = 0; off < f.size(); off += kChunk) {
    size_t n = std::min(kChunk, f.size() - off);
    f.advise_sequential(off, n);
    EVP_DigestUpdate(c.ctx, f.data() + off, n);
    f.release(off, n);  // keep RSS bounded on multi-GB shards
  }
  unsigned char d[EVP_MAX_MD_SIZE];
  unsigned n = 0;
  EVP_DigestFinal_ex(c.ctx, d, &n);
  return to_hex(d, n);
}

}  // namespace qw
