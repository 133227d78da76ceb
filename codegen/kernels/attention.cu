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
    int rnd;        // q, k, v rounded to bf16 (1) or fp16 (2) as they load (`--dtype`); 0: fp32
    u64 lk_dev;     // split kernel only: null, or an i64 in device memory holding the tokens cached
                    // before this step, so LK = *lk_dev + LQ (a decode step replayed as a graph)
    i64 kv_rows;    // split kernel only: rows per batch of k and v (a cache's capacity); 0: LK
};

// A q / k / v element as the products read it: rounded to the model's operand type (the CPU
// backend rounds the same way), else as stored.
__device__ __forceinline__ float att_ld(const float* x, i64 i, int rnd) {
    float v = x[i];
    if (rnd == 1) {
        unsigned short h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
        v = __uint_as_float((u32)h << 16);
    } else if (rnd == 2) {
        unsigned short h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
        asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h));
    }
    return v;
}

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
        qs[x] = qi < p.LQ ? att_ld(q, ((b * (i64)p.LQ + qi) * p.HQ + h) * D + x % D, p.rnd) : 0.0f;
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
            kt[(x / D) * KS + x % D] = j < bhi ? att_ld(k, ((b * (i64)p.LK + j) * p.HKV + hk) * D + x % D, p.rnd) : 0.0f;
        }
        for (int x = tid; x < ATT_TILE * DC; x += nthreads) {
            i64 j = j0 + x / DC;
            vt[x] = j < bhi ? att_ld(v, ((b * (i64)p.LK + j) * p.HKV + hk) * DV + p.dv0 + x % DC, p.rnd) : 0.0f;
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
// The splits share the visible range evenly (chunk = ceil(range / splits)), so the key count may
// come from device memory (lk_dev) and one launch configuration serves every cache length.
#define ATT_SPLIT_WARPS 4

// k and v as stored: fp32 (rounded on load as `rnd` says), or a K/V cache kept in the operand
// type of a `--dtype bf16|fp16` model (`kv_bf16` / `kv_f16`: already rounded, read exactly).
struct kv_bf16 {
    unsigned short x;
};
struct kv_f16 {
    unsigned short x;
};
__device__ __forceinline__ float att_ldkv(const float* x, i64 i, int rnd) { return att_ld(x, i, rnd); }
__device__ __forceinline__ float att_ldkv(const kv_bf16* x, i64 i, int) { return __uint_as_float((u32)x[i].x << 16); }
__device__ __forceinline__ float att_ldkv(const kv_f16* x, i64 i, int) {
    float v;
    asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(x[i].x));
    return v;
}

