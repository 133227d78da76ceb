// Strided copies: one kernel serves Transpose, Expand, Slice, Concat (one launch per input)
// and any other data movement that is a strided view. dst[dst_base + idx . dst_st] =
// src[src_base + idx . src_st] for every idx over `dims` (strides may be 0 or negative).
#include "common.cuh"

struct CopyParams {
    int rank;
    int pad;
    i64 n;
    i64 src_base;
    i64 dst_base;
    i64 dims[LT2_MAX_RANK];
    i64 src_st[LT2_MAX_RANK];
    i64 dst_st[LT2_MAX_RANK];
};

#define LT2_COPY(name, T)                                                \
    extern "C" __global__ void name(const T* src, T* dst, CopyParams p) { \
        LT2_GRID_STRIDE(i, p.n) {                                        \
            i64 s = p.src_base, d = p.dst_base, k = i;                   \
            for (int a = p.rank - 1; a >= 0; --a) {                      \
                i64 x = k % p.dims[a];                                   \
                k /= p.dims[a];                                          \
                s += x * p.src_st[a];                                    \
                d += x * p.dst_st[a];                                    \
            }                                                            \
            dst[d] = src[s];                                             \
        }                                                                \
    }
LT2_COPY(lt2_copy_w1, u8)
LT2_COPY(lt2_copy_w4, u32)
LT2_COPY(lt2_copy_w2, unsigned short)
LT2_COPY(lt2_copy_w8, u64)

// Small host-to-device uploads without a host synchronisation: the bytes travel as a kernel
// parameter (a pageable cuMemcpyHtoDAsync may synchronise the stream).
struct Bytes256 {
    u8 b[256];
};

extern "C" __global__ void lt2_write_bytes(u8* dst, int n, Bytes256 src) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];
}

// Decode with fixed-capacity caches (a decode step replayed as a CUDA graph): the rows
// src [B, n, w] go to rows at .. at+n-1 of each batch's slab of dst [B, cap, w], with `at` read
// from device memory (the tokens the caches held before the step), so one recorded launch serves
// every step. In u32 words (caches are f32).
extern "C" __global__ void lt2_write_rows_w4(const u32* src, u32* dst, const i64* at, i64 B, i64 n, i64 cap, i64 w, i64* err) {
    const i64 a = *at;
    if (a < 0 || a + n > cap) {
        if (blockIdx.x == 0 && threadIdx.x == 0) lt2_report(err, LT2_ERR_CAPACITY, a + n, cap);
        return;
    }
    LT2_GRID_STRIDE(i, B * n * w) {
        const i64 b = i / (n * w), r = i % (n * w);
        dst[(b * cap + a) * w + r] = src[i];
    }
}

// The profiler (LT2C_CUDA_PROFILE) holds the stream for `cycles` clocks while it enqueues one
// op behind this, so the op's events time the device alone.
extern "C" __global__ void lt2_spin(i64 cycles) {
    const long long t0 = clock64();
    while (clock64() - t0 < cycles) {
    }
}
