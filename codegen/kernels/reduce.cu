// ReduceSum / ReduceMean / ReduceMax over any set of axes. Semantics: runtime/src/cpu/reduce.rs
// (f32 sums and means accumulate in f64; Max propagates NaN and gives -inf over an empty set;
// int64 sums wrap, int64 Max starts at i64::MIN; int64 Mean truncates toward zero).
// One warp per output element; the lanes stride over the reduced elements.
#include "common.cuh"

// Output element o (row-major over `out_dims`, the kept dims) starts at input offset
// sum(idx * out_st); reduced element r (row-major over `red_dims`) adds sum(idx * red_st).
struct ReduceParams {
    int out_rank;
    int red_rank;
    i64 n_out;
    i64 count;
    i64 out_dims[LT2_MAX_RANK];
    i64 out_st[LT2_MAX_RANK];
    i64 red_dims[LT2_MAX_RANK];
    i64 red_st[LT2_MAX_RANK];
};

__device__ __forceinline__ i64 strided(i64 i, int rank, const i64* dims, const i64* st) {
    i64 off = 0;
    for (int d = rank - 1; d >= 0; --d) {
        off += (i % dims[d]) * st[d];
        i /= dims[d];
    }
    return off;
}

// kind: plan::ReduceKind (Sum 0, Mean 1, Max 2).
extern "C" __global__ void lt2_reduce_f32(const float* x, float* out, int kind, ReduceParams p) {
    i64 o = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (o >= p.n_out) return;  // whole warps exit together
    i64 base = strided(o, p.out_rank, p.out_dims, p.out_st);
    if (kind == 2) {
        float m = -LT2_INF;
        bool nan = false;
        for (i64 r = lane; r < p.count; r += 32) {
            float v = x[base + strided(r, p.red_rank, p.red_dims, p.red_st)];
            if (v != v) nan = true;
            else m = fmaxf(m, v);
        }
        m = lt2_warp_max(m);
        nan = __any_sync(0xffffffffu, nan);
        if (lane == 0) out[o] = nan ? __int_as_float(0x7fc00000) : m;
    } else {
        double s = 0.0;
        for (i64 r = lane; r < p.count; r += 32) s += (double)x[base + strided(r, p.red_rank, p.red_dims, p.red_st)];
        s = lt2_warp_sum_d(s);
        if (lane == 0) out[o] = (float)(kind == 1 ? s / (double)p.count : s);
    }
}

extern "C" __global__ void lt2_reduce_i64(const i64* x, i64* out, int kind, ReduceParams p) {
    i64 o = ((i64)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
    int lane = threadIdx.x & 31;
    if (o >= p.n_out) return;
    i64 base = strided(o, p.out_rank, p.out_dims, p.out_st);
    i64 acc = kind == 2 ? (i64)0x8000000000000000ull : 0;
    for (i64 r = lane; r < p.count; r += 32) {
        i64 v = x[base + strided(r, p.red_rank, p.red_dims, p.red_st)];
        acc = kind == 2 ? (v > acc ? v : acc) : (i64)((u64)acc + (u64)v);
    }
    for (int off = 16; off > 0; off >>= 1) {
        i64 w = __shfl_xor_sync(0xffffffffu, acc, off);
        acc = kind == 2 ? (w > acc ? w : acc) : (i64)((u64)acc + (u64)w);
    }
    if (lane == 0) out[o] = kind == 1 ? acc / p.count : acc;  // the host rejects count == 0
}

// CumSum: one thread per line of x viewed as [outer, n, inner], summing along n in order
// (backwards when `reverse`), as runtime/src/cpu/reduce.rs does: f32 accumulates in f32,
// int64 wraps. Element i gets the sum before it when `exclusive`.
#define LT2_CUMSUM(name, T)                                                                           \
    extern "C" __global__ void name(const T* x, T* out, i64 outer, i64 n, i64 inner, int exclusive, int reverse) { \
        LT2_GRID_STRIDE(line, outer * inner) {                                                        \
            i64 o = line / inner, i = line % inner;                                                   \
            T acc = (T)0;                                                                             \
            for (i64 s = 0; s < n; ++s) {                                                             \
                i64 at = (o * n + (reverse ? n - 1 - s : s)) * inner + i;                              \
                T v = x[at];                                                                          \
                if (exclusive) { out[at] = acc; acc = lt2_cumsum_add(acc, v); }                        \
                else { acc = lt2_cumsum_add(acc, v); out[at] = acc; }                                  \
            }                                                                                         \
        }                                                                                             \
    }
__device__ __forceinline__ float lt2_cumsum_add(float a, float b) { return a + b; }
__device__ __forceinline__ i64 lt2_cumsum_add(i64 a, i64 b) { return (i64)((unsigned long long)a + (unsigned long long)b); }
LT2_CUMSUM(lt2_cumsum_f32, float)
LT2_CUMSUM(lt2_cumsum_i64, i64)