// Dynamic shared memory: accumulators [ATT_SPLIT_WARPS][DV], then q [D].
template <typename KV>
__device__ __forceinline__ void attention_split(const float* q, const KV* k, const KV* v, float* part, const AttnParams& p0, int splits) {
    AttnParams p = p0;
    if (p.lk_dev) p.LK = (int)(*(const i64*)p.lk_dev + p.LQ);
    if (p.kv_rows && p.LK > p.kv_rows) p.LK = (int)p.kv_rows;  // a full cache (write_rows reports it)
    const i64 kv_rows = p.kv_rows ? p.kv_rows : (i64)p.LK;
    __shared__ float red_m[ATT_SPLIT_WARPS], red_l[ATT_SPLIT_WARPS];
    extern __shared__ float sm[];
    const int lane = threadIdx.x, w = threadIdx.y;
    const int s = blockIdx.x, h = blockIdx.y, b = blockIdx.z, hk = h / (p.HQ / p.HKV);
    const int D = p.D, DV = p.DV;
    float* accs = sm;
    float* qs = sm + ATT_SPLIT_WARPS * DV;
    for (int x = w * 32 + lane; x < D; x += 32 * ATT_SPLIT_WARPS) qs[x] = att_ld(q, ((i64)b * p.HQ + h) * D + x, p.rnd);
    __syncthreads();
    i64 lo, n;
    attn_range(p, 0, &lo, &n);
    const i64 chunk = (n - lo + splits - 1) / splits;
    const i64 j_begin = lo + (i64)s * chunk, j_end = min(j_begin + chunk, n);
    float acc[ATT_MAX_DV_PER_LANE];
#pragma unroll
    for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) acc[c] = 0.0f;
    float m = -LT2_INF, l = 0.0f;
    for (i64 j = j_begin + w; j < j_end; j += ATT_SPLIT_WARPS) {
        const KV* kr = k + ((b * kv_rows + j) * p.HKV + hk) * D;
        float dot = 0.0f;
        for (int x = lane; x < D; x += 32) dot += qs[x] * att_ldkv(kr, x, p.rnd);
        const float sc = p.scale * lt2_warp_sum(dot);
        const float mnew = fmaxf(m, sc);
        const float corr = expf(m - mnew);  // m = -inf at first: 0
        const float pj = expf(sc - mnew);
        l = l * corr + pj;
        const KV* vr = v + ((b * kv_rows + j) * p.HKV + hk) * DV;
#pragma unroll
        for (int c = 0; c < ATT_MAX_DV_PER_LANE; ++c) {
            int d = lane + 32 * c;
            if (d < DV) acc[c] = acc[c] * corr + pj * att_ldkv(vr, d, p.rnd);
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

extern "C" __global__ void lt2_attention_split_f32(const float* q, const float* k, const float* v, float* part, AttnParams p, int splits) {
    attention_split(q, k, v, part, p, splits);
}
extern "C" __global__ void lt2_attention_split_bf16kv(const float* q, const kv_bf16* k, const kv_bf16* v, float* part, AttnParams p, int splits) {
    attention_split(q, k, v, part, p, splits);
}
extern "C" __global__ void lt2_attention_split_f16kv(const float* q, const kv_f16* k, const kv_f16* v, float* part, AttnParams p, int splits) {
    attention_split(q, k, v, part, p, splits);
}

// Merges the splits of lt2_attention_split_*: out[b][h] = sum_s e^(m_s - M) acc_s / sum_s
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

// ---- Prefill: register-tiled flash attention (FlashAttention-2 order, fp32 on CUDA cores) ----
// The kernel above gives one warp one query and reads q and k from shared memory for every
// multiply-add: at 8K tokens it runs at a few percent of the FP32 peak. Here a block of 256
// threads owns ATT_BQ = 64 queries of one (batch, head) and walks key tiles of ATT_BK = 64: thread
// (ty, tx) of the 16 x 16 grid computes the 4 x 4 scores of rows ty*4.. and keys tx*4.. from
// float4 loads of the transposed q / k tiles (16 multiply-adds per two loads), keeps the running
// max and sum of its 4 rows (reduced over the 16 threads of a row by shuffles), stores the
// probabilities transposed into shared memory (over the consumed k tile) and accumulates its
// 4 rows x 8 value columns (tx*4.. and 64 + tx*4..) of the output. Value heads wider than
// ATT_TDV columns take several launches (dv0, dvc), as above. D <= ATT_TD.
#define ATT_BQ 64
#define ATT_BK 64
#define ATT_TS 68    // row stride of the transposed q / k / p tiles (BQ + 4: float4-aligned)
#define ATT_TDV 128  // value columns per launch
#define ATT_TD 128   // largest head dim

// Dynamic shared memory: qs [D][ATT_TS], ks [D][ATT_TS] (ps [ATT_BK][ATT_TS] reuses it),
// vs [ATT_BK][ATT_TDV].
extern "C" __global__ void __launch_bounds__(256, 2)
lt2_attention_tiled_f32(const float* q, const float* k, const float* v, float* out, AttnParams p) {
    extern __shared__ __align__(16) float sm[];
    const int D = p.D, DV = p.DV, DC = p.dvc;
    float* qs = sm;
    float* ks = qs + D * ATT_TS;
    float* ps = ks;
    float* vs = ks + max(D, ATT_BK) * ATT_TS;
    const int tid = threadIdx.x, tx = tid % 16, ty = tid / 16;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (p.HQ / p.HKV);
    const i64 i0 = (i64)blockIdx.x * ATT_BQ;
    const i64 rows_end = min(i0 + ATT_BQ, (i64)p.LQ);

    i64 blo, bhi, tmp;
    attn_range(p, i0, &blo, &tmp);
    attn_range(p, rows_end - 1, &tmp, &bhi);
    i64 lo[4], n[4];
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        i64 i = i0 + ty * 4 + a;
        lo[a] = 0;
        n[a] = 0;
        if (i < p.LQ) attn_range(p, i, &lo[a], &n[a]);
    }

    for (int x = tid; x < ATT_BQ * D; x += 256) {
        int r = x / D, d = x % D;
        i64 qi = i0 + r;
        qs[d * ATT_TS + r] = qi < p.LQ ? att_ld(q, ((b * (i64)p.LQ + qi) * p.HQ + h) * D + d, p.rnd) : 0.0f;
    }
    float acc[4][8];
    float m[4], l[4];
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        m[a] = -LT2_INF;
        l[a] = 0.0f;
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[a][c] = 0.0f;
    }
    const bool two = DC > 64;  // the second group of 4 value columns per thread is in use

    for (i64 j0 = blo; j0 < bhi; j0 += ATT_BK) {
        __syncthreads();  // previous tile's ps / vs consumed
        for (int x = tid; x < ATT_BK * D; x += 256) {
            int r = x / D, d = x % D;
            i64 j = j0 + r;
            ks[d * ATT_TS + r] = j < bhi ? att_ld(k, ((b * (i64)p.LK + j) * p.HKV + hk) * D + d, p.rnd) : 0.0f;
        }
        for (int x = tid; x < ATT_BK * ATT_TDV; x += 256) {
            int r = x / ATT_TDV, c = x % ATT_TDV;
            i64 j = j0 + r;
            vs[x] = (j < bhi && c < DC) ? att_ld(v, ((b * (i64)p.LK + j) * p.HKV + hk) * DV + p.dv0 + c, p.rnd) : 0.0f;
        }
        __syncthreads();
        float s[4][4];
#pragma unroll
        for (int a = 0; a < 4; ++a)
#pragma unroll
            for (int c = 0; c < 4; ++c) s[a][c] = 0.0f;
#pragma unroll 4
        for (int d = 0; d < D; ++d) {
            const float4 qa = *reinterpret_cast<const float4*>(qs + d * ATT_TS + ty * 4);
            const float4 kb = *reinterpret_cast<const float4*>(ks + d * ATT_TS + tx * 4);
            const float qv[4] = {qa.x, qa.y, qa.z, qa.w}, kv[4] = {kb.x, kb.y, kb.z, kb.w};
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int c = 0; c < 4; ++c) s[a][c] += qv[a] * kv[c];
        }
        __syncthreads();  // every thread is done with ks: ps overwrites it below
#pragma unroll
        for (int a = 0; a < 4; ++a) {
            const i64 i = i0 + ty * 4 + a;
            float mx = -LT2_INF;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                const i64 j = j0 + tx * 4 + c;
                float sc = -LT2_INF;
                if (j >= lo[a] && j < n[a]) {
                    sc = p.scale * s[a][c];
                    if (p.mask) {
                        i64 off = b * p.ms[0] + h * p.ms[1] + i * p.ms[2] + j * p.ms[3];
                        if (p.mask_bool) sc = ((const u8*)p.mask)[off] ? sc : -LT2_INF;
                        else sc += ((const float*)p.mask)[off];
                    }
                }
                s[a][c] = sc;
                mx = fmaxf(mx, sc);
            }
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            const float mnew = fmaxf(m[a], mx);
            float corr = 1.0f, sum = 0.0f;
            if (mnew != -LT2_INF) {
                corr = expf(m[a] - mnew);  // m = -inf at first: 0
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    s[a][c] = expf(s[a][c] - mnew);  // hidden keys: 0
                    sum += s[a][c];
                }
            } else {
#pragma unroll
                for (int c = 0; c < 4; ++c) s[a][c] = 0.0f;
            }
