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
LT2_COPY(lt2_copy_w8, u64)

// Small host-to-device uploads without a host synchronisation: the bytes travel as a kernel
// parameter (a pageable cuMemcpyHtoDAsync may synchronise the stream).
struct Bytes256 {
    u8 b[256];
};

extern "C" __global__ void lt2_write_bytes(u8* dst, int n, Bytes256 src) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) dst[i] = src.b[i];
}
