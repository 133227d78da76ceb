// Scaled dot-product attention, fp32, flash-style (online softmax over key tiles). Semantics:
// runtime/src/cpu/attention.rs: q [B,Lq,Hq*D], k [B,Lk,Hkv*D], v [B,Lk,Hkv*Dv] -> [B,Lq,Hq*Dv];
// query head h reads kv head h / (Hq/Hkv); query i sits at position pos = i + Lk - Lq (or i when
// top_left) and sees keys lo .. n (causal: j <= pos; windows: pos-left ..= pos+right); a row
// that sees no key gives zeros. An optional mask (f32 added to the scaled scores, or bool where
// false hides the key) is read through broadcast strides over [B, Hq, Lq, Lk].
//
// A block owns blockDim.y consecutive queries of one (batch, head), one warp per query. Key and
// value tiles of 32 rows go through shared memory; lane j scores key j of the tile, then every
// lane accumulates its output dims (lane, lane+32, ...) among the value columns dv0 .. dv0+dvc
// (at most 256 per launch; wider value heads take several launches).
#include "common.cuh"

#define ATT_TILE 32
#define ATT_MAX_DV_PER_LANE 8  // Dv <= 256

struct AttnParams {
    int B, LQ, LK, HQ, HKV, D, DV;
    int causal, top_left;
    float scale;
    i64 wl, wr;
    u64 mask;       // null, or the mask's address
    int mask_bool;  // the mask holds bool (else f32)
    int dv0;        // first value column of this launch
    i64 ms[4];      // mask strides over (b, h, i, j)
    int dvc;        // value columns of this launch (<= 32 * ATT_MAX_DV_PER_LANE)
    int pad;
};

// The visible key range [lo, n) of query i.
__device__ __forceinline__ void attn_range(const AttnParams& p, i64 i, i64* lo, i64* n) {
    i64 pos = p.top_left ? i : i + p.LK - p.LQ;
    i64 hi = p.causal ? min(max(pos + 1, (i64)0), (i64)p.LK) : (i64)p.LK;
    if (p.wr >= 0) hi = min(hi, min(max(pos + p.wr + 1, (i64)0), (i64)p.LK));
    *lo = p.wl >= 0 ? min(max(pos - p.wl, (i64)0), (i64)p.LK) : 0;
    *n = hi;
}

