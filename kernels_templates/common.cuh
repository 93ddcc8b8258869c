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
  asm("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
               : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
               : "l"(p));
  return r;
}
