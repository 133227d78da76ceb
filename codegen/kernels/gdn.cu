// Linear attention with a matrix state (LinearAttention-27: gated delta rule and its special
// cases), fp32 state. Semantics: runtime/src/cpu/gdn.rs. Per kv head and token: S = exp(g) S
// (row-wise); u = beta (v - S^T k) (delta rules) or v; S += k u^T; each query head of the group:
// o = scale * S^T q. Two implementations: the token recurrence (lt2_gdn_f32, below: decode,
// short inputs, per-key-dim decay) and the chunked form (lt2_gdn_chunk_*, further down: prefill).
// runtime/src/cuda/gdn.rs picks one.
//
// The recurrence:
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

// ---------------------------------------------------------------------------------------------
// The chunked form (prefill): the same recurrence for per-head decay, computed chunk by chunk
// (GDN_C tokens) in the WY / UT representation of flash-linear-attention's
// chunk_gated_delta_rule. Per (batch, kv head) and chunk of L tokens, with G the cumulative sum
// of the log-decay within the chunk (0 without gating), beta = 1 and A = 0 without the delta rule,
// Gamma[t][s] = exp(G_t - G_s), and S the state at the start of the chunk:
//   A = strictly-lower(diag(beta) (K K^T ⊙ Gamma));  T = (I + A)^-1 diag(beta)
//   W = T (K ⊙ exp(G));  U = T V;  U' = U - W S
//   O = scale ((Q ⊙ exp(G)) S + ((Q K^T) ⊙ Gamma ⊙ causal) U')
//   S = exp(G_last) S + (K ⊙ exp(G_last - G))^T U'
// Every decay factor is exp of a difference of cumsums with s <= t (at most 1), never a ratio.
// Three kernels: prep (parallel over chunks: G, W, U, and the intra-chunk scores P per query
// head), state (sequential over chunks per (batch, kv head, column tile): U' and the state at
// the start of every chunk), out (parallel over chunks: O). fp32 throughout, CUDA cores.
//
// Scratch layouts (the launch wrapper allocates them): gc [B,Hkv,T]; w [B,Hkv,T,K] (delta rules);
// u [B,Hkv,T,V] (U, overwritten with U' by the state kernel); pm [B,Hq,T,GDN_C] (P, zero above the
// diagonal); hs [B,Hkv,NC,K,V] (the state at the start of each chunk).
//
// Shared-memory tiles are row-major with 16-byte aligned rows, read as float4 / float2; a row of
// n values is padded with zeros to gdn_r4(n) (the products run over whole float4s) and stored with
// stride gdn_stride(n), an odd number of float4s, so that float4 reads of up to 8 rows at a time
// hit distinct banks. runtime/src/cuda/gdn.rs mirrors these sizes.

#define GDN_C 64       // chunk length
#define GDN_CS 68      // stride of GDN_C-wide tiles (gdn_stride(GDN_C))
#define GDN_SCOLS 32   // state kernel: state columns per block (2 per thread)
#define GDN_SROWS 8    // state kernel: state rows per thread, ty + 16 r (K <= 128)
#define GDN_OT 64      // out kernel: output columns per block (4 per thread)

__device__ __forceinline__ int gdn_r4(int n) { return (n + 3) & ~3; }
__device__ __forceinline__ int gdn_stride(int n) { return (gdn_r4(n) / 4) % 2 ? gdn_r4(n) : gdn_r4(n) + 4; }
__device__ __forceinline__ float gdn_at(const float4& v, int q) { return q == 0 ? v.x : q == 1 ? v.y : q == 2 ? v.z : v.w; }