// Shared memory: K tile [ATT_TILE][D+1] (padded), V tile [ATT_TILE][dvc], q rows [blockDim.y][D].
extern "C" __global__ void lt2_attention_f32(const float* q, const float* k, const float* v, float* out, AttnParams p) {
    extern __shared__ float sm[];
    const int D = p.D, DV = p.DV, KS = D + 1, DC = p.dvc;
    float* kt = sm;
    float* vt = kt + ATT_TILE * KS;
    float* qs = vt + ATT_TILE * DC;
    const int lane = threadIdx.x, wy = threadIdx.y, rows = blockDim.y;
    const int tid = wy * 32 + lane, nthreads = 32 * rows;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (p.HQ / p.HKV);
    const i64 i0 = (i64)blockIdx.x * rows, i = i0 + wy;
    const bool active = i < p.LQ;

    // Key range of the whole block (lo and n grow with i).
    i64 blo, bhi, lo = 0, n = 0, tmp;
    attn_range(p, i0, &blo, &tmp);
    attn_range(p, min(i0 + rows, (i64)p.LQ) - 1, &tmp, &bhi);
    if (active) attn_range(p, i, &lo, &n);

    for (int x = tid; x < rows * D; x += nthreads) {
        i64 qi = i0 + x / D;
        qs[x] = qi < p.LQ ? q[((b * (i64)p.LQ + qi) * p.HQ + h) * D + x % D] : 0.0f;
    }
    float acc[ATT_MAX_DV_PER_LANE];
#pragma unroll
    for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) acc[c] = 0.0f;
    float m = -LT2_INF, l = 0.0f;
    const float* qrow = qs + wy * D;

    for (i64 j0 = blo; j0 < bhi; j0 += ATT_TILE) {
        __syncthreads();  // previous tile consumed (and q rows stored, on the first pass)
        for (int x = tid; x < ATT_TILE * D; x += nthreads) {
            i64 j = j0 + x / D;
            kt[(x / D) * KS + x % D] = j < bhi ? k[((b * (i64)p.LK + j) * p.HKV + hk) * D + x % D] : 0.0f;
        }
        for (int x = tid; x < ATT_TILE * DC; x += nthreads) {
            i64 j = j0 + x / DC;
            vt[x] = j < bhi ? v[((b * (i64)p.LK + j) * p.HKV + hk) * DV + p.dv0 + x % DC] : 0.0f;
        }
        __syncthreads();
        if (!active || j0 >= n || j0 + ATT_TILE <= lo) continue;  // warp-uniform
        const i64 j = j0 + lane;
        const bool valid = j >= lo && j < n;
        float sc = -LT2_INF;
        if (valid) {
            float dot = 0.0f;
            const float* kr = kt + lane * KS;
            for (int x = 0; x < D; ++x) dot += qrow[x] * kr[x];
            sc = p.scale * dot;
            if (p.mask) {
                i64 off = b * p.ms[0] + h * p.ms[1] + i * p.ms[2] + j * p.ms[3];
                if (p.mask_bool) sc = ((const u8*)p.mask)[off] ? sc : -LT2_INF;
                else sc += ((const float*)p.mask)[off];
            }
        }
        float tmax = lt2_warp_max(sc);
        if (tmax == -LT2_INF) continue;  // every key of the tile hidden (warp-uniform)
        float mnew = fmaxf(m, tmax);
        float corr = expf(m - mnew);  // m = -inf at first: 0
        float pj = valid ? expf(sc - mnew) : 0.0f;
        l = l * corr + lt2_warp_sum(pj);
#pragma unroll
        for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) acc[c] *= corr;
        for (int jj = 0; jj < ATT_TILE; ++jj) {
            float w = __shfl_sync(0xffffffffu, pj, jj);
            if (w == 0.0f) continue;  // warp-uniform
            const float* vr = vt + jj * DC;
#pragma unroll
            for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) {
                int d = lane + 32 * c;
                if (d < DC) acc[c] += w * vr[d];
            }
        }
        m = mnew;
    }
    if (!active) return;
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* orow = out + ((b * (i64)p.LQ + i) * p.HQ + h) * DV + p.dv0;
#pragma unroll
    for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) {
        int d = lane + 32 * c;
        if (d < DC) orow[d] = acc[c] * inv;
    }
}

// ---- Decode: one query row per (batch, head), split over the keys ("flash decoding") ----
// With Lq = 1 the tiled kernel above has one block per head: too few for a long cache. Here
// block (s, h, b) of ATT_SPLIT_WARPS warps takes keys [lo + s*chunk, +chunk) of the visible range;
// warp w takes every ATT_SPLIT_WARPS-th of them; lanes split the D dims of each score (then a
// warp sum) and own value columns lane, lane + 32, ... The block writes its running max, its
// sum of exp and its unnormalised output to part[b][h][s] = (m, l, acc[DV]);
// lt2_attention_combine_f32 merges the splits. No mask: the wrapper uses the tiled kernel then.
#define ATT_SPLIT_WARPS 4

