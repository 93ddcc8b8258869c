#include "gpu/weight_loader.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "core/parallel.h"

namespace qw::gpu {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct FirstError {
  std::mutex mu;
  Status st;
  std::atomic<bool> failed{false};
  void set(Status s) {
    std::lock_guard<std::mutex> l(mu);
    if (st.ok()) st = std::move(s);
    failed = true;
  }
};

// Staged copy: each thread owns two pinned buffers and a stream; chunks are claimed from a
// shared counter; a buffer is refilled once the event of its previous copy completed, so
// reads on the CPU overlap with DMA of the other buffer and of other threads.
Status copy_staged(const Artifact& art, const SectionView& sec, uint8_t* dst, const LoadOptions& o,
                   double* alloc_s) {
  const bool use_mmap = o.method == LoadMethod::StagedMmap;
  int fd = -1;
  if (!use_mmap) {
    fd = ::open(art.path().c_str(), O_RDONLY | O_CLOEXEC | (o.direct_io ? O_DIRECT : 0));
    if (fd < 0)
      return Status::Error(art.path() + ": cannot open for reading: " + std::strerror(errno));
  } else {
    art.file().advise_sequential(sec.offset, sec.size);
  }
  const size_t chunk = (o.chunk_bytes + 4095) & ~size_t(4095);
  const uint64_t nchunks = (sec.size + chunk - 1) / chunk;
  const int threads =
      int(std::max<uint64_t>(1, std::min<uint64_t>(uint64_t(std::max(1, o.threads)), nchunks)));
  const double ta = now_s();
  struct Worker {
    PinnedBuffer buf[2];
    Stream stream;
    Event ev[2];
  };
  std::vector<Worker> workers;
  workers.resize(size_t(threads));
  for (auto& w : workers) {
    for (int i = 0; i < 2; ++i) {
      QW_ASSIGN_OR_RETURN(w.buf[i], PinnedBuffer::alloc(chunk));
      QW_ASSIGN_OR_RETURN(w.ev[i], Event::create());
    }
    QW_ASSIGN_OR_RETURN(w.stream, Stream::create());
  }
  *alloc_s += now_s() - ta;
  std::atomic<uint64_t> next{0};
  FirstError err;
  int device = 0;
  cudaGetDevice(&device);
  auto body = [&](int wi) {
    cudaSetDevice(device);
    Worker& w = workers[size_t(wi)];
    int slot = 0;
    bool used[2] = {false, false};
    while (!err.failed) {
      const uint64_t i = next.fetch_add(1);
      if (i >= nchunks) break;
      const uint64_t off = i * chunk;
      const size_t len = size_t(std::min<uint64_t>(chunk, sec.size - off));
      if (used[slot]) {
        cudaError_t e = cudaEventSynchronize(w.ev[slot].get());
        if (e != cudaSuccess)
          return err.set(cuda_error(e, "cudaEventSynchronize", __FILE__, __LINE__));
      }
      uint8_t* b = w.buf[slot].as<uint8_t>();
      if (use_mmap) {
        std::memcpy(b, sec.data + off, len);
      } else {
        // O_DIRECT wants block-multiple lengths: read the rounded length (the file goes on
        // past every weights section, the metadata is last) and use `len` bytes.
        const size_t want = o.direct_io ? ((len + 4095) & ~size_t(4095)) : len;
        size_t got = 0;
        while (got < want) {
          ssize_t r = ::pread(fd, b + got, want - got, off_t(sec.offset + off + got));
          if (r < 0 && errno == EINTR) continue;
          if (r < 0)
            return err.set(Status::Error(art.path() + ": read failed: " + std::strerror(errno)));
          if (r == 0) break;
          got += size_t(r);
        }
        if (got < len)
          return err.set(Status::Error(art.path() + ": file is truncated inside the weights"));
      }
      cudaError_t e = cudaMemcpyAsync(dst + off, b, len, cudaMemcpyHostToDevice, w.stream.get());
      if (e == cudaSuccess) e = cudaEventRecord(w.ev[slot].get(), w.stream.get());
      if (e != cudaSuccess) return err.set(cuda_error(e, "cudaMemcpyAsync", __FILE__, __LINE__));
      used[slot] = true;
      slot ^= 1;
    }
    cudaError_t e = cudaStreamSynchronize(w.stream.get());
    if (e != cudaSuccess) err.set(cuda_error(e, "cudaStreamSynchronize", __FILE__, __LINE__));
  };
  std::vector<std::thread> pool;
  for (int i = 1; i < threads; ++i) pool.emplace_back(body, i);
  body(0);
  for (auto& t : pool) t.join();
  if (fd >= 0) ::close(fd);
  return err.st;
}

Status copy_host_register(const Artifact& art, const SectionView& sec, uint8_t* dst,
                          const LoadOptions& o) {
  const uintptr_t page = uintptr_t(::sysconf(_SC_PAGESIZE));
  const uintptr_t begin = uintptr_t(sec.data) & ~(page - 1);
  const uintptr_t end = (uintptr_t(sec.data) + sec.size + page - 1) & ~(page - 1);
  void* p = reinterpret_cast<void*>(begin);
  QW_CUDA(cudaHostRegister(p, end - begin, cudaHostRegisterReadOnly));
  Status st = Status::Ok();
  {
    const int nstreams = std::max(1, o.threads);
    std::vector<Stream> streams;
    for (int i = 0; i < nstreams && st.ok(); ++i) {
      auto s = Stream::create();
      if (!s.ok())
        st = s.status();
      else
        streams.push_back(std::move(*s));
    }
    const size_t chunk = o.chunk_bytes * 4;
    for (uint64_t off = 0, i = 0; st.ok() && off < sec.size; off += chunk, ++i) {
      const size_t len = size_t(std::min<uint64_t>(chunk, sec.size - off));
      cudaError_t e = cudaMemcpyAsync(dst + off, sec.data + off, len, cudaMemcpyHostToDevice,
                                      streams[i % streams.size()].get());
      if (e != cudaSuccess) st = cuda_error(e, "cudaMemcpyAsync", __FILE__, __LINE__);
    }
    for (auto& s : streams) {
      cudaError_t e = cudaStreamSynchronize(s.get());
      if (e != cudaSuccess && st.ok())
        st = cuda_error(e, "cudaStreamSynchronize", __FILE__, __LINE__);
    }
  }
  cudaHostUnregister(p);
  (void)art;
  return st;
}

}  // namespace