// A 4-byte asynchronous copy global -> shared (cp.async, sm_80 on; a plain copy before), zero
// where !ok (src is then not read). Complete for this thread after gdn_cp_wait(); other threads
// see it after a __syncthreads() that follows.
__device__ __forceinline__ void gdn_cp(float* dst, const float* src, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
#else
    *dst = ok ? *src : 0.0f;
#endif
}
// The same for 16 bytes (dst and src 16-byte aligned).
__device__ __forceinline__ void gdn_cp16(float* dst, const float* src, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
#else
    for (int j = 0; j < 4; ++j) dst[j] = ok ? src[j] : 0.0f;
#endif
}
__device__ __forceinline__ void gdn_cp_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void gdn_cp_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
#endif
}

// Starts copying rows x cols values to dst (row stride dp): row r from src + r * ss, zero where
// r >= nrows or c >= ncols. A warp per row, lanes over columns (coalesced).
__device__ __forceinline__ void gdn_tile_copy(float* dst, int dp, const float* src, i64 ss, int rows, int cols, int nrows, int ncols, int tid,
                                              int nt) {
    for (int r = tid >> 5; r < rows; r += nt >> 5)
        for (int c = tid & 31; c < cols; c += 32) {
            const bool ok = r < nrows && c < ncols;
            gdn_cp(dst + r * dp + c, ok ? src + r * ss + c : src, ok);
        }
}

// gdn_tile_copy in 16-byte pieces where the layout allows (src 16-byte aligned; ss, cols and
// ncols multiples of 4; dst and dp 16-byte aligned, as every tile here is), else in 4-byte ones.
__device__ __forceinline__ void gdn_tile_load(float* dst, int dp, const float* src, i64 ss, int rows, int cols, int nrows, int ncols, int tid,
                                              int nt) {
    if (((u64)src & 15) != 0 || (ss & 3) != 0 || (cols & 3) != 0 || (ncols & 3) != 0) {
        gdn_tile_copy(dst, dp, src, ss, rows, cols, nrows, ncols, tid, nt);
        return;
    }
    const int c4 = cols / 4;
    for (int x = tid; x < rows * c4; x += nt) {
        const int r = x / c4, c = 4 * (x % c4);
        const bool ok = r < nrows && c < ncols;
        gdn_cp16(dst + r * dp + c, ok ? src + r * ss + c : src, ok);
    }
}

// 64 x 64 products on 256 threads (tx, ty = tid % 16, tid / 16), n a multiple of 4, operands
// 16-byte aligned:
//   abt: acc[r][c] += sum_s a[(ty + 16 r) * ap + s] * b[(tx + 16 c) * bp + s]
//   ab:  acc[r][c] += sum_s a[(ty + 16 r) * ap + s] * b[s * bp + 4 tx + c]
__device__ __forceinline__ void gdn_mm_abt(float acc[4][4], const float* a, int ap, const float* b, int bp, int n, int tx, int ty) {
#pragma unroll 2
    for (int s = 0; s < n; s += 4) {
        float4 x[4], y[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) x[r] = *(const float4*)(a + (ty + 16 * r) * ap + s);
#pragma unroll
        for (int c = 0; c < 4; ++c) y[c] = *(const float4*)(b + (tx + 16 * c) * bp + s);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                acc[r][c] += x[r].x * y[c].x;
                acc[r][c] += x[r].y * y[c].y;
                acc[r][c] += x[r].z * y[c].z;
                acc[r][c] += x[r].w * y[c].w;
            }
    }
}
__device__ __forceinline__ void gdn_mm_ab(float acc[4][4], const float* a, int ap, const float* b, int bp, int n, int tx, int ty) {
#pragma unroll 2
    for (int s = 0; s < n; s += 4) {
        float4 x[4];
#pragma unroll
        for (int r = 0; r < 4; ++r) x[r] = *(const float4*)(a + (ty + 16 * r) * ap + s);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
            const float4 y = *(const float4*)(b + (s + q) * bp + 4 * tx);
#pragma unroll
            for (int r = 0; r < 4; ++r) {
                const float xv = gdn_at(x[r], q);
                acc[r][0] += xv * y.x;
                acc[r][1] += xv * y.y;
                acc[r][2] += xv * y.z;
                acc[r][3] += xv * y.w;
            }
        }
    }
}

