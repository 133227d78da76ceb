// Embed and Gather: out[o, r, e] = data[o, idx[r], e] for data viewed as [outer, s, inner] and
// int64 indices (negative ones count from the end). Semantics: runtime/src/cpu/shape.rs; an
// index outside [-s, s) is reported (LT2_ERR_INDEX) and its row left as zeros.
#include "common.cuh"

#define LT2_GATHER(name, T)                                                                         \
    extern "C" __global__ void name(const T* data, const i64* idx, T* out, i64 outer, i64 s, i64 inner, \
                                    i64 nidx, i64* err) {                                           \
        i64 n = outer * nidx * inner;                                                               \
        LT2_GRID_STRIDE(i, n) {                                                                     \
            i64 e = i % inner, r = (i / inner) % nidx, o = i / (inner * nidx);                      \
            i64 v = idx[r];                                                                         \
            if (v < -s || v >= s) {                                                                 \
                if (e == 0) lt2_report(err, LT2_ERR_INDEX, v, s);                                   \
                out[i] = (T)0;                                                                      \
                continue;                                                                           \
            }                                                                                       \
            if (v < 0) v += s;                                                                      \
            out[i] = data[(o * s + v) * inner + e];                                                 \
        }                                                                                           \
    }
LT2_GATHER(lt2_gather_w1, u8)
LT2_GATHER(lt2_gather_w4, u32)
LT2_GATHER(lt2_gather_w2, unsigned short)
LT2_GATHER(lt2_gather_w8, u64)
