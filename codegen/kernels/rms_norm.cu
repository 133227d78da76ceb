// RMS normalisation over the trailing `n` elements of each row. Semantics:
// runtime/src/cpu/norm.rs (mean of squares in f64, each output computed in f64 and rounded
// once). `scale` is already broadcast to the normalised dims ([n]). Rows whose length is a
// multiple of 4 in 16-byte aligned buffers are read and written as float4.
#include "common.cuh"

__device__ __forceinline__ bool lt2_rows_vec4(const float* x, const float* scale, const float* out, i64 n) {
    return n % 4 == 0 && (((unsigned long long)x | (unsigned long long)scale | (unsigned long long)out) & 15) == 0;
}

__device__ __forceinline__ double lt2_sq4(float4 v) {
    return (double)v.x * v.x + (double)v.y * v.y + (double)v.z * v.z + (double)v.w * v.w;
}

__device__ __forceinline__ float4 lt2_scale4(float4 v, float4 s, double inv) {
    return make_float4((float)((double)v.x * inv * (double)s.x), (float)((double)v.y * inv * (double)s.y),
                       (float)((double)v.z * inv * (double)s.z), (float)((double)v.w * inv * (double)s.w));
}

// One block per row. With float4 access a thread's first four values stay in registers between
// the two passes (rows of up to 4 x blockDim values are read once).
extern "C" __global__ void lt2_rms_norm_f32(const float* x, const float* scale, float* out, i64 rows, i64 n, float eps) {
    __shared__ double scratch[32];
    i64 row = blockIdx.x;
    if (row >= rows) return;
    const float* xr = x + row * n;
    float* yr = out + row * n;
    double ss = 0.0;
    if (lt2_rows_vec4(x, scale, out, n)) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        const i64 n4 = n / 4;
        float4 first = make_float4(0.f, 0.f, 0.f, 0.f);
        for (i64 j = threadIdx.x; j < n4; j += blockDim.x) {
            const float4 v = x4[j];
            if (j == threadIdx.x) first = v;
            ss += lt2_sq4(v);
        }
        ss = lt2_block_sum_d(ss, scratch);
        const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
        const float4* s4 = reinterpret_cast<const float4*>(scale);
        for (i64 j = threadIdx.x; j < n4; j += blockDim.x)
            reinterpret_cast<float4*>(yr)[j] = lt2_scale4(j == threadIdx.x ? first : x4[j], s4[j], inv);
        return;
    }
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
        double v = (double)xr[j];
        ss += v * v;
    }
    ss = lt2_block_sum_d(ss, scratch);
    const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) yr[j] = (float)((double)xr[j] * inv * (double)scale[j]);
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
    if (lt2_rows_vec4(x, scale, out, n)) {
        const float4* x4 = reinterpret_cast<const float4*>(xr);
        const i64 n4 = n / 4;
        for (i64 j = lane; j < n4; j += 32) ss += lt2_sq4(x4[j]);
        ss = lt2_warp_sum_d(ss);
        const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
        const float4* s4 = reinterpret_cast<const float4*>(scale);
        for (i64 j = lane; j < n4; j += 32) reinterpret_cast<float4*>(yr)[j] = lt2_scale4(x4[j], s4[j], inv);
        return;
    }
    for (i64 j = lane; j < n; j += 32) {
        double v = (double)xr[j];
        ss += v * v;
    }
    ss = lt2_warp_sum_d(ss);
    const double inv = 1.0 / sqrt(ss / (double)n + (double)eps);
    for (i64 j = lane; j < n; j += 32) yr[j] = (float)((double)xr[j] * inv * (double)scale[j]);
}
