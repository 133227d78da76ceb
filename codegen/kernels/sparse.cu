// DSA-style sparse attention (the lt2 ONNX domain). Semantics: runtime/src/cpu/sparse.rs.
#include "common.cuh"

// LightningIndexer scores [B, T, S] for query t at position pos = t + S - T, keys s <= pos
// (later keys are not scored): mean_dot = mean_h(q[t,h] . k[s]); relu_weighted =
// sum_h w[t,h] relu(q[t,h] . k[s]). f32 sums in index order, as the CPU.
extern "C" __global__ void lt2_indexer_scores_f32(const float* q, const float* k, const float* w, float* scores, i64 B, i64 T, i64 S, i64 H,
                                                  i64 D) {
    LT2_GRID_STRIDE(x, B * T * S) {
        i64 s = x % S, t = (x / S) % T, b = x / (S * T);
        if (s > t + S - T) continue;
        const float* ks = k + (b * S + s) * D;
        float acc = 0.0f;
        for (i64 h = 0; h < H; ++h) {
            const float* qh = q + ((b * T + t) * H + h) * D;
            float dot = 0.0f;
            for (i64 d = 0; d < D; ++d) dot += qh[d] * ks[d];
            acc += w ? w[(b * T + t) * H + h] * fmaxf(dot, 0.0f) : dot;
        }
        if (!w) acc /= (float)H;
        scores[x] = acc;
    }
}

// Top-k positions per query: highest score first, ties to the lower position; -1 past the
// pos + 1 scored positions. One block per (b, t); each candidate's rank is counted.
extern "C" __global__ void lt2_indexer_topk_f32(const float* scores, i64* out, i64 T, i64 S, i64 K) {
    i64 bt = blockIdx.x, t = bt % T;
    i64 cnt = t + S - T + 1;
    const float* sc = scores + bt * S;
    for (i64 r = threadIdx.x; r < K; r += blockDim.x)
        if (r >= cnt) out[bt * K + r] = -1;
    for (i64 s = threadIdx.x; s < cnt; s += blockDim.x) {
        float v = sc[s];
        i64 rank = 0;
        for (i64 m = 0; m < cnt && rank < K; ++m) {
            float u = sc[m];
            rank += (u > v) || (!(u < v) && m < s);
        }
        if (rank < K) out[bt * K + rank] = s;
    }
}

#define SPA_MAX_DV_PER_LANE 8  // value columns per launch <= 256

struct SparseParams {
    i64 B, T, S, HQ, HKV, DK, DV, KK;
    i64 dv0, dvc;  // the value columns of this launch
    float scale;
    int pad;
};

// One warp per (b, t, head): softmax of scale * q . k_s over the selected positions s (indices
// shared by all heads, -1 skipped, out-of-range reported), applied to v_s (columns dv0 ..
// dv0+dvc); zeros if none.
extern "C" __global__ void lt2_sparse_attention_f32(const float* q, const float* k, const float* v, const i64* idx, float* out, SparseParams p,
                                                    i64* err) {
    i64 wid = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (wid >= p.B * p.T * p.HQ) return;
    i64 h = wid % p.HQ, bt = wid / p.HQ, b = bt / p.T;
    i64 hk = h / (p.HQ / p.HKV);
    const float* qh = q + (bt * p.HQ + h) * p.DK;
    float acc[SPA_MAX_DV_PER_LANE];
#pragma unroll
    for (int c = 0; c < SPA_MAX_DV_PER_LANE; ++c) acc[c] = 0.0f;
    float m = -LT2_INF, l = 0.0f;
    for (i64 e0 = 0; e0 < p.KK; e0 += 32) {
        i64 e = e0 + lane;
        i64 s = e < p.KK ? idx[bt * p.KK + e] : -1;
        bool valid = s != -1;
        if (valid && (s < 0 || s >= p.S)) {
            lt2_report(err, LT2_ERR_SPARSE, s, p.S);
            valid = false;
        }
        float sc = -LT2_INF;
        if (valid) {
            const float* ks = k + ((b * p.S + s) * p.HKV + hk) * p.DK;
            float dot = 0.0f;
            for (i64 d = 0; d < p.DK; ++d) dot += qh[d] * ks[d];
            sc = p.scale * dot;
        }
        float tmax = lt2_warp_max(sc);
        if (tmax == -LT2_INF) continue;  // warp-uniform
        float mnew = fmaxf(m, tmax);
        float corr = expf(m - mnew);
        float pj = valid ? expf(sc - mnew) : 0.0f;
        l = l * corr + lt2_warp_sum(pj);
#pragma unroll
        for (int c = 0; c < SPA_MAX_DV_PER_LANE; ++c) acc[c] *= corr;
        for (int jj = 0; jj < 32; ++jj) {
            float w = __shfl_sync(0xffffffffu, pj, jj);
            i64 sj = __shfl_sync(0xffffffffu, s, jj);
            if (w == 0.0f) continue;
            const float* vs = v + ((b * p.S + sj) * p.HKV + hk) * p.DV + p.dv0;
#pragma unroll
            for (int c = 0; c < SPA_MAX_DV_PER_LANE; ++c) {
                i64 d = lane + 32 * c;
                if (d < p.dvc) acc[c] += w * vs[d];
            }
        }
        m = mnew;
    }
    float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float* o = out + (bt * p.HQ + h) * p.DV + p.dv0;
#pragma unroll
    for (int c = 0; c < SPA_MAX_DV_PER_LANE; ++c) {
        i64 d = lane + 32 * c;
        if (d < p.dvc) o[d] = acc[c] * inv;
    }
}
