// DSA-style sparse attention (the lt2 ONNX domain). Semantics: runtime/src/cpu/sparse.rs.
#include "common.cuh"

// Dynamic shared memory of a kernel (a macro so that a host-side harness can supply it).
#ifndef LT2_DYN_SMEM
#define LT2_DYN_SMEM(T, name) extern __shared__ __align__(16) T name[]
#endif

// An asynchronous copy of N (4 or 16) bytes global -> shared (cp.async, sm_80 on; a plain copy
// before), zero where !ok (src is then not read). Complete for this thread after spa_wait<n>()
// leaves at most n groups pending; other threads see it after a __syncthreads() that follows.
template <int N>
__device__ __forceinline__ void spa_cp(float* dst, const float* src, bool ok) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    if constexpr (N == 16) {
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 16 : 0) : "memory");
    } else {
        asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(d), "l"(src), "r"(ok ? 4 : 0) : "memory");
    }
#else
    for (int j = 0; j < N / 4; ++j) dst[j] = ok ? src[j] : 0.0f;
#endif
}
__device__ __forceinline__ void spa_commit() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
template <int PENDING>
__device__ __forceinline__ void spa_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(PENDING) : "memory");
#endif
}

// ---------------------------------------------------------------------------------------------
// LightningIndexer scores [B, Tc, S] for the queries t0 .. t0+Tc of q [B, T, H*D] against
// k [B, S, D]: query t (position t + S - T) scores keys s <= its position (later keys are not
// written): mean_dot = mean_h(q[t,h] . k[s]); relu_weighted = sum_h w[t,h] relu(q[t,h] . k[s]).
// Bit for bit the CPU's arithmetic: each dot product sums its products in index order, the
// heads are added in order, no fused multiply-adds (the top-k that follows compares exactly).
// A block scores a tile of 64 queries x 64 keys (4 x 4 per thread), d in chunks of 32.
#define IDX_TILE 64
#define IDX_DC 32

extern "C" __global__ void __launch_bounds__(256, 2) lt2_indexer_scores_f32(const float* q, const float* k, const float* w, float* scores, i64 B, i64 T,
                                                                          i64 S, i64 H, i64 D, i64 t0, i64 Tc) {
    __shared__ float qs[IDX_DC][IDX_TILE + 1];
    __shared__ float ks[IDX_DC][IDX_TILE + 1];
    const int tid = threadIdx.x, tx = tid & 15, ty = tid >> 4;
    const i64 b = blockIdx.z, r0 = (i64)blockIdx.y * IDX_TILE, s0 = (i64)blockIdx.x * IDX_TILE;
    const i64 rlast = min(r0 + IDX_TILE, Tc) - 1;
    if (s0 > t0 + rlast + S - T) return;  // every key of the tile is after every query
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;
    for (i64 h = 0; h < H; ++h) {
        float dot[4][4];
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) dot[i][j] = 0.0f;
        for (i64 d0 = 0; d0 < D; d0 += IDX_DC) {
            for (int e = tid; e < IDX_TILE * IDX_DC; e += 256) {
                int r = e / IDX_DC, c = e % IDX_DC;
                i64 d = d0 + c, tr = r0 + r, s = s0 + r;
                qs[c][r] = (tr < Tc && d < D) ? q[((b * T + t0 + tr) * H + h) * D + d] : 0.0f;
                ks[c][r] = (s < S && d < D) ? k[(b * S + s) * D + d] : 0.0f;
            }
            __syncthreads();
            const int dn = (int)min((i64)IDX_DC, D - d0);
            for (int c = 0; c < dn; ++c) {
                float a[4], kk[4];
#pragma unroll
                for (int i = 0; i < 4; ++i) a[i] = qs[c][ty + 16 * i];
#pragma unroll
                for (int j = 0; j < 4; ++j) kk[j] = ks[c][tx + 16 * j];
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) dot[i][j] = __fadd_rn(dot[i][j], __fmul_rn(a[i], kk[j]));
            }
            __syncthreads();
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            i64 tr = r0 + ty + 16 * i;
            float wt = (w && tr < Tc) ? w[(b * T + t0 + tr) * H + h] : 0.0f;
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[i][j] = w ? __fadd_rn(acc[i][j], __fmul_rn(wt, fmaxf(dot[i][j], 0.0f))) : __fadd_rn(acc[i][j], dot[i][j]);
        }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        i64 tr = r0 + ty + 16 * i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            i64 s = s0 + tx + 16 * j;
            if (tr < Tc && s < S && s <= t0 + tr + S - T) scores[(b * Tc + tr) * S + s] = w ? acc[i][j] : __fdiv_rn(acc[i][j], (float)H);
        }
    }
}

