// Linear for a few rows (decode: M = batch <= 8) over a bf16 / fp16 weight stored [N, K]
// (matmul-weights-* stores it so): y[m, n] = sum_k r(x[m, k]) w[n, k] (+ bias[n]), with r the
// rounding of x to the weight's type (as the GEMM path's cast, cvt.rn) and fp32 products and
// sums. Semantics: runtime/src/cpu/linalg.rs with the activation rounded (cpu/mod.rs). One warp
// per output n: its lanes read w's row in 16-byte pieces (8 values; K % 8 == 0, 16-byte aligned
// rows, checked by the host), the whole row in flight at once for K up to a few thousand; x is
// read through L1 and rounded in registers, so no cast kernel runs first. The lanes' partial sums
// meet in a shuffle reduction: the order is fixed, the result deterministic.
#include "common.cuh"

#define GEMV_MAX_M 8

template <int F16>
__device__ __forceinline__ void gemv_unpack(u32 p, float* lo, float* hi) {
    if (F16) {
        const unsigned short l = (unsigned short)(p & 0xffffu), h = (unsigned short)(p >> 16);
        asm("cvt.f32.f16 %0, %1;" : "=f"(*lo) : "h"(l));
        asm("cvt.f32.f16 %0, %1;" : "=f"(*hi) : "h"(h));
    } else {
        *lo = __uint_as_float(p << 16);
        *hi = __uint_as_float(p & 0xffff0000u);
    }
}

// x[0..8) rounded to the weight type, as fp32 values.
template <int F16>
__device__ __forceinline__ void gemv_round8(float4 a, float4 b, float* r) {
    const float v[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int j = 0; j < 8; j += 2) {
        u32 p;
        if (F16) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(p) : "f"(v[j + 1]), "f"(v[j]));
        else asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(p) : "f"(v[j + 1]), "f"(v[j]));
        gemv_unpack<F16>(p, &r[j], &r[j + 1]);
    }
}

template <int F16>
__device__ __forceinline__ void gemv(const float* x, const uint4* w, const float* bias, float* y, int m, int n, int k) {
    const int lane = threadIdx.x % 32;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= n) return;  // warp-uniform
    float acc[GEMV_MAX_M];
#pragma unroll
    for (int i = 0; i < GEMV_MAX_M; ++i) acc[i] = 0.0f;
    const uint4* wr = w + (i64)row * (k / 8);
#pragma unroll 4
    for (int c = lane; c < k / 8; c += 32) {
        const uint4 q = wr[c];
        float wf[8];
        gemv_unpack<F16>(q.x, &wf[0], &wf[1]);
        gemv_unpack<F16>(q.y, &wf[2], &wf[3]);
        gemv_unpack<F16>(q.z, &wf[4], &wf[5]);
        gemv_unpack<F16>(q.w, &wf[6], &wf[7]);
#pragma unroll
        for (int i = 0; i < GEMV_MAX_M; ++i) {
            if (i >= m) break;
            const float4* xr = reinterpret_cast<const float4*>(x + (i64)i * k) + 2 * c;
            float r[8];
            gemv_round8<F16>(xr[0], xr[1], r);
#pragma unroll
            for (int j = 0; j < 8; ++j) acc[i] = fmaf(r[j], wf[j], acc[i]);
        }
    }
#pragma unroll
    for (int i = 0; i < GEMV_MAX_M; ++i) {
        if (i >= m) break;
        const float s = lt2_warp_sum(acc[i]);
        if (lane == 0) y[(i64)i * n + row] = bias ? s + bias[row] : s;
    }
}

extern "C" __global__ void lt2_gemv_bf16(const float* x, const uint4* w, const float* bias, float* y, int m, int n, int k) {
    gemv<0>(x, w, bias, y, m, n, k);
}
extern "C" __global__ void lt2_gemv_f16(const float* x, const uint4* w, const float* bias, float* y, int m, int n, int k) {
    gemv<1>(x, w, bias, y, m, n, k);
}