// Prep: one block of 256 threads per (batch * kv head, chunk). Dynamic shared memory:
// k [GDN_C][KS] (later K ⊙ exp(G)); q [GDN_C][QS] (later T); A [GDN_C][GDN_CS] (later a tile of
// V); G [GDN_C]; beta [GDN_C]; KS = gdn_stride(K), QS = max(KS, GDN_CS).
extern "C" __global__ void __launch_bounds__(256, 3)
    lt2_gdn_chunk_prep_f32(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v, const float* __restrict__ g,
                           const float* __restrict__ beta, float* __restrict__ gc, float* __restrict__ w, float* __restrict__ u,
                           float* __restrict__ pm, GdnParams p) {
    extern __shared__ __align__(16) float sm[];
    const int KQ = gdn_r4(p.DK), KS = gdn_stride(p.DK), QS = max(KS, GDN_CS);
    float* ks = sm;
    float* qs = ks + GDN_C * KS;
    float* am = qs + GDN_C * QS;
    float* gs = am + GDN_C * GDN_CS;
    float* bs = gs + GDN_C;
    const int group = p.HQ / p.HKV;
    const int b = blockIdx.x / p.HKV, h = blockIdx.x % p.HKV;
    const int t0 = blockIdx.y * GDN_C, L = min(GDN_C, p.T - t0);
    const int tid = threadIdx.x, nt = blockDim.x;
    const int tx = tid % 16, ty = tid / 16;
    const i64 bh = (i64)b * p.HKV + h;
    const i64 row0 = (i64)b * p.T + t0;  // the chunk's first token in [B, T]

    gdn_tile_load(ks, KS, k + (row0 * p.HKV + h) * p.DK, (i64)p.HKV * p.DK, GDN_C, KQ, L, p.DK, tid, nt);
    gdn_cp_commit();
    if (tid < GDN_C) {
        float bv = tid < L ? 1.0f : 0.0f;
        if (p.delta && tid < L) bv = p.beta_per_head ? beta[(row0 + tid) * p.HKV + h] : beta[row0 + tid];
        bs[tid] = bv;
    }
    if (tid == 0) {
        // The cumulative log-decay, summed in token order.
        float acc = 0.0f;
        for (int t = 0; t < GDN_C; ++t) {
            if (p.gated && t < L) acc += g[(row0 + t) * p.HKV + h];
            gs[t] = acc;
        }
    }
    gdn_cp_wait();
    __syncthreads();
    if (tid < L) gc[bh * p.T + t0 + tid] = gs[tid];

    // A = strictly-lower(diag(beta) (K K^T ⊙ Gamma)) (delta rules).
    if (p.delta) {
        float acc[4][4] = {};
        gdn_mm_abt(acc, ks, KS, ks, KS, KQ, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                int t = ty + 16 * r, s = tx + 16 * c;
                am[t * GDN_CS + s] = s < t ? bs[t] * acc[r][c] * expf(gs[t] - gs[s]) : 0.0f;
            }
    }

    // P for each query head of the group: P[t][s] = (q_t . k_s) exp(G_t - G_s) for s <= t.
    for (int j = 0; j < group; ++j) {
        const int hq = h * group + j;
        __syncthreads();  // the previous head's readers of qs are done
        gdn_tile_load(qs, QS, q + (row0 * p.HQ + hq) * p.DK, (i64)p.HQ * p.DK, GDN_C, KQ, L, p.DK, tid, nt);
        gdn_cp_commit();
        gdn_cp_wait();
        __syncthreads();
        float acc[4][4] = {};
        gdn_mm_abt(acc, qs, QS, ks, KS, KQ, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int t = ty + 16 * r;
            if (t >= L) continue;
            float* prow = pm + (((i64)b * p.HQ + hq) * p.T + t0 + t) * GDN_C;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                int s = tx + 16 * c;
                prow[s] = s <= t ? acc[r][c] * expf(gs[t] - gs[s]) : 0.0f;
            }
        }
    }

    if (!p.delta) {
        // U = V.
#pragma unroll 4
        for (int x = tid; x < L * p.DV; x += nt) {
            int t = x / p.DV, jv = x % p.DV;
            u[(bh * p.T + t0 + t) * p.DV + jv] = v[((row0 + t) * p.HKV + h) * p.DV + jv];
        }
        return;
    }
    __syncthreads();  // A is complete; the readers of q and of the raw k are done

    // T = (I + A)^-1 diag(beta) into qs by forward substitution, one column per thread (the
    // columns are independent); meanwhile the other threads scale k rows to K ⊙ exp(G).
    if (tid < GDN_C) {
        const int jc = tid;
        for (int t = 0; t <= jc; ++t) qs[t * QS + jc] = t == jc ? 1.0f : 0.0f;
        for (int t = jc + 1; t < GDN_C; ++t) {
            const float* arow = am + t * GDN_CS;
            float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
            int s = jc;
            for (; s + 4 <= t; s += 4) {
                a0 += arow[s] * qs[s * QS + jc];
                a1 += arow[s + 1] * qs[(s + 1) * QS + jc];
                a2 += arow[s + 2] * qs[(s + 2) * QS + jc];
                a3 += arow[s + 3] * qs[(s + 3) * QS + jc];
            }
            for (; s < t; ++s) a0 += arow[s] * qs[s * QS + jc];
            qs[t * QS + jc] = -((a0 + a1) + (a2 + a3));
        }
        const float bj = bs[jc];
        for (int t = jc; t < GDN_C; ++t) qs[t * QS + jc] *= bj;
    } else {
        for (int x = tid - GDN_C; x < GDN_C * p.DK; x += nt - GDN_C) {
            int t = x / p.DK, i = x % p.DK;
            ks[t * KS + i] *= expf(gs[t]);
        }
    }
    __syncthreads();

    // W = T (K ⊙ exp(G)), 64 columns at a time; columns 4 tx + c past KQ read the next row or
    // past it (inside shared memory) and are not stored.
    for (int i0 = 0; i0 < KQ; i0 += GDN_C) {
        float acc[4][4] = {};
        if (i0 + 4 * tx < KQ) gdn_mm_ab(acc, qs, QS, ks + i0, KS, GDN_C, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int t = ty + 16 * r;
            if (t >= L) continue;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                int i = i0 + 4 * tx + c;
                if (i < p.DK) w[(bh * p.T + t0 + t) * p.DK + i] = acc[r][c];
            }
        }
    }
    // U = T V, a tile of 64 columns of V at a time in am.
    for (int j0 = 0; j0 < p.DV; j0 += GDN_C) {
        __syncthreads();  // the readers of am (the solve, the previous tile) are done
        gdn_tile_load(am, GDN_CS, v + (row0 * p.HKV + h) * p.DV + j0, (i64)p.HKV * p.DV, GDN_C, GDN_C, L, p.DV - j0, tid, nt);
        gdn_cp_commit();
        gdn_cp_wait();
        __syncthreads();
        float acc[4][4] = {};
        gdn_mm_ab(acc, qs, QS, am, GDN_CS, GDN_C, tx, ty);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int t = ty + 16 * r;
            if (t >= L) continue;
#pragma unroll
            for (int c = 0; c < 4; ++c) {
                int jv = j0 + 4 * tx + c;
                if (jv < p.DV) u[(bh * p.T + t0 + t) * p.DV + jv] = acc[r][c];
            }
        }
    }
}