// The same scores for a few queries (decode): a block per (64 keys, query); the key tile and the
// query's heads sit in shared memory; thread (j, hq) takes key j's dot products with heads hq,
// hq + 4, ..., then thread j adds its key's heads in order (the same arithmetic as above).
extern "C" __global__ void __launch_bounds__(256) lt2_indexer_scores_rows_f32(const float* q, const float* k, const float* w, float* scores, i64 B, i64 T,
                                                                               i64 S, i64 H, i64 D, i64 t0, i64 Tc) {
    LT2_DYN_SMEM(float, ir_smem);
    const int tid = threadIdx.x, j = tid & 63, hq = tid >> 6;
    const i64 b = blockIdx.z, tr = blockIdx.y, t = t0 + tr, s0 = (i64)blockIdx.x * IDX_TILE;
    const i64 pos = t + S - T;
    if (s0 > pos) return;  // every key of the tile is after the query
    const i64 kst = D + 1;
    float* ks = ir_smem;              // [64][D + 1]
    float* qs = ks + IDX_TILE * kst;  // [H][D]
    float* dots = qs + H * D;         // [H][64]
    const i64 nk = min((i64)IDX_TILE, S - s0);
    for (i64 e = tid; e < IDX_TILE * D; e += 256) {
        i64 r = e / D, d = e % D;
        ks[r * kst + d] = r < nk ? k[(b * S + s0 + r) * D + d] : 0.0f;
    }
    const float* qrow = q + (b * T + t) * H * D;
    for (i64 e = tid; e < H * D; e += 256) qs[e] = qrow[e];
    __syncthreads();
    for (i64 h = hq; h < H; h += 4) {
        const float* qh = qs + h * D;
        const float* kj = ks + j * kst;
        float dot = 0.0f;
        for (i64 d = 0; d < D; ++d) dot = __fadd_rn(dot, __fmul_rn(qh[d], kj[d]));
        dots[h * IDX_TILE + j] = dot;
    }
    __syncthreads();
    const i64 s = s0 + j;
    if (tid < IDX_TILE && s < S && s <= pos) {
        float acc = 0.0f;
        for (i64 h = 0; h < H; ++h) {
            float dot = dots[h * IDX_TILE + j];
            acc = w ? __fadd_rn(acc, __fmul_rn(w[(b * T + t) * H + h], fmaxf(dot, 0.0f))) : __fadd_rn(acc, dot);
        }
        scores[(b * Tc + tr) * S + s] = w ? acc : __fdiv_rn(acc, (float)H);
    }
}

// ---------------------------------------------------------------------------------------------
// Top-k positions per query from the scores above: highest score first, ties to the lower
// position; -1 past the pos + 1 scored positions. A position's sort key is (score order, s):
// the upper 32 bits order scores descending (-0 as +0, NaN last), the lower hold s, so keys are
// unique and ascending keys are the wanted order. One block per query row: where more than K
// positions are scored, a radix select (8 bits a pass, from the top) finds the K-th smallest key
// and the keys up to it are gathered; the at most K keys are then sorted in shared memory
// (bitonic; the buffer holds the next power of two >= min(S, K) keys).
#define TOPK_THREADS 512

__device__ __forceinline__ u64 topk_key(float f, i64 s) {
    u32 u = __float_as_uint(f);
    if ((u & 0x7fffffffu) == 0u) u = 0u;
    u32 asc = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
    u32 desc = (f != f) ? 0xffffffffu : ~asc;
    return ((u64)desc << 32) | (u64)(u32)s;
}

// Keys query t of T new rows sees: S - T + t + 1 (S keys, the last T new), or over a
// fixed-capacity cache (S rows, `past` read on the device: a recorded decode step) past + t + 1.
__device__ __forceinline__ i64 topk_keys(i64 t, i64 T, i64 S, const i64* past) {
    return past ? min(S, past[0] + t + 1) : t + S - T + 1;
}

