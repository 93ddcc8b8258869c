// Shared helpers for every kernel template. Compiled by NVRTC with no include paths:
// nothing here includes a header. The compiler prepends a prelude that defines the model
// constants (namespace qwc) and QW_WEIGHT_BF16 (0 = fp16 weights/activations, 1 = bf16).
//
// Conventions: weights, KV cache and GEMM inputs are 16-bit (`wt`, raw bits); the residual
// stream, GEMM outputs and softmax statistics are fp32. Kernels are extern "C" so the
// runtime finds them by name.
typedef unsigned short wt;
typedef unsigned int u32;
typedef unsigned long long u64;

#ifndef INFINITY
#define INFINITY __int_as_float(0x7f800000)
#endif

#ifndef QW_WEIGHT_BF16
#error "prelude missing: QW_WEIGHT_BF16 undefined"
#endif

__device__ __forceinline__ float qw_f16_to_f32(wt h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
__device__ __forceinline__ wt qw_f32_to_f16(float f) {
  wt h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
__device__ __forceinline__ float qw_bf16_to_f32(wt h) { return __uint_as_float(u32(h) << 16); }
__device__ __forceinline__ wt qw_f32_to_bf16(float f) {
  wt h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

#if QW_WEIGHT_BF16
__device__ __forceinline__ float to_f32(wt h) { return qw_bf16_to_f32(h); }
__device__ __forceinline__ wt from_f32(float f) { return qw_f32_to_bf16(f); }
// Two packed values of one 32-bit word.
__device__ __forceinline__ void unpack2(u32 w, float& a, float& b) {
  a = __uint_as_float(w << 16);
  b = __uint_as_float(w & 0xffff0000u);
}
#else
__device__ __forceinline__ float to_f32(wt h) { return qw_f16_to_f32(h); }
__device__ __forceinline__ wt from_f32(float f) { return qw_f32_to_f16(f); }
__device__ __forceinline__ void unpack2(u32 w, float& a, float& b) {
  a = qw_f16_to_f32(wt(w & 0xffffu));
  b = qw_f16_to_f32(wt(w >> 16));
}
#endif

__device__ __forceinline__ u32 pack2(float a, float b) {
  return u32(from_f32(a)) | (u32(from_f32(b)) << 16);
}

// 8 values of a 16-byte load.
__device__ __forceinline__ void unpack8(const uint4& v, float* f) {
  unpack2(v.x, f[0], f[1]);
  unpack2(v.y, f[2], f[3]);
  unpack2(v.z, f[4], f[5]);
  unpack2(v.w, f[6], f[7]);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over a block of blockDim.x threads (a multiple of 32, at most 1024); every thread
// gets the result. `scratch` holds 32 floats.
__device__ __forceinline__ float block_sum(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = lane < nwarps ? scratch[lane] : 0.f;
  return warp_sum(t);
}

__device__ __forceinline__ uint4 ldg16(const void* p) {
  return __ldg(reinterpret_cast<const uint4*>(p));
}
// Streaming load of weights: read once per step, keep them out of L1.
__device__ __forceinline__ uint4 ld_stream16(const void* p) {
  uint4 r;
  // volatile: stays ahead of qw_pdl_wait() where a kernel issues it early.
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}

// Programmatic dependent launch (sm_90+; no-ops elsewhere and when the launch did not ask
// for it). Every kernel calls qw_pdl_wait() before its first read of data written by an
// earlier kernel and before its first global write; only constant data (weights) may be
// read before it. qw_pdl_trigger() lets the next kernel's blocks start their own
// constant-data prologue while this grid's last wave runs. Waiting on the previous grid
// transitively orders every earlier one (each of them waited on its predecessor).
__device__ __forceinline__ void qw_pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void qw_pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Tensor-core and async-copy helpers (sm_80+).
__device__ __forceinline__ u32 smem_u32(const void* p) { return u32(__cvta_generic_to_shared(p)); }
// 16-byte global -> shared copy; src_bytes < 16 zero-fills the rest (0: all zeros, no read).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_u32(smem)), "l"(gmem), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;" ::: "memory"); }
__device__ __forceinline__ void ldsm_x4(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
__device__ __forceinline__ void ldsm_x4_trans(u32* r, const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p))
               : "memory");
}
// d[16x8] += a[16x16] * b[16x8], fp32 accumulate, operands in the weight type.
__device__ __forceinline__ void mma16816(float* d, const u32* a, const u32* b) {
#if QW_WEIGHT_BF16
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#else
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