#pragma unroll
            for (int o = 8; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            l[a] = l[a] * corr + sum;
            m[a] = mnew;
#pragma unroll
            for (int c = 0; c < 8; ++c) acc[a][c] *= corr;
#pragma unroll
            for (int c = 0; c < 4; ++c) ps[(tx * 4 + c) * ATT_TS + ty * 4 + a] = s[a][c];
        }
        __syncthreads();
#pragma unroll 4
        for (int jj = 0; jj < ATT_BK; ++jj) {
            const float4 pa = *reinterpret_cast<const float4*>(ps + jj * ATT_TS + ty * 4);
            const float pv[4] = {pa.x, pa.y, pa.z, pa.w};
            const float4 v0 = *reinterpret_cast<const float4*>(vs + jj * ATT_TDV + tx * 4);
            const float vv0[4] = {v0.x, v0.y, v0.z, v0.w};
#pragma unroll
            for (int a = 0; a < 4; ++a)
#pragma unroll
                for (int c = 0; c < 4; ++c) acc[a][c] += pv[a] * vv0[c];
            if (two) {
                const float4 v1 = *reinterpret_cast<const float4*>(vs + jj * ATT_TDV + 64 + tx * 4);
                const float vv1[4] = {v1.x, v1.y, v1.z, v1.w};
#pragma unroll
                for (int a = 0; a < 4; ++a)
#pragma unroll
                    for (int c = 0; c < 4; ++c) acc[a][4 + c] += pv[a] * vv1[c];
            }
        }
    }