extern "C" __global__ void __launch_bounds__(TOPK_THREADS) lt2_indexer_topk_f32(const float* scores, i64* out, i64 T, i64 S, i64 K, i64 t0, i64 Tc, const i64* past) {
    LT2_DYN_SMEM(u64, tk_buf);
    __shared__ u32 hist[256];
    __shared__ u64 sh_prefix, sh_mask;
    __shared__ u32 sh_need, sh_done, sh_count;
    const int tid = threadIdx.x;
    const i64 row = blockIdx.x, b = row / Tc, t = t0 + row % Tc;
    const i64 cnt = topk_keys(t, T, S, past);
    const float* sc = scores + row * S;
    i64* o = out + (b * T + t) * K;
    const i64 m = min(cnt, K);
    if (cnt > K) {
        if (tid == 0) {
            sh_prefix = 0;
            sh_mask = 0;
            sh_need = (u32)K;
            sh_done = 0;
            sh_count = 0;
        }
        for (int shift = 56; shift >= 0; shift -= 8) {
            for (int i = tid; i < 256; i += TOPK_THREADS) hist[i] = 0;
            __syncthreads();
            const u64 prefix = sh_prefix, mask = sh_mask;
            for (i64 s = tid; s < cnt; s += TOPK_THREADS) {
                u64 key = topk_key(sc[s], s);
                if ((key & mask) == prefix) atomicAdd(&hist[(u32)(key >> shift) & 255u], 1u);
            }
            __syncthreads();
            if (tid < 32) {
                // The bin holding the need-th smallest key among those matching the prefix.
                const u32 need = sh_need;
                u32 hv[8], local = 0;
#pragma unroll
                for (int i = 0; i < 8; ++i) {
                    hv[i] = hist[tid * 8 + i];
                    local += hv[i];
                }
                u32 inc = local;
                for (int off = 1; off < 32; off <<= 1) {
                    u32 y = __shfl_up_sync(0xffffffffu, inc, off);
                    if (tid >= off) inc += y;
                }
                u32 before = inc - local;
                __syncwarp();  // every lane has read sh_need before one of them rewrites it
                if (before < need && need <= inc) {
                    int bin = tid * 8 + 7;
                    u32 c = before, inbin = hv[7];
                    for (int i = 0; i < 8; ++i) {
                        if (c + hv[i] >= need) {
                            bin = tid * 8 + i;
                            inbin = hv[i];
                            break;
                        }
                        c += hv[i];
                    }
                    sh_prefix = prefix | ((u64)bin << shift);
                    sh_mask = mask | (0xffull << shift);
                    sh_need = need - c;
                    sh_done = inbin == need - c;  // every key of the bin is taken
                }
            }
            __syncthreads();
            if (sh_done) break;
        }
        // Exactly K keys are <= thr (keys are unique).
        const u64 thr = sh_prefix | ~sh_mask;
        for (i64 s = tid; s < cnt; s += TOPK_THREADS) {
            u64 key = topk_key(sc[s], s);
            if (key <= thr) tk_buf[atomicAdd(&sh_count, 1u)] = key;
        }
    } else {
        for (i64 s = tid; s < cnt; s += TOPK_THREADS) tk_buf[s] = topk_key(sc[s], s);
    }
    u32 n = 1;
    while (n < (u32)m) n <<= 1;
    for (u32 i = (u32)m + tid; i < n; i += TOPK_THREADS) tk_buf[i] = ~0ull;
    __syncthreads();
    for (u32 kk = 2; kk <= n; kk <<= 1) {
        for (u32 j = kk >> 1; j > 0; j >>= 1) {
            for (u32 i = tid; i < n / 2; i += TOPK_THREADS) {
                u32 lo = 2 * i - (i & (j - 1)), hi = lo + j;
                u64 x = tk_buf[lo], y = tk_buf[hi];
                if ((x > y) == ((lo & kk) == 0)) {
                    tk_buf[lo] = y;
                    tk_buf[hi] = x;
                }
            }
            __syncthreads();
        }
    }
    for (i64 r = tid; r < K; r += TOPK_THREADS) o[r] = r < m ? (i64)(u32)tk_buf[r] : -1;
}

