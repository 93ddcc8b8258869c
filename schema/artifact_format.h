// Fixed binary framing of a .qwart file around the FlatBuffers metadata.
#pragma once
#include <cstdint>

namespace qw {

inline constexpr char kArtifactMagic[8] = {'Q', 'W', 'A', 'R', 'T', '\0', '\r', '\n'};
inline constexpr uint32_t kArtifactFormatVersion = 1;

// Sections start on 64 KiB boundaries. 4 KiB would satisfy x86 pages, but 64 KiB also
// covers arm64 kernels built with 64 KiB pages (Grace-Hopper), O_DIRECT/GPUDirect Storage
// alignment, and cudaHostRegister of a mapped sub-range, at a cost of < 64 KiB per section
// (a handful of sections per file).
inline constexpr uint64_t kSectionAlignment = 64 * 1024;
// Tensors inside a weights section start on 256-byte boundaries: cuBLAS/vectorized
// loads want >= 16 B, and 256 B keeps every tensor on its own cache-line group.
inline constexpr uint64_t kTensorAlignment = 256;
inline constexpr uint64_t kPreambleSize = 4096;

// Little-endian, at file offset 0. The metadata FlatBuffer sits at the end of the file so
// the writer can stream sections first; the preamble is patched last.
struct ArtifactPreamble {
  char magic[8];
  uint32_t format_version;
  uint32_t preamble_size;
  uint64_t file_size;          // whole file: a truncated copy is detected before parsing
  uint64_t metadata_offset;
  uint64_t metadata_size;
  uint64_t metadata_checksum;  // XXH3-64 of the metadata bytes
};
static_assert(sizeof(ArtifactPreamble) == 48);

}  // namespace qw
