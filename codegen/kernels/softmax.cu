// Softmax along one axis. Semantics: runtime/src/cpu/select.rs (row max in f32, exponentials
// and their sum in f64; an all -inf row gives zeros). One warp per row; the row's elements
// lie `inner` apart.
#include "common.cuh"

extern "C" __global__ void lt2_softmax_f32(const float* x, float* out, i64 outer, i64 n, i64 inner) {
    i64 row = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (row >= outer * inner) return;
    i64 o = row / inner, i = row % inner;
    const float* xr = x + o * n * inner + i;
    float* yr = out + o * n * inner + i;
    float m = -LT2_INF;
    for (i64 j = lane; j < n; j += 32) m = fmaxf(m, xr[j * inner]);
    m = lt2_warp_max(m);
    if (m == -LT2_INF) {
        for (i64 j = lane; j < n; j += 32) yr[j * inner] = 0.0f;
        return;
    }
    double s = 0.0;
    for (i64 j = lane; j < n; j += 32) s += exp((double)(xr[j * inner] - m));
    s = lt2_warp_sum_d(s);
    for (i64 j = lane; j < n; j += 32) yr[j * inner] = (float)(exp((double)(xr[j * inner] - m)) / s);
}