// The same by counting each candidate's rank (O(S^2) a query): rows whose min(S, K) keys do not
// fit the sort buffer.
extern "C" __global__ void lt2_indexer_topk_rank_f32(const float* scores, i64* out, i64 T, i64 S, i64 K, i64 t0, i64 Tc, const i64* past) {
    const i64 row = blockIdx.x, b = row / Tc, t = t0 + row % Tc;
    const i64 cnt = topk_keys(t, T, S, past);
    const float* sc = scores + row * S;
    i64* o = out + (b * T + t) * K;
    for (i64 r = threadIdx.x; r < K; r += blockDim.x)
        if (r >= cnt) o[r] = -1;
    for (i64 s = threadIdx.x; s < cnt; s += blockDim.x) {
        u64 key = topk_key(sc[s], s);
        i64 rank = 0;
        for (i64 m = 0; m < cnt && rank < K; ++m) rank += topk_key(sc[m], m) < key;
        if (rank < K) o[rank] = s;
    }
}

// ---------------------------------------------------------------------------------------------
// Sparse attention, tiled: a block takes one query row (b, t), one kv head and up to 16 of its
// query heads (they share the indices and the keys), and a range of the index list (a split;
// decode splits the list over blocks, then lt2_sparse_combine_f32 merges). Per chunk of 64
// indices: scores of 16 heads x 64 keys (q in shared memory, key tiles of 64 dims copied in
// asynchronously, 4 x 4 per thread over a quarter of the dims, then summed), the online softmax
// (a warp per 2 heads), and p . v over value tiles of 16 keys (4 heads x 8 columns a thread).
// Index -1 is skipped, one out of range reported; a row with no valid index gives zeros.
#define SPA_G 16            // query heads per block
#define SPA_NK 64           // index entries per chunk
#define SPA_DC 64           // key dims per key tile
#define SPA_KST 68          // key tile row stride (floats)
#define SPA_VK 16           // keys per value tile
#define SPA_DVC 512         // value columns per launch
#define SPA_BUF 8192        // floats per tile buffer (64 x 68 keys, 16 x 512 values, 4 x 16 x 64 partials)
#define SPA_THREADS 256
#define SPA_MAX_SPLITS 256  // splits of an index list, at most

// The dims (query [B,T,HQ*DK], key [B,S,HKV*DK], value [B,S,HKV*DV], indices [B,T,KK]), the
// value columns of one launch, the scale (both sparse attention kernels).
struct SparseParams {
    i64 B, T, S, HQ, HKV, DK, DV, KK;
    i64 dv0, dvc;  // the value columns of this launch
    float scale;
    int pad;
};

struct SparseTiledParams {
    SparseParams d;
    i64 kps;     // index entries per split (a multiple of SPA_NK)
    int splits;  // 1: write out; else partial results to part
    int hg;      // blocks per kv head (ceil(group / SPA_G))
    int dkp;     // DK rounded up to SPA_DC
    int vec;     // 16-byte copies (DK, DV multiples of 4, aligned bases)
};

// Starts copying stage st of a chunk into buf: key tile st (dims st*64 ..) for st < nkt, else
// value tile st - nkt (keys (st - nkt) * 16 ..); rows of invalid indices and padding are zero.
__device__ __forceinline__ void spa_issue(const SparseTiledParams& p, int st, int nkt, float* buf, const int* sidx, const float* kb, const float* vb, int tid) {
    const i64 kst = p.d.HKV * p.d.DK, vst = p.d.HKV * p.d.DV;
    if (st < nkt) {
        const i64 d0 = (i64)st * SPA_DC;
        if (p.vec) {
            for (int f = tid; f < SPA_NK * SPA_DC / 4; f += SPA_THREADS) {
                int j = f >> 4, c = (f & 15) * 4, s = sidx[j];
                bool ok = s >= 0 && d0 + c < p.d.DK;
                spa_cp<16>(buf + j * SPA_KST + c, ok ? kb + s * kst + d0 + c : kb, ok);
            }
        } else {
            for (int f = tid; f < SPA_NK * SPA_DC; f += SPA_THREADS) {
                int j = f >> 6, c = f & 63, s = sidx[j];
                bool ok = s >= 0 && d0 + c < p.d.DK;
                spa_cp<4>(buf + j * SPA_KST + c, ok ? kb + s * kst + d0 + c : kb, ok);
            }
        }
    } else {
        const int j0 = (st - nkt) * SPA_VK;
        if (p.vec) {
            for (int f = tid; f < SPA_VK * SPA_DVC / 4; f += SPA_THREADS) {
                int j = f >> 7, c = (f & 127) * 4, s = sidx[j0 + j];
                bool ok = s >= 0 && c < p.d.dvc;
                spa_cp<16>(buf + j * SPA_DVC + c, ok ? vb + s * vst + c : vb, ok);
            }
        } else {
            for (int f = tid; f < SPA_VK * SPA_DVC; f += SPA_THREADS) {
                int j = f >> 9, c = f & 511, s = sidx[j0 + j];
                bool ok = s >= 0 && c < p.d.dvc;
                spa_cp<4>(buf + j * SPA_DVC + c, ok ? vb + s * vst + c : vb, ok);
            }
        }
    }
}