// State: one block of 16 x 16 threads per (batch * kv head, tile of GDN_SCOLS columns), the chunks
// one after another. Thread (tx, ty) holds state columns 2 tx, 2 tx + 1 of the tile, rows
// ty + 16 r, in registers. The next chunk's W, k, U and G are copied in (cp.async) while the
// current one is computed. Dynamic shared memory, two buffers of: W [GDN_C][KS]; k transposed
// [KR][GDN_CS] (KR = K rounded up to 16); U [GDN_C][GDN_SCOLS]; G [GDN_C]; then S [KQ][GDN_SCOLS]
// and exp(G_last - G) [GDN_C].
extern "C" __global__ void __launch_bounds__(256)
    lt2_gdn_chunk_state_f32(const float* __restrict__ k, const float* __restrict__ state_in, const float* __restrict__ gc,
                            const float* __restrict__ w, float* __restrict__ u, float* __restrict__ hs, float* __restrict__ state_out,
                            GdnParams p) {
    extern __shared__ __align__(16) float sm[];
    const int KQ = gdn_r4(p.DK), KS = gdn_stride(p.DK), KR = (p.DK + 15) & ~15;
    const int buf = GDN_C * KS + KR * GDN_CS + GDN_C * GDN_SCOLS + GDN_C;
    float* ss = sm + 2 * buf;
    float* es = ss + KQ * GDN_SCOLS;
    const int b = blockIdx.x / p.HKV, h = blockIdx.x % p.HKV;
    const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 16 + tx, nt = 256;
    const int c0 = blockIdx.y * GDN_SCOLS;
    const i64 bh = (i64)b * p.HKV + h;
    const int NC = (p.T + GDN_C - 1) / GDN_C;

    // Starts the copies of chunk c into buffer x.
    auto issue = [&](int c, float* x) {
        const int t0 = c * GDN_C, L = min(GDN_C, p.T - t0);
        float* ws = x;
        float* kt = ws + GDN_C * KS;
        float* us = kt + KR * GDN_CS;
        float* gcs = us + GDN_C * GDN_SCOLS;
        if (p.delta) gdn_tile_load(ws, KS, w + (bh * p.T + t0) * p.DK, p.DK, GDN_C, KQ, L, p.DK, tid, nt);
        const float* kb = k + (((i64)b * p.T + t0) * p.HKV + h) * p.DK;
        for (int t = tid >> 5; t < GDN_C; t += nt >> 5)
            for (int i = tid & 31; i < KR; i += 32) {
                const bool ok = t < L && i < p.DK;
                gdn_cp(kt + i * GDN_CS + t, ok ? kb + (i64)t * p.HKV * p.DK + i : kb, ok);
            }
        gdn_tile_load(us, GDN_SCOLS, u + (bh * p.T + t0) * p.DV + c0, p.DV, GDN_C, GDN_SCOLS, L, p.DV - c0, tid, nt);
        if (tid < GDN_C) gdn_cp(gcs + tid, tid < L ? gc + bh * p.T + t0 + tid : gc, tid < L);
        gdn_cp_commit();
    };

    float s[GDN_SROWS][2];
#pragma unroll
    for (int r = 0; r < GDN_SROWS; ++r)
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
            const int i = ty + 16 * r, col = c0 + 2 * tx + cc;
            s[r][cc] = (col < p.DV && i < p.DK && state_in) ? state_in[(bh * p.DK + i) * p.DV + col] : 0.0f;
        }
    issue(0, sm);
    for (int c = 0; c < NC; ++c) {
        const int t0 = c * GDN_C, L = min(GDN_C, p.T - t0);
        float* ws = sm + (c & 1) * buf;
        float* kt = ws + GDN_C * KS;
        float* us = kt + KR * GDN_CS;
        float* gcs = us + GDN_C * GDN_SCOLS;
        gdn_cp_wait();
        __syncthreads();  // chunk c is in; the previous chunk's readers of shared memory are done
        if (c + 1 < NC) issue(c + 1, sm + ((c + 1) & 1) * buf);
        const float glast = gcs[L - 1];
        float* hrow = hs + ((bh * NC + c) * p.DK) * p.DV;
#pragma unroll
        for (int r = 0; r < GDN_SROWS; ++r) {
            const int i = ty + 16 * r;
            if (i < KQ) *(float2*)(ss + i * GDN_SCOLS + 2 * tx) = i < p.DK ? make_float2(s[r][0], s[r][1]) : make_float2(0.0f, 0.0f);
#pragma unroll
            for (int cc = 0; cc < 2; ++cc) {
                const int col = c0 + 2 * tx + cc;
                if (i < p.DK && col < p.DV) hrow[(i64)i * p.DV + col] = s[r][cc];
            }
        }
        if (tid < GDN_C) es[tid] = tid < L ? expf(glast - gcs[tid]) : 0.0f;
        __syncthreads();

        // U' = U - W S for rows ty + 16 m, columns 2 tx + cc (each element of us read and
        // written by its one thread); U' to global memory, U' ⊙ exp(G_last - G) to us.
        float up[4][2];
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const float2 x = *(const float2*)(us + (ty + 16 * m) * GDN_SCOLS + 2 * tx);
            up[m][0] = x.x;
            up[m][1] = x.y;
        }
        if (p.delta) {
            float acc[4][2] = {};
#pragma unroll 2
            for (int i = 0; i < KQ; i += 4) {
                float4 wv[4];
#pragma unroll
                for (int m = 0; m < 4; ++m) wv[m] = *(const float4*)(ws + (ty + 16 * m) * KS + i);
#pragma unroll
                for (int qq = 0; qq < 4; ++qq) {
                    const float2 sv = *(const float2*)(ss + (i + qq) * GDN_SCOLS + 2 * tx);
#pragma unroll
                    for (int m = 0; m < 4; ++m) {
                        const float x = gdn_at(wv[m], qq);
                        acc[m][0] += x * sv.x;
                        acc[m][1] += x * sv.y;
                    }
                }
            }
#pragma unroll
            for (int m = 0; m < 4; ++m) {
                const int t = ty + 16 * m;
#pragma unroll
                for (int cc = 0; cc < 2; ++cc) {
                    up[m][cc] -= acc[m][cc];
                    const int col = c0 + 2 * tx + cc;
                    if (t < L && col < p.DV) u[(bh * p.T + t0 + t) * p.DV + col] = up[m][cc];
                }
            }
        }
