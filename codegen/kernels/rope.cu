// Rotary position embedding (RotaryEmbedding-23). Semantics: runtime/src/cpu/rope.rs. The host
// copies x to out first (dims R..D pass through); one thread per rotated pair then writes
// (cos x1 - sin x2, sin x1 + cos x2). Layout [B, L, H, D] or, with heads_first, [B, H, L, D].
// The cos/sin row is position_ids[b, l] ([P, R/2] caches) or b * L + l ([B, L, R/2]) when
// position_ids is null; a position outside 0..P is reported (LT2_ERR_POSITION).
#include "common.cuh"

struct RopeParams {
    i64 B, L, H, D, half, P;
    int interleaved, heads_first;
};

extern "C" __global__ void lt2_rope_f32(const float* x, const float* cosc, const float* sinc, const i64* pos, float* out, RopeParams p, i64* err) {
    LT2_GRID_STRIDE(t, p.B * p.L * p.H * p.half) {
        i64 i = t % p.half, hi = (t / p.half) % p.H, li = (t / (p.half * p.H)) % p.L, b = t / (p.half * p.H * p.L);
        i64 row = b * p.L + li;
        if (pos) {
            row = pos[b * p.L + li];
            if (row < 0 || row >= p.P) {
                if (i == 0 && hi == 0) lt2_report(err, LT2_ERR_POSITION, row, p.P);
                continue;
            }
        }
        i64 base = p.heads_first ? ((b * p.H + hi) * p.L + li) * p.D : ((b * p.L + li) * p.H + hi) * p.D;
        i64 i1 = p.interleaved ? 2 * i : i, i2 = p.interleaved ? 2 * i + 1 : i + p.half;
        float c = cosc[row * p.half + i], s = sinc[row * p.half + i];
        float x1 = x[base + i1], x2 = x[base + i2];
        out[base + i1] = c * x1 - s * x2;
        out[base + i2] = s * x1 + c * x2;
    }
}