#pragma unroll
    for (int a = 0; a < 4; ++a) {
        const i64 i = i0 + ty * 4 + a;
        if (i >= p.LQ) continue;
        const float inv = l[a] > 0.0f ? 1.0f / l[a] : 0.0f;
        float* orow = out + ((b * (i64)p.LQ + i) * p.HQ + h) * DV + p.dv0;
#pragma unroll
        for (int c = 0; c < 8; ++c) {
            const int col = (c < 4 ? 0 : 64) + tx * 4 + (c % 4);
            if (col < DC) orow[col] = acc[a][c] * inv;
        }
    }
}

// ---- Prefill with bf16 / fp16 operands (`--dtype`): tensor cores (mma.sync m16n8k16) ----
// FlashAttention-2's order: a block of 8 warps owns ATT_MQ = 128 queries of one (batch, head),
// 16 per warp, and walks key tiles of ATT_MK = 64. k and v arrive already rounded to the
// operand type (the wrapper casts them once, same layout as the fp32 tensors); each tile goes
// global -> shared with cp.async into one of two stages, so the next tile loads while this one
// is computed, and the mma B fragments come from shared memory with ldmatrix (k rows as they
// are; v through ldmatrix.trans). Each warp keeps its q fragments, its 16 x 64 scores and its
// 16 x dvc output in registers (the mma accumulator layout: thread (g = lane / 4, t = lane % 4)
// holds rows g and g + 8, columns 2t, 2t + 1 of each 8-wide tile), so the row max / sum of the
// online softmax are shuffles over the 4 threads of a row, and the probabilities feed the second
// product straight from registers (rounded to the operand type, as FlashAttention does; the
// sums stay fp32). Blocks start with the last queries (the most keys under a causal mask), so
// the short blocks fill the tail. Requires D % 16 == 0, D <= ATT_MD, dvc % 16 == 0,
// dvc <= ATT_MDV, no mask: the wrapper checks.
#define ATT_MQ 128
#define ATT_MT 256  // threads: ATT_MQ / 16 warps
#define ATT_MK 64
#define ATT_MD 128
#define ATT_MDV 128
#define ATT_KP 8  // row padding (elements) of the shared k and v tiles: conflict-free ldmatrix

// 2^x in one MUFU instruction (ex2.approx, flush-to-zero: relative error about 2^-22, and
// 2^-inf = 0 for hidden keys); the probabilities are rounded to 8 or 11 bits right after.
__device__ __forceinline__ float att_ex2(float x) {
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

template <int F16>
__device__ __forceinline__ u32 att_pack(float lo, float hi) {
    u32 r;
    if (F16) asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    else asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(r) : "f"(hi), "f"(lo));
    return r;
}

// c += a b on the tensor cores. Not volatile: the compiler may interleave independent products
// (the 8 key groups of a k step), which hides the mma latency with two warps per scheduler.
template <int F16>
__device__ __forceinline__ void att_mma(float* c, const u32* a, u32 b0, u32 b1) {
    if (F16)
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    else
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3]) : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ u32 att_smem_addr(const void* p) {
    return (u32)__cvta_generic_to_shared(p);
}

