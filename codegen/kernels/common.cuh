// Shared definitions for lt2c's CUDA kernels (compiled with NVRTC; no system headers).
//
// Conventions, relied on by the launch wrappers in runtime/src/cuda/:
// - every kernel is `extern "C"` and named `lt2_<family>_<variant>` (see Kernel::symbol);
// - tensors are contiguous row-major unless a kernel takes explicit strides;
// - element types: f32 (float), i64 (long long), bool (one byte, 0 or 1);
// - an optional input is a null pointer;
// - bad data that the CPU backend reports as an error (an index out of range, an int64
//   division by zero) is recorded with lt2_report() and the element is skipped; the host
//   reads the record when it next synchronises and turns it into an error.
#pragma once

typedef long long i64;
typedef unsigned long long u64;
typedef unsigned int u32;
typedef unsigned char u8;

#define LT2_MAX_RANK 8
#define LT2_INF __int_as_float(0x7f800000)

// Error codes written to the error record (mirrored in runtime/src/cuda/mod.rs).
#define LT2_ERR_INDEX 1      // gather / embed index out of range: (value, axis size)
#define LT2_ERR_DIV_ZERO 2   // int64 division by zero: (dividend, 0)
#define LT2_ERR_POSITION 3   // rope position id outside the cos/sin cache: (value, positions)
#define LT2_ERR_SPARSE 4     // sparse attention index outside 0..S: (value, S)
#define LT2_ERR_CAPACITY 5   // a fixed-capacity cache is full: (rows needed, capacity)

// The first error wins; later ones are dropped. err = {code, a, b}.
__device__ __forceinline__ void lt2_report(i64* err, i64 code, i64 a, i64 b) {
    if (atomicCAS((u64*)err, 0ull, (u64)code) == 0ull) {
        err[1] = a;
        err[2] = b;
    }
}

// A strided view of up to LT2_MAX_RANK dims with up to three operands (elementwise ops with
// broadcasting: stride 0 on broadcast dims). The output is contiguous over `dims`.
struct Bcast {
    int rank;
    int pad;
    i64 n;
    i64 dims[LT2_MAX_RANK];
    i64 st[3][LT2_MAX_RANK];
};

// Offsets of output element i in the three operands.
__device__ __forceinline__ void lt2_bcast_offsets(const Bcast& p, i64 i, i64* o0, i64* o1, i64* o2) {
    if (p.rank == 1) {  // the common case after collapsing (same shapes, scalars): no divisions
        *o0 = i * p.st[0][0];
        *o1 = i * p.st[1][0];
        *o2 = i * p.st[2][0];
        return;
    }
    i64 a = 0, b = 0, c = 0;
    for (int d = p.rank - 1; d >= 0; --d) {
        i64 n = p.dims[d];
        i64 x = i % n;
        i /= n;
        a += x * p.st[0][d];
        b += x * p.st[1][d];
        c += x * p.st[2][d];
    }
    *o0 = a;
    *o1 = b;
    *o2 = c;
}

#define LT2_GRID_STRIDE(i, n) for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)

__device__ __forceinline__ float lt2_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ double lt2_warp_sum_d(double v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float lt2_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum over a block whose size is a multiple of 32 (at most 1024); every thread gets the result.
__device__ __forceinline__ double lt2_block_sum_d(double v, double* scratch /* 32 */) {
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = lt2_warp_sum_d(v);
    __syncthreads();
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    double t = lane < nw ? scratch[lane] : 0.0;
    return lt2_warp_sum_d(t);
}

// Numerically safe functions, the same formulas as runtime/src/cpu/elementwise.rs.
__device__ __forceinline__ float lt2_sigmoid(float x) {
    if (x >= 0.0f) return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}
__device__ __forceinline__ float lt2_softplus(float x) {
    float pos = x > 0.0f ? x : 0.0f;
    return pos + log1pf(expf(-fabsf(x)));
}
__device__ __forceinline__ float lt2_silu(float x) { return x * lt2_sigmoid(x); }
