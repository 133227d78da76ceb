// Linear attention with a matrix state (LinearAttention-27: gated delta rule and its special
// cases) as the token recurrence, fp32 state. Semantics: runtime/src/cpu/gdn.rs. Per kv head
// and token: S = exp(g) S (row-wise); u = beta (v - S^T k) (delta rules) or v; S += k u^T; each
// query head of the group: o = scale * S^T q.
//
// The columns of S evolve independently, so a block owns one (batch, kv head) and a tile of
// columns; thread (tx, ty) holds column tx of the tile, rows ty*GDN_ROWS .. +GDN_ROWS, in
// registers. Sums over rows go through shared memory across the ty groups.
#include "common.cuh"

#define GDN_ROWS 32
#define GDN_QPF 8  // query values per thread held for the next token (group * DK <= 8 * threads)

struct GdnParams {
    int B, T, HQ, HKV, DK, DV;
    int gated, delta, g_per_dim, beta_per_head;
    float scale;
    int pad;
};

// Token t+1's k, exp(g), q, v and beta are loaded into registers while token t is computed
// (the recurrence is latency bound: one token after another), then stored to shared memory.
// The wrapper launches at least DK threads per block, so each thread holds at most one k / g.
struct GdnNext {
    float k, e, v, beta;
    float q[GDN_QPF];
};

__device__ __forceinline__ void gdn_load(const float* q, const float* k, const float* v, const float* g, const float* beta, const GdnParams& p,
                                         int b, int h, int t, int tid, int nthreads, int col, bool has_col, GdnNext* x) {
    const int group = p.HQ / p.HKV;
    const i64 bt = (i64)b * p.T + t;
    if (tid < p.DK) {
        x->k = k[(bt * p.HKV + h) * p.DK + tid];
        float gv = 0.0f;
        if (p.gated) gv = p.g_per_dim ? g[(bt * p.HKV + h) * p.DK + tid] : g[bt * p.HKV + h];
        x->e = expf(gv);
    }
#pragma unroll
    for (int r = 0; r < GDN_QPF; ++r) {
        int i = tid + r * nthreads;
        if (i < group * p.DK) x->q[r] = q[(bt * p.HQ + h * group) * p.DK + i];
    }
    x->v = has_col ? v[(bt * p.HKV + h) * p.DV + col] : 0.0f;
    x->beta = p.delta ? (p.beta_per_head ? beta[bt * p.HKV + h] : beta[bt]) : 0.0f;
}

// Shared memory: k [DK], exp(g) [DK], q [group * DK], partial sums [blockDim.y * blockDim.x].
extern "C" __global__ void lt2_gdn_f32(const float* q, const float* k, const float* v, const float* state_in, const float* g,
                                       const float* beta, float* o, float* state_out, GdnParams p) {
    extern __shared__ float sm[];
    const int group = p.HQ / p.HKV;
    float* ks = sm;
    float* es = ks + p.DK;
    float* qs = es + p.DK;
    float* red = qs + group * p.DK;
    const int b = blockIdx.x / p.HKV, h = blockIdx.x % p.HKV;
    const int tx = threadIdx.x, ty = threadIdx.y, nx = blockDim.x, ny = blockDim.y;
    const int tid = ty * nx + tx, nthreads = nx * ny;
    const int col = blockIdx.y * nx + tx;
    const bool has_col = col < p.DV;
    const i64 sbase = ((i64)(b * p.HKV + h) * p.DK) * p.DV;

    float s[GDN_ROWS];
#pragma unroll
    for (int ii = 0; ii < GDN_ROWS; ++ii) {
        int row = ty * GDN_ROWS + ii;
        s[ii] = (has_col && row < p.DK && state_in) ? state_in[sbase + (i64)row * p.DV + col] : 0.0f;
    }

    GdnNext nx_;
    if (p.T > 0) gdn_load(q, k, v, g, beta, p, b, h, 0, tid, nthreads, col, has_col, &nx_);
    for (int t = 0; t < p.T; ++t) {
        const i64 bt = (i64)b * p.T + t;
        __syncthreads();  // the previous token's readers of ks / es / qs are done
        if (tid < p.DK) {
            ks[tid] = nx_.k;
            es[tid] = nx_.e;
        }
#pragma unroll
        for (int r = 0; r < GDN_QPF; ++r) {
            int i = tid + r * nthreads;
            if (i < group * p.DK) qs[i] = nx_.q[r];
        }
        const float vj = nx_.v, bt_beta = nx_.beta;
        __syncthreads();
        if (t + 1 < p.T) gdn_load(q, k, v, g, beta, p, b, h, t + 1, tid, nthreads, col, has_col, &nx_);

        if (p.gated) {
#pragma unroll
            for (int ii = 0; ii < GDN_ROWS; ++ii) {
                int row = ty * GDN_ROWS + ii;
                if (row < p.DK) s[ii] *= es[row];
            }
        }
        float u = vj;
        if (p.delta) {
            float part = 0.0f;
#pragma unroll
            for (int ii = 0; ii < GDN_ROWS; ++ii) {
                int row = ty * GDN_ROWS + ii;
                if (row < p.DK) part += s[ii] * ks[row];
            }
            red[ty * nx + tx] = part;
            __syncthreads();
            float sk = 0.0f;
            for (int r = 0; r < ny; ++r) sk += red[r * nx + tx];
            u = bt_beta * (vj - sk);
            __syncthreads();  // red is reused below
        }
#pragma unroll
        for (int ii = 0; ii < GDN_ROWS; ++ii) {
            int row = ty * GDN_ROWS + ii;
            if (row < p.DK) s[ii] += ks[row] * u;
        }
        for (int hq = 0; hq < group; ++hq) {
            float part = 0.0f;
#pragma unroll
            for (int ii = 0; ii < GDN_ROWS; ++ii) {
                int row = ty * GDN_ROWS + ii;
                if (row < p.DK) part += s[ii] * qs[hq * p.DK + row];
            }
            red[ty * nx + tx] = part;
            __syncthreads();
            if (ty == 0 && has_col) {
                float acc = 0.0f;
                for (int r = 0; r < ny; ++r) acc += red[r * nx + tx];
                o[(bt * p.HQ + h * group + hq) * p.DV + col] = p.scale * acc;
            }
            __syncthreads();
        }
    }
#pragma unroll
    for (int ii = 0; ii < GDN_ROWS; ++ii) {
        int row = ty * GDN_ROWS + ii;
        if (has_col && row < p.DK) state_out[sbase + (i64)row * p.DV + col] = s[ii];
    }
}
