// RMS normalisation over the trailing `n` elements of each row. Semantics:
// runtime/src/cpu/norm.rs (mean of squares in f64, each output computed in f64 and rounded
// once). `scale` is already broadcast to the normalised dims ([n]). One block per row.
#include "common.cuh"

extern "C" __global__ void lt2_rms_norm_f32(const float* x, const float* scale, float* out, i64 rows, i64 n, float eps) {
    __shared__ double scratch[32];
    i64 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + row * n;
    float* yr = out + row * n;
    double ss = 0.0;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
        double v = (double)xr[j];
        ss += v * v;
    }
    ss = lt2_block_sum_d(ss, scratch);
    double rms = sqrt(ss / (double)n + (double)eps);
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) yr[j] = (float)((double)xr[j] / rms * (double)scale[j]);
}

// Short rows (n <= 1024: GDN's per-head q / k / output norms over 96..192 values, many rows):
// one warp per row, 8 rows per block, a shuffle reduction instead of a block-wide one.
extern "C" __global__ void lt2_rms_norm_rows_f32(const float* x, const float* scale, float* out, i64 rows, i64 n, float eps) {
    const i64 row = (i64)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // warp-uniform
    const float* xr = x + row * n;
    float* yr = out + row * n;
    double ss = 0.0;
    for (i64 j = lane; j < n; j += 32) {
        double v = (double)xr[j];
        ss += v * v;
    }
    ss = lt2_warp_sum_d(ss);
    const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (i64 j = lane; j < n; j += 32) yr[j] = (float)((double)xr[j] * inv * (double)scale[j]);
}
