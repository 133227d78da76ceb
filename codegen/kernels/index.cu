// Index-producing and masking ops: Range, Trilu, TopK. Semantics: runtime/src/cpu/shape.rs
// (range) and runtime/src/cpu/select.rs (trilu, top_k).
#include "common.cuh"

// start + i * delta (the host checks that the last value does not overflow).
extern "C" __global__ void lt2_range_i64(i64* out, i64 start, i64 delta, i64 n) {
    LT2_GRID_STRIDE(i, n) out[i] = start + i * delta;
}

// Positions of a decode step replayed as a CUDA graph: start + (past + i) * delta, with `past`
// (the tokens already cached) read from device memory.
extern "C" __global__ void lt2_range_past_i64(i64* out, i64 start, i64 delta, i64 n, const i64* past) {
    const i64 s = start + *past * delta;
    LT2_GRID_STRIDE(i, n) out[i] = s + i * delta;
}

// Keeps the lower (j <= i + k) or upper (j >= i + k) triangle of the last two dims [rows, cols].
#define LT2_TRILU(name, T)                                                                       \
    extern "C" __global__ void name(const T* x, T* out, i64 n, i64 rows, i64 cols, int upper, i64 k) { \
        LT2_GRID_STRIDE(i, n) {                                                                  \
            i64 r = (i / cols) % rows, c = i % cols;                                             \
            bool keep = upper ? c >= r + k : c <= r + k;                                         \
            out[i] = keep ? x[i] : (T)0;                                                         \
        }                                                                                        \
    }
LT2_TRILU(lt2_trilu_w1, u8)
LT2_TRILU(lt2_trilu_w4, u32)
LT2_TRILU(lt2_trilu_w2, unsigned short)
LT2_TRILU(lt2_trilu_w8, u64)

// Whether element (va, a) comes before (vb, b) in TopK order: larger (or smaller) first, ties
// (and unordered NaN pairs) to the lower index.
__device__ __forceinline__ bool topk_before(float va, i64 a, float vb, i64 b, int largest) {
    if (largest ? va > vb : va < vb) return true;
    if (largest ? va < vb : va > vb) return false;
    return a < b;
}

// One block per row (o, i) of x viewed as [outer, n, inner]: each element's rank is the number
// of elements before it; ranks below k are written.
extern "C" __global__ void lt2_topk_f32(const float* x, float* vals, i64* idxs, i64 outer, i64 n, i64 inner, i64 k, int largest) {
    i64 row = blockIdx.x;
    if (row >= outer * inner) return;
    i64 o = row / inner, i = row % inner;
    const float* xr = x + o * n * inner + i;
    for (i64 j = threadIdx.x; j < n; j += blockDim.x) {
        float v = xr[j * inner];
        i64 rank = 0;
        for (i64 m = 0; m < n && rank < k; ++m) rank += topk_before(xr[m * inner], m, v, j, largest);
        if (rank < k) {
            vals[(o * k + rank) * inner + i] = v;
            idxs[(o * k + rank) * inner + i] = j;
        }
    }
}