extern "C" __global__ void __launch_bounds__(SPA_THREADS, 2) lt2_sparse_attention_tiled_f32(const float* q, const float* k, const float* v, const i64* idx, float* out,
                                                                                               float* part, SparseTiledParams p, i64* err) {
    LT2_DYN_SMEM(float4, spa_smem);
    const int qst = p.dkp + 4;
    float* qs = (float*)spa_smem;       // [SPA_G][qst]
    float* buf0 = qs + SPA_G * qst;     // two tile buffers
    float* buf1 = buf0 + SPA_BUF;
    float* ps = buf1 + SPA_BUF;         // [SPA_NK][SPA_G] probabilities of the chunk
    float* ms = ps + SPA_NK * SPA_G;    // running max per head
    float* ls = ms + SPA_G;             // running sum
    float* cs = ls + SPA_G;             // the chunk's rescale
    int* sidx = (int*)(cs + SPA_G);     // [SPA_NK] the chunk's positions (-1: none)
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const i64 rb = gridDim.x - 1 - blockIdx.x;  // later queries (longer index lists) first
    const int sp = blockIdx.y;
    const i64 group = p.d.HQ / p.d.HKV;
    const int hgi = (int)(rb % p.hg);
    const i64 hk = (rb / p.hg) % p.d.HKV, bt = rb / ((i64)p.hg * p.d.HKV), b = bt / p.d.T;
    const i64 h0 = hk * group + (i64)hgi * SPA_G;
    const int nh = (int)min((i64)SPA_G, group - (i64)hgi * SPA_G);
    const float* kb = k + (b * p.d.S * p.d.HKV + hk) * p.d.DK;
    const float* vb = v + (b * p.d.S * p.d.HKV + hk) * p.d.DV + p.d.dv0;
    const float* qb = q + (bt * p.d.HQ + h0) * p.d.DK;
    for (int f = tid; f < SPA_G * p.dkp; f += SPA_THREADS) {
        int g = f / p.dkp, d = f % p.dkp;
        qs[g * qst + d] = (g < nh && d < p.d.DK) ? qb[(i64)g * p.d.DK + d] : 0.0f;
    }
    if (tid < SPA_G) {
        ms[tid] = -LT2_INF;
        ls[tid] = 0.0f;
    }
    float acc[4][8];
#pragma unroll
    for (int e = 0; e < 4; ++e)
#pragma unroll
        for (int c = 0; c < 8; ++c) acc[e][c] = 0.0f;
    const int jg = tid & 15, gq = (tid >> 4) & 3, ds = tid >> 6;  // scores: keys jg + 16c, heads 4gq.., dims 16ds..
    const int gv = tid >> 6, cg = tid & 63;                        // values: heads 4gv.., columns 4cg.., 256 + 4cg..
    const int nkt = p.dkp / SPA_DC, nst = nkt + SPA_NK / SPA_VK;
    const i64 e_begin = (i64)sp * p.kps, e_end = min(p.d.KK, e_begin + p.kps);
    const i64* ib = idx + bt * p.d.KK;
    for (i64 e0 = e_begin; e0 < e_end; e0 += SPA_NK) {
        __syncthreads();  // the previous chunk is done with sidx, ps and the buffers
        int any = 0;
        if (tid < SPA_NK) {
            i64 e = e0 + tid;
            i64 s = e < e_end ? ib[e] : -1;
            if (s != -1 && (s < 0 || s >= p.d.S)) {
                lt2_report(err, LT2_ERR_SPARSE, s, p.d.S);
                s = -1;
            }
            sidx[tid] = (int)s;
            any = s != -1;
        }
        if (!__syncthreads_or(any)) continue;
        float sc[4][4];
#pragma unroll
        for (int e = 0; e < 4; ++e)
#pragma unroll
            for (int c = 0; c < 4; ++c) sc[e][c] = 0.0f;
        spa_issue(p, 0, nkt, buf0, sidx, kb, vb, tid);
        spa_commit();
        for (int st = 0; st < nst; ++st) {
            float* cur = (st & 1) ? buf1 : buf0;
            if (st + 1 < nst) {
                spa_issue(p, st + 1, nkt, (st & 1) ? buf0 : buf1, sidx, kb, vb, tid);
                spa_commit();
                spa_wait<1>();
            } else {
                spa_wait<0>();
            }
            __syncthreads();
            if (st < nkt) {
                const float* qd = qs + st * SPA_DC + ds * 16;
#pragma unroll
                for (int u = 0; u < 4; ++u) {
                    float4 qv[4], kv[4];
#pragma unroll
                    for (int e = 0; e < 4; ++e) qv[e] = *(const float4*)(qd + (gq * 4 + e) * qst + u * 4);
#pragma unroll
                    for (int c = 0; c < 4; ++c) kv[c] = *(const float4*)(cur + (jg + 16 * c) * SPA_KST + ds * 16 + u * 4);
#pragma unroll
                    for (int e = 0; e < 4; ++e)
#pragma unroll
                        for (int c = 0; c < 4; ++c) {
                            float x = sc[e][c];
                            x = fmaf(qv[e].x, kv[c].x, x);
                            x = fmaf(qv[e].y, kv[c].y, x);
                            x = fmaf(qv[e].z, kv[c].z, x);
                            sc[e][c] = fmaf(qv[e].w, kv[c].w, x);
                        }
                }
                if (st == nkt - 1) {
                    // The four partial sums of each score meet in cur; then the online softmax.
                    __syncthreads();
#pragma unroll
                    for (int e = 0; e < 4; ++e)
#pragma unroll
                        for (int c = 0; c < 4; ++c) cur[(ds * SPA_G + gq * 4 + e) * SPA_NK + jg + 16 * c] = sc[e][c];
                    __syncthreads();
#pragma unroll
                    for (int hh = 0; hh < 2; ++hh) {
                        const int g = 2 * warp + hh;
                        const float mold = ms[g];
                        float x[2], pe[2];
#pragma unroll
                        for (int c = 0; c < 2; ++c) {
                            int j = lane + 32 * c;
                            float s = cur[g * SPA_NK + j] + cur[(SPA_G + g) * SPA_NK + j] + cur[(2 * SPA_G + g) * SPA_NK + j] + cur[(3 * SPA_G + g) * SPA_NK + j];
                            x[c] = sidx[j] >= 0 ? s * p.d.scale : -LT2_INF;
                        }
                        const float mnew = fmaxf(mold, lt2_warp_max(fmaxf(x[0], x[1])));
#pragma unroll
                        for (int c = 0; c < 2; ++c) pe[c] = sidx[lane + 32 * c] >= 0 ? expf(x[c] - mnew) : 0.0f;
                        const float sum = lt2_warp_sum(pe[0] + pe[1]);
                        ps[lane * SPA_G + g] = pe[0];
                        ps[(lane + 32) * SPA_G + g] = pe[1];
                        __syncwarp();  // every lane has read ms[g] before lane 0 rewrites it
                        if (lane == 0) {
                            const float corr = expf(mold - mnew);
                            cs[g] = corr;
                            ms[g] = mnew;
                            ls[g] = ls[g] * corr + sum;
                        }
                    }
                    __syncthreads();
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        const float corr = cs[gv * 4 + e];
#pragma unroll
                        for (int c = 0; c < 8; ++c) acc[e][c] *= corr;
                    }
                }
            } else {
                const int j0 = (st - nkt) * SPA_VK;
                bool live = false;
                for (int jj = 0; jj < SPA_VK; ++jj) live |= sidx[j0 + jj] >= 0;
                if (live) {
                    for (int jj = 0; jj < SPA_VK; ++jj) {
                        const float4 pv = *(const float4*)(ps + (j0 + jj) * SPA_G + gv * 4);
                        const float4 v0 = *(const float4*)(cur + jj * SPA_DVC + cg * 4);
                        const float4 v1 = *(const float4*)(cur + jj * SPA_DVC + 256 + cg * 4);
                        const float pw[4] = {pv.x, pv.y, pv.z, pv.w};
#pragma unroll
                        for (int e = 0; e < 4; ++e) {
                            acc[e][0] = fmaf(pw[e], v0.x, acc[e][0]);
                            acc[e][1] = fmaf(pw[e], v0.y, acc[e][1]);
                            acc[e][2] = fmaf(pw[e], v0.z, acc[e][2]);
                            acc[e][3] = fmaf(pw[e], v0.w, acc[e][3]);
                            acc[e][4] = fmaf(pw[e], v1.x, acc[e][4]);
                            acc[e][5] = fmaf(pw[e], v1.y, acc[e][5]);
                            acc[e][6] = fmaf(pw[e], v1.z, acc[e][6]);
                            acc[e][7] = fmaf(pw[e], v1.w, acc[e][7]);
                        }
                    }
                }
            }
            __syncthreads();  // cur is refilled two stages on
        }
    }
    __syncthreads();