// 16 bytes global -> shared, bypassing L1; `full` false writes zeros (rows past the keys).
__device__ __forceinline__ void att_cp16(void* dst, const void* src, bool full) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(att_smem_addr(dst)), "l"(src), "r"(full ? 16 : 0));
}

__device__ __forceinline__ void att_ldsm4(u32* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(att_smem_addr(p)));
}

__device__ __forceinline__ void att_ldsm4_t(u32* r, const unsigned short* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(att_smem_addr(p)));
}

template <int F16>
__device__ __forceinline__ void attention_mma(const float* q, const unsigned short* k, const unsigned short* v, float* out, const AttnParams& p) {
    extern __shared__ __align__(16) unsigned short smh[];
    const int D = p.D, DV = p.DV, DC = p.dvc;
    const int KS = D + ATT_KP, VS = DC + ATT_KP;
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, g = lane / 4, t = lane % 4;
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (p.HQ / p.HKV);
    const i64 i0 = (i64)(gridDim.x - 1 - blockIdx.x) * ATT_MQ;
    const i64 rows_end = min(i0 + ATT_MQ, (i64)p.LQ);
    const int nks = D / 16, nvt = DC / 8;

    i64 blo, bhi, tmp;
    attn_range(p, i0, &blo, &tmp);
    attn_range(p, rows_end - 1, &tmp, &bhi);
    const i64 r0 = i0 + warp * 16 + g, r1 = r0 + 8;  // this thread's two rows
    i64 lo0 = 0, n0 = 0, lo1 = 0, n1 = 0;
    if (r0 < p.LQ) attn_range(p, r0, &lo0, &n0);
    if (r1 < p.LQ) attn_range(p, r1, &lo1, &n1);
    // Keys this warp's rows see: some of them (wlo .. wend) and all of them (full_lo ..
    // full_end; the visible ranges of later rows start and end no earlier: causal and windowed
    // masks, no mask input here). Warp-uniform.
    i64 wlo = 1, wend = 0, full_lo = 1, full_end = 0;
    {
        const i64 w0 = i0 + warp * 16, w1 = min(w0 + 15, (i64)p.LQ - 1);
        if (w0 < p.LQ) {
            attn_range(p, w0, &wlo, &full_end);
            attn_range(p, w1, &full_lo, &wend);
        }
    }

    // q fragments (A operand, row-major 16 x 16 per k step), straight from global memory.
    u32 qa[ATT_MD / 16][4];
#pragma unroll
    for (int ks_ = 0; ks_ < ATT_MD / 16; ++ks_) {
        if (ks_ >= nks) break;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const i64 row = (r % 2 == 0) ? r0 : r1;
            const int col = ks_ * 16 + t * 2 + (r >= 2 ? 8 : 0);
            float x0 = 0.0f, x1 = 0.0f;
            if (row < p.LQ) {
                const float2 x = *reinterpret_cast<const float2*>(q + ((b * (i64)p.LQ + row) * p.HQ + h) * D + col);
                x0 = x.x;
                x1 = x.y;
            }
            qa[ks_][r] = att_pack<F16>(x0, x1);
        }
    }
    float o[ATT_MDV / 8][4];
#pragma unroll
    for (int n = 0; n < ATT_MDV / 8; ++n)