#pragma unroll
        for (int m = 0; m < 4; ++m) {
            const float e = es[ty + 16 * m];
            *(float2*)(us + (ty + 16 * m) * GDN_SCOLS + 2 * tx) = make_float2(up[m][0] * e, up[m][1] * e);
        }
        __syncthreads();

        // S = exp(G_last) S + (K ⊙ exp(G_last - G))^T U' (rows of kt past K are never stored).
        float acc[GDN_SROWS][2] = {};
#pragma unroll 2
        for (int t = 0; t < L; t += 4) {
            float4 kv[GDN_SROWS];
#pragma unroll
            for (int r = 0; r < GDN_SROWS; ++r)
                if (16 * r < p.DK) kv[r] = *(const float4*)(kt + (ty + 16 * r) * GDN_CS + t);
#pragma unroll
            for (int qq = 0; qq < 4; ++qq) {
                const float2 uv = *(const float2*)(us + (t + qq) * GDN_SCOLS + 2 * tx);
#pragma unroll
                for (int r = 0; r < GDN_SROWS; ++r)
                    if (16 * r < p.DK) {
                        const float x = gdn_at(kv[r], qq);
                        acc[r][0] += x * uv.x;
                        acc[r][1] += x * uv.y;
                    }
            }
        }
        const float el = expf(glast);
