// Launch planning of the tensor-core decode GEMMs (gemv_tc.cuh), shared verbatim by the
// kernels (NVRTC, concatenated before gemv_tc.cuh) and by the runtime that launches them,
// so grid and block sizes cannot drift from what the kernels were compiled for. Plain C++
// that both g++ and NVRTC accept: no includes, no CUDA types.
#ifndef QW_GEMV_TC_PLAN_CUH
#define QW_GEMV_TC_PLAN_CUH

#if defined(__CUDACC__)
#define QW_TC_HD __host__ __device__ constexpr
#else
#define QW_TC_HD constexpr
#endif

// Largest batch the kernels take (4 n-tiles of 8 activation rows).
#define QW_TC_MAX_ROWS 32

// Outputs per tile: 16 weight rows, or 8 SwiGLU outputs (8 gate + 8 up rows).
QW_TC_HD int qw_tc_tiles(int n_outputs, bool swiglu) {
  return swiglu ? (n_outputs + 7) / 8 : (n_outputs + 15) / 16;
}
// Warps per block. A block splitting K 8 ways must hold its 8 warps; with <= 85 registers
// three such blocks fit an SM, so a 224-tile matrix (the 7b's o_proj / down_proj) is one
// wave of 1792 warps.
#define QW_TC_WARPS 8
// Warps that split K for one tile: enough warps in the grid to keep ~20 per SM streaming
// (on 100+ SMs), but at least 4 units of 32 k per warp.
QW_TC_HD int qw_tc_split(int tiles, int k) {
  int s = 1;
  const int units = (k + 31) / 32;
  while (s < QW_TC_WARPS && tiles * s < 2560 && units / (2 * s) >= 4) s *= 2;
  return s;
}
QW_TC_HD int qw_tc_warps_per_block(int) {
  return QW_TC_WARPS;
}
QW_TC_HD int qw_tc_blocks(int tiles, int split) {
  const int tiles_per_block = qw_tc_warps_per_block(split) / split;
  return (tiles + tiles_per_block - 1) / tiles_per_block;
}
// n-tiles of 8 rows a kernel instance covers for `rows` activation rows (1, 2 or 4).
QW_TC_HD int qw_tc_ntiles(int rows) {
  return rows <= 8 ? 1 : rows <= 16 ? 2 : 4;
}

#endif