#pragma unroll
        for (int c = 0; c < 4; ++c) o[n][c] = 0.0f;
    float m0 = -LT2_INF, m1 = -LT2_INF, l0 = 0.0f, l1 = 0.0f;
    const float sl2 = p.scale * 1.4426950408889634f;  // scores in log2 units: exp2f below

    // Tile jt into stage st: k rows jt .. jt + 63 (D / 8 16-byte chunks each) and their value
    // columns dv0 .. dv0 + dvc (dvc / 8 chunks); rows from bhi on are zeros.
    const int kchunks = D / 8, vchunks = DC / 8;
    auto load = [&](i64 jt, int st) {
        unsigned short* ks = smh + st * ATT_MK * KS;
        unsigned short* vs = smh + 2 * ATT_MK * KS + st * ATT_MK * VS;
        for (int c = threadIdx.x; c < ATT_MK * kchunks; c += ATT_MT) {
            const int r = c / kchunks, x = c % kchunks;
            const i64 j = jt + r;
            const bool in = j < bhi;
            att_cp16(ks + r * KS + x * 8, k + ((b * (i64)p.LK + (in ? j : 0)) * p.HKV + hk) * D + x * 8, in);
        }
        for (int c = threadIdx.x; c < ATT_MK * vchunks; c += ATT_MT) {
            const int r = c / vchunks, x = c % vchunks;
            const i64 j = jt + r;
            const bool in = j < bhi;
            att_cp16(vs + r * VS + x * 8, v + ((b * (i64)p.LK + (in ? j : 0)) * p.HKV + hk) * DV + p.dv0 + x * 8, in);
        }
        asm volatile("cp.async.commit_group;\n" ::);
    };
    if (blo < bhi) load(blo, 0);

    int st = 0;
    for (i64 j0 = blo; j0 < bhi; j0 += ATT_MK, st ^= 1) {
        asm volatile("cp.async.wait_group 0;\n" ::);
        __syncthreads();  // this tile has landed for every thread; the other stage is free
        if (j0 + ATT_MK < bhi) load(j0 + ATT_MK, st ^ 1);
        // warp-uniform: no row of this warp sees a key of the tile
        if (i0 + warp * 16 >= p.LQ || j0 >= wend || j0 + ATT_MK <= wlo) continue;
        const unsigned short* ks = smh + st * ATT_MK * KS;
        const unsigned short* vs = smh + 2 * ATT_MK * KS + st * ATT_MK * VS;

        float s[ATT_MK / 8][4];
#pragma unroll
        for (int n = 0; n < ATT_MK / 8; ++n)
#pragma unroll
            for (int c = 0; c < 4; ++c) s[n][c] = 0.0f;
        // ldmatrix x4: lanes 8m .. 8m + 7 address rows n*8 .. n*8 + 7 at columns 16 ks + 8m:
        // fragments (b0, b1) of k steps ks and ks + 1; the 8 key groups' products interleave.
#pragma unroll
        for (int ks_ = 0; ks_ < ATT_MD / 16; ks_ += 2) {
            if (ks_ >= nks) break;
            if (ks_ + 1 < nks) {
                u32 bf[ATT_MK / 8][4];
#pragma unroll
                for (int n = 0; n < ATT_MK / 8; ++n) att_ldsm4(bf[n], ks + (n * 8 + (lane & 7)) * KS + ks_ * 16 + (lane >> 3) * 8);
#pragma unroll
                for (int n = 0; n < ATT_MK / 8; ++n) att_mma<F16>(s[n], qa[ks_], bf[n][0], bf[n][1]);
#pragma unroll
                for (int n = 0; n < ATT_MK / 8; ++n) att_mma<F16>(s[n], qa[ks_ + 1], bf[n][2], bf[n][3]);
            } else {
#pragma unroll
                for (int n = 0; n < ATT_MK / 8; ++n) {
                    const unsigned short* kr = ks + (n * 8 + g) * KS + ks_ * 16 + t * 2;
                    att_mma<F16>(s[n], qa[ks_], *reinterpret_cast<const u32*>(kr), *reinterpret_cast<const u32*>(kr + 8));
                }
            }
        }
        // Visibility, running max and probabilities of rows r0 (s[n][0..1]) and r1 (s[n][2..3]).
        float mx0 = -LT2_INF, mx1 = -LT2_INF;
        if (j0 >= full_lo && j0 + ATT_MK <= full_end) {  // warp-uniform: no key of the tile hidden
#pragma unroll
            for (int n = 0; n < ATT_MK / 8; ++n) {
#pragma unroll
                for (int c = 0; c < 4; ++c) s[n][c] *= sl2;
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
        } else {
#pragma unroll
            for (int n = 0; n < ATT_MK / 8; ++n) {
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const i64 j = j0 + n * 8 + t * 2 + (c % 2);
                    const bool vis = c < 2 ? (j >= lo0 && j < n0) : (j >= lo1 && j < n1);
                    s[n][c] = vis ? s[n][c] * sl2 : -LT2_INF;
                }
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
        }
#pragma unroll
        for (int o_ = 1; o_ <= 2; o_ <<= 1) {
            mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o_));
            mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o_));
        }
        const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
        const float c0 = mn0 == -LT2_INF ? 1.0f : att_ex2(m0 - mn0), c1 = mn1 == -LT2_INF ? 1.0f : att_ex2(m1 - mn1);
        const float b0 = mn0 == -LT2_INF ? 0.0f : mn0, b1 = mn1 == -LT2_INF ? 0.0f : mn1;
        m0 = mn0;
        m1 = mn1;
        l0 *= c0;
        l1 *= c1;