#pragma unroll
    for (int e = 0; e < 4; ++e) {
        const int g = gv * 4 + e;
        if (g >= nh) continue;
        const i64 orow = bt * p.d.HQ + h0 + g;
        if (p.splits == 1) {
            const float l = ls[g], inv = l > 0.0f ? 1.0f / l : 0.0f;
            float* o = out + orow * p.d.DV + p.d.dv0;
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                int col = (c < 4 ? 0 : 256 - 4) + cg * 4 + c;
                if (col < p.d.dvc) o[col] = acc[e][c] * inv;
            }
        } else {
            float* o = part + (orow * p.splits + sp) * (p.d.dvc + 2);
            if (cg == 0) {
                o[0] = ms[g];
                o[1] = ls[g];
            }
#pragma unroll
            for (int c = 0; c < 8; ++c) {
                int col = (c < 4 ? 0 : 256 - 4) + cg * 4 + c;
                if (col < p.d.dvc) o[2 + col] = acc[e][c];
            }
        }
    }
}

// Merges the splits of lt2_sparse_attention_tiled_f32: part [B*T*HQ][splits][2 + dvc] holds
// (max, sum, unnormalised output) per split. One block per (b, t, head).
extern "C" __global__ void lt2_sparse_combine_f32(const float* part, float* out, int splits, i64 DV, i64 dv0, i64 dvc) {
    __shared__ float wts[SPA_MAX_SPLITS];
    __shared__ float inv_l;
    const i64 row = blockIdx.x, rec = dvc + 2;
    const float* pr = part + row * splits * rec;
    if (threadIdx.x == 0) {
        float mx = -LT2_INF, l = 0.0f;
        for (int s = 0; s < splits; ++s)
            if (pr[s * rec + 1] > 0.0f) mx = fmaxf(mx, pr[s * rec]);
        for (int s = 0; s < splits; ++s) {
            float ls = pr[s * rec + 1], wt = ls > 0.0f ? expf(pr[s * rec] - mx) : 0.0f;
            wts[s] = wt;
            l += wt * ls;
        }
        inv_l = l > 0.0f ? 1.0f / l : 0.0f;
    }
    __syncthreads();
    for (i64 c = threadIdx.x; c < dvc; c += blockDim.x) {
        float o = 0.0f;
        for (int s = 0; s < splits; ++s)
            if (wts[s] != 0.0f) o += wts[s] * pr[s * rec + 2 + c];
        out[row * DV + dv0 + c] = o * inv_l;
    }
}

// ---------------------------------------------------------------------------------------------
// The untiled kernel, for head dims whose tiles do not fit shared memory.
#define SPA_MAX_DV_PER_LANE 8  // value columns per launch <= 256

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