const char* load_method_name(LoadMethod m) {
  switch (m) {
    case LoadMethod::Staged:
      return "staged-pread";
    case LoadMethod::StagedMmap:
      return "staged-mmap";
    case LoadMethod::HostRegister:
      return "host-register";
    case LoadMethod::Plain:
      return "plain";
  }
  return "?";
}

bool parse_load_method(const std::string& s, LoadMethod* m) {
  for (LoadMethod c :
       {LoadMethod::Staged, LoadMethod::StagedMmap, LoadMethod::HostRegister, LoadMethod::Plain})
    if (s == load_method_name(c)) {
      *m = c;
      return true;
    }
  return false;
}

namespace {

// The arena of `w` for the rank's weights section, allocated on the current device.
Expected<SectionView> allocate_arena(const Artifact& artifact, int tp_rank, const LoadOptions& opts,
                                     DeviceWeights& w) {
  QW_ASSIGN_OR_RETURN(SectionView sec, artifact.weights_section(tp_rank));
  w.tp_rank = tp_rank;
  w.section_file_offset = sec.offset;
  w.stats.method = std::string(load_method_name(opts.method)) + (opts.direct_io ? "+odirect" : "");
  w.stats.bytes = sec.size;
  const double t0 = now_s();
  auto arena = DeviceBuffer::alloc(
      sec.size, "the weights of " + artifact.path() + " (rank " + std::to_string(tp_rank) + ")");
  if (!arena.ok()) return arena.status();
  w.arena = std::move(*arena);
  w.stats.alloc_seconds = now_s() - t0;
  return sec;
}

// Copies the section into w's arena (on the current device) with opts.method.
Status copy_section(const Artifact& artifact, const SectionView& sec, const LoadOptions& opts,
                    DeviceWeights& w) {
  const double t1 = now_s();
  uint8_t* dst = w.arena.as<uint8_t>();
  Status st;
  switch (opts.method) {
    case LoadMethod::Staged:
    case LoadMethod::StagedMmap: {
      double a = 0;
      st = copy_staged(artifact, sec, dst, opts, &a);
      w.stats.alloc_seconds += a;
      break;
    }
    case LoadMethod::HostRegister:
      st = copy_host_register(artifact, sec, dst, opts);
      break;
    case LoadMethod::Plain: {
      cudaError_t e = cudaMemcpy(dst, sec.data, sec.size, cudaMemcpyHostToDevice);
      if (e != cudaSuccess) st = cuda_error(e, "cudaMemcpy", __FILE__, __LINE__);
      break;
    }
  }
  if (!st.ok()) return st.context("loading weights of " + artifact.path());
  w.stats.copy_seconds = now_s() - t1;
  return Status::Ok();
}

}  // namespace