#pragma unroll
        for (int n = 0; n < ATT_MK / 8; ++n) {
            s[n][0] = att_ex2(s[n][0] - b0);  // hidden keys: exp2(-inf) = 0
            s[n][1] = att_ex2(s[n][1] - b0);
            s[n][2] = att_ex2(s[n][2] - b1);
            s[n][3] = att_ex2(s[n][3] - b1);
            l0 += s[n][0] + s[n][1];
            l1 += s[n][2] + s[n][3];
        }
#pragma unroll
        for (int n = 0; n < ATT_MDV / 8; ++n) {
            o[n][0] *= c0;
            o[n][1] *= c0;
            o[n][2] *= c1;
            o[n][3] *= c1;
        }
        // o += p v: the probabilities of keys 16 kk .. 16 kk + 15 are the A fragment; ldmatrix
        // x4 trans: lanes 8m .. 8m + 7 address v rows 16 kk + 8 (m % 2) + 0..7 at columns
        // 8 (n + m / 2): fragments (b0, b1) of value column tiles n and n + 1.
#pragma unroll
        for (int kk = 0; kk < ATT_MK / 16; ++kk) {
            u32 pa[4];
            pa[0] = att_pack<F16>(s[2 * kk][0], s[2 * kk][1]);
            pa[1] = att_pack<F16>(s[2 * kk][2], s[2 * kk][3]);
            pa[2] = att_pack<F16>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
            pa[3] = att_pack<F16>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
            for (int n = 0; n < ATT_MDV / 8; n += 2) {
                if (n >= nvt) break;
                u32 bf[4];
                att_ldsm4_t(bf, vs + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * VS + (n + (lane >> 4)) * 8);
                att_mma<F16>(o[n], pa, bf[0], bf[1]);
                att_mma<F16>(o[n + 1], pa, bf[2], bf[3]);
            }
        }
    }
#pragma unroll
    for (int o_ = 1; o_ <= 2; o_ <<= 1) {
        l0 += __shfl_xor_sync(0xffffffffu, l0, o_);
        l1 += __shfl_xor_sync(0xffffffffu, l1, o_);
    }
    const float inv0 = l0 > 0.0f ? 1.0f / l0 : 0.0f, inv1 = l1 > 0.0f ? 1.0f / l1 : 0.0f;
#pragma unroll
    for (int n = 0; n < ATT_MDV / 8; ++n) {
        if (n >= nvt) break;
        const int col = p.dv0 + n * 8 + t * 2;
        if (r0 < p.LQ) {
            float* orow = out + ((b * (i64)p.LQ + r0) * p.HQ + h) * DV + col;
            *reinterpret_cast<float2*>(orow) = make_float2(o[n][0] * inv0, o[n][1] * inv0);
        }
        if (r1 < p.LQ) {
            float* orow = out + ((b * (i64)p.LQ + r1) * p.HQ + h) * DV + col;
            *reinterpret_cast<float2*>(orow) = make_float2(o[n][2] * inv1, o[n][3] * inv1);
        }
    }
}

extern "C" __global__ void __launch_bounds__(ATT_MT) lt2_attention_mma_bf16(const float* q, const unsigned short* k, const unsigned short* v, float* out, AttnParams p) {
    attention_mma<0>(q, k, v, out, p);
}
extern "C" __global__ void __launch_bounds__(ATT_MT) lt2_attention_mma_f16(const float* q, const unsigned short* k, const unsigned short* v, float* out, AttnParams p) {
    attention_mma<1>(q, k, v, out, p);
}