#pragma unroll
        for (int r = 0; r < GDN_SROWS; ++r) {
            s[r][0] = el * s[r][0] + acc[r][0];
            s[r][1] = el * s[r][1] + acc[r][1];
        }
    }
#pragma unroll
    for (int r = 0; r < GDN_SROWS; ++r)
#pragma unroll
        for (int cc = 0; cc < 2; ++cc) {
            const int i = ty + 16 * r, col = c0 + 2 * tx + cc;
            if (col < p.DV && i < p.DK) state_out[(bh * p.DK + i) * p.DV + col] = s[r][cc];
        }
}

// Out: one block of 256 threads per (tile of GDN_OT columns, batch * query head, chunk);
// O = scale (diag(exp(G)) (Q S) + P U'). Thread (tx, ty) computes rows ty + 16 r, columns
// 4 tx + c. Dynamic shared memory: q [GDN_C][KS] and S [KQ][GDN_CS], then in the same space
// P [GDN_C][GDN_CS] and U' [GDN_C][GDN_CS]; exp(G) [GDN_C].
extern "C" __global__ void __launch_bounds__(256)
    lt2_gdn_chunk_out_f32(const float* __restrict__ q, const float* __restrict__ gc, const float* __restrict__ u,
                          const float* __restrict__ hs, const float* __restrict__ pm, float* __restrict__ o, GdnParams p) {
    extern __shared__ __align__(16) float sm[];
    const int KQ = gdn_r4(p.DK), KS = gdn_stride(p.DK);
    float* qs = sm;
    float* sts = qs + GDN_C * KS;
    float* ps = sm;
    float* us = ps + GDN_C * GDN_CS;
    float* ge = sm + max(GDN_C * KS + KQ * GDN_CS, 2 * GDN_C * GDN_CS);
    const int group = p.HQ / p.HKV;
    const int j0 = blockIdx.x * GDN_OT;
    const int b = blockIdx.y / p.HQ, hq = blockIdx.y % p.HQ, h = hq / group;
    const int c = blockIdx.z, t0 = c * GDN_C, L = min(GDN_C, p.T - t0);
    const int tid = threadIdx.x, nt = blockDim.x, tx = tid % 16, ty = tid / 16;
    const i64 bh = (i64)b * p.HKV + h;
    const int NC = (p.T + GDN_C - 1) / GDN_C;

    gdn_tile_load(qs, KS, q + (((i64)b * p.T + t0) * p.HQ + hq) * p.DK, (i64)p.HQ * p.DK, GDN_C, KQ, L, p.DK, tid, nt);
    gdn_tile_load(sts, GDN_CS, hs + ((bh * NC + c) * p.DK) * p.DV + j0, p.DV, KQ, GDN_OT, p.DK, p.DV - j0, tid, nt);
    gdn_cp_commit();
    if (tid < GDN_C) ge[tid] = tid < L ? expf(gc[bh * p.T + t0 + tid]) : 0.0f;
    gdn_cp_wait();
    __syncthreads();
    float acc[4][4] = {};
    gdn_mm_ab(acc, qs, KS, sts, GDN_CS, KQ, tx, ty);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const float e = ge[ty + 16 * r];
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) acc[r][cc] *= e;
    }
    __syncthreads();  // the readers of q and S are done
    gdn_tile_load(ps, GDN_CS, pm + (((i64)b * p.HQ + hq) * p.T + t0) * GDN_C, GDN_C, GDN_C, GDN_C, L, GDN_C, tid, nt);
    gdn_tile_load(us, GDN_CS, u + (bh * p.T + t0) * p.DV + j0, p.DV, GDN_C, GDN_OT, L, p.DV - j0, tid, nt);
    gdn_cp_commit();
    gdn_cp_wait();
    __syncthreads();
    gdn_mm_ab(acc, ps, GDN_CS, us, GDN_CS, GDN_C, tx, ty);
#pragma unroll
    for (int r = 0; r < 4; ++r) {
        const int t = ty + 16 * r;
        if (t >= L) continue;
        float* orow = o + (((i64)b * p.T + t0 + t) * p.HQ + hq) * p.DV;
#pragma unroll
        for (int cc = 0; cc < 4; ++cc) {
            const int j = j0 + 4 * tx + cc;
            if (j < p.DV) orow[j] = p.scale * acc[r][cc];
        }
    }
}