Expected<DeviceWeights> load_weights_to_device(const Artifact& artifact, int tp_rank,
                                               const LoadOptions& opts) {
  DeviceWeights w;
  QW_ASSIGN_OR_RETURN(SectionView sec, allocate_arena(artifact, tp_rank, opts, w));
  QW_RETURN_IF_ERROR(copy_section(artifact, sec, opts, w));
  return w;
}

struct PendingWeightLoad::State {
  std::thread copier;
  Status result;
};

PendingWeightLoad::PendingWeightLoad(std::unique_ptr<State> s) : s_(std::move(s)) {}
PendingWeightLoad::PendingWeightLoad(PendingWeightLoad&&) noexcept = default;
PendingWeightLoad::~PendingWeightLoad() {
  if (s_ && s_->copier.joinable()) s_->copier.join();
}

Expected<PendingWeightLoad> PendingWeightLoad::start(const Artifact& artifact, int tp_rank,
                                                     const LoadOptions& opts, DeviceWeights& out) {
  QW_ASSIGN_OR_RETURN(SectionView sec, allocate_arena(artifact, tp_rank, opts, out));
  int device = 0;
  QW_CUDA(cudaGetDevice(&device));
  auto state = std::make_unique<State>();
  State* st = state.get();
  st->copier = std::thread([st, &artifact, sec, opts, &out, device] {
    const cudaError_t e = cudaSetDevice(device);
    st->result = e != cudaSuccess ? cuda_error(e, "cudaSetDevice", __FILE__, __LINE__)
                                  : copy_section(artifact, sec, opts, out);
  });
  return PendingWeightLoad(std::move(state));
}

Status PendingWeightLoad::wait() {
  if (s_->copier.joinable()) s_->copier.join();
  return s_->result;
}

uint64_t host_checksum64(const uint8_t* data, uint64_t bytes, unsigned threads) {
  const uint64_t nwords = bytes / 8;
  std::vector<uint64_t> partial(std::max(1u, threads), 0);
  std::atomic<int> slot{0};
  parallel_for(int64_t(nwords), threads, [&](int64_t b, int64_t e) {
    uint64_t acc = 0;
    for (int64_t i = b; i < e; ++i) {
      uint64_t w;
      std::memcpy(&w, data + uint64_t(i) * 8, 8);
      acc += w * (2 * uint64_t(i) + 1) + ((w << 13) | (w >> 51));
    }
    partial[size_t(slot.fetch_add(1))] = acc;
  });
  uint64_t s = 0;
  for (uint64_t p : partial) s += p;
  return s;
}

}  // namespace qw::gpu