// Dynamic shared memory: accumulators [ATT_SPLIT_WARPS][DV], then q [D].
extern "C" __global__ void lt2_attention_split_f32(const float* q, const float* k, const float* v, float* part, AttnParams p, int chunk, int splits) {
    __shared__ float red_m[ATT_SPLIT_WARPS], red_l[ATT_SPLIT_WARPS];
    extern __shared__ float sm[];
    const int lane = threadIdx.x, w = threadIdx.y;
    const int s = blockIdx.x, h = blockIdx.y, b = blockIdx.z, hk = h / (p.HQ / p.HKV);
    const int D = p.D, DV = p.DV;
    float* accs = sm;
    float* qs = sm + ATT_SPLIT_WARPS * DV;
    for (int x = w * 32 + lane; x < D; x += 32 * ATT_SPLIT_WARPS) qs[x] = q[((i64)b * p.HQ + h) * D + x];
    __syncthreads();
    i64 lo, n;
    attn_range(p, 0, &lo, &n);
    const i64 j_begin = lo + (i64)s * chunk, j_end = min(j_begin + (i64)chunk, n);
    float acc[ATT_MAX_DV_PER_LANE];
#pragma unroll
    for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) acc[c] = 0.0f;
    float m = -LT2_INF, l = 0.0f;
    for (i64 j = j_begin + w; j < j_end; j += ATT_SPLIT_WARPS) {
        const float* kr = k + ((b * (i64)p.LK + j) * p.HKV + hk) * D;
        float dot = 0.0f;
        for (int x = lane; x < D; x += 32) dot += qs[x] * kr[x];
        const float sc = p.scale * lt2_warp_sum(dot);
        const float mnew = fmaxf(m, sc);
        const float corr = expf(m - mnew);  // m = -inf at first: 0
        const float pj = expf(sc - mnew);
        l = l * corr + pj;
        const float* vr = v + ((b * (i64)p.LK + j) * p.HKV + hk) * DV;
#pragma unroll
        for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) {
            int d = lane + 32 * c;
            if (d < DV) acc[c] = acc[c] * corr + pj * vr[d];
        }
        m = mnew;
    }
    if (lane == 0) {
        red_m[w] = m;
        red_l[w] = l;
    }
    __syncthreads();
    float M = -LT2_INF;
    for (int x = 0; x < ATT_SPLIT_WARPS; ++x) M = fmaxf(M, red_m[x]);
    const float f = m == -LT2_INF ? 0.0f : expf(m - M);
#pragma unroll
    for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) {
        int d = lane + 32 * c;
        if (d < DV) accs[w * DV + d] = acc[c] * f;
    }
    __syncthreads();
    if (w != 0) return;
    float L = 0.0f;
    for (int x = 0; x < ATT_SPLIT_WARPS; ++x) L += red_m[x] == -LT2_INF ? 0.0f : red_l[x] * expf(red_m[x] - M);
    float* pr = part + (((i64)b * p.HQ + h) * splits + s) * (DV + 2);
    if (lane == 0) {
        pr[0] = M;
        pr[1] = L;
    }
    for (int d = lane; d < DV; d += 32) {
        float a = 0.0f;
        for (int x = 0; x < ATT_SPLIT_WARPS; ++x) a += accs[x * DV + d];
        pr[2 + d] = a;
    }
}

// Merges the splits of lt2_attention_split_f32: out[b][h] = sum_s e^(m_s - M) acc_s / sum_s
// e^(m_s - M) l_s (zeros when no split saw a key). Grid (HQ, B).
extern "C" __global__ void lt2_attention_combine_f32(const float* part, float* out, int splits, int DV) {
    const int h = blockIdx.x, b = blockIdx.y, HQ = gridDim.x;
    const float* pr = part + ((i64)b * HQ + h) * splits * (DV + 2);
    float M = -LT2_INF;
    for (int s = 0; s < splits; ++s) M = fmaxf(M, pr[s * (DV + 2)]);
    float L = 0.0f;
    for (int s = 0; s < splits; ++s) {
        float ms = pr[s * (DV + 2)];
        if (ms != -LT2_INF) L += pr[s * (DV + 2) + 1] * expf(ms - M);
    }
    const float inv = L > 0.0f ? 1.0f / L : 0.0f;
    float* orow = out + ((i64)b * HQ + h) * DV;
    for (int d = threadIdx.x; d < DV; d += blockDim.x) {
        float a = 0.0f;
        for (int s = 0; s < splits; ++s) {
            float ms = pr[s * (DV + 2)];
            if (ms != -LT2_INF) a += pr[s * (DV + 2) + 2 + d] * expf(ms - M);
        }
        orow[d] = a * inv;
    }
}
