// libFuzzer: Artifact::open on arbitrary bytes (starting from real artifacts as seeds) must
// fail cleanly or yield views that stay inside the file.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "artifact/artifact.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int fd = memfd_create("qwart-fuzz", 0);
  if (fd < 0) return 0;
  if (ftruncate(fd, 0) != 0 || pwrite(fd, data, size, 0) != ssize_t(size)) return 0;
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  qw::Artifact::OpenOptions opts;
  opts.verify_checksums = true;
  auto a = qw::Artifact::open(path, opts);
  if (!a.ok()) return 0;
  volatile uint8_t sink = 0;
  const uint8_t* begin = a->file().data();
  const uint8_t* end = begin + a->file().size();
  for (const auto& t : a->tensors()) {
    if (t.data < begin || t.data + t.size > end) __builtin_trap();
    if (t.size) sink = sink ^ t.data[t.size - 1];
  }
  (void)a->section_payload(qw::fb::SectionKind::Tokenizer);
  return 0;
}
