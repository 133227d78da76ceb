// Rotary position embedding (RotaryEmbedding-23). Semantics: runtime/src/cpu/rope.rs. Where
// R < D the host copies x to out first (dims R..D pass through); one thread per rotated pair writes
// (cos x1 - sin x2, sin x1 + cos x2). Layout [B, L, H, D] or, with heads_first, [B, H, L, D].
// The cos/sin row is position_ids[b, l] ([P, R/2] caches) or b * L + l ([B, L, R/2]) when
// position_ids is null; a position outside 0..P is reported (LT2_ERR_POSITION).
#include "common.cuh"

struct RopeParams {
    i64 B, L, H, D, half, P;
    int interleaved, heads_first;
};

// Index arithmetic in 32 bits where every element index fits (divisions by the dims are the
// kernel's main cost otherwise), else in 64.
template <typename I>
__device__ __forceinline__ void lt2_rope_pair(const float* x, const float* cosc, const float* sinc, const i64* pos, float* out, const RopeParams& p, i64* err, I t) {
    const I half = (I)p.half, H = (I)p.H, L = (I)p.L;
    const I i = t % half, r1 = t / half, hi = r1 % H, r2 = r1 / H, li = r2 % L, b = r2 / L;
    i64 row = (i64)b * p.L + li;
    if (pos) {
        row = pos[(i64)b * p.L + li];
        if (row < 0 || row >= p.P) {
            if (i == 0 && hi == 0) lt2_report(err, LT2_ERR_POSITION, row, p.P);
            return;
        }
    }
    const i64 base = p.heads_first ? (((i64)b * p.H + hi) * p.L + li) * p.D : (((i64)b * p.L + li) * p.H + hi) * p.D;
    const i64 i1 = p.interleaved ? 2 * (i64)i : (i64)i, i2 = p.interleaved ? 2 * (i64)i + 1 : (i64)i + p.half;
    const float c = cosc[row * p.half + i], s = sinc[row * p.half + i];
    const float x1 = x[base + i1], x2 = x[base + i2];
    out[base + i1] = c * x1 - s * x2;
    out[base + i2] = s * x1 + c * x2;
}

extern "C" __global__ void lt2_rope_f32(const float* x, const float* cosc, const float* sinc, const i64* pos, float* out, RopeParams p, i64* err) {
    const i64 n = p.B * p.L * p.H * p.half;
    if (n < (1ll << 31)) {
        for (u32 t = blockIdx.x * blockDim.x + threadIdx.x; t < (u32)n; t += blockDim.x * gridDim.x) lt2_rope_pair<u32>(x, cosc, sinc, pos, out, p, err, t);
    } else {
        LT2_GRID_STRIDE(t, n) lt2_rope_pair<i64>(x, cosc, sinc, pos, out, p, err, t);
    }
}
