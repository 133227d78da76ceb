// Elementwise ops with numpy broadcasting: Binary, Unary, Compare, Where, Cast.
// Semantics: runtime/src/cpu/elementwise.rs and runtime/src/cpu/select.rs. The op code is a
// kernel argument (uniform across the grid), numbered as plan::BinaryKind / UnaryKind /
// CompareKind.
#include "common.cuh"

// ---- Binary (plan::BinaryKind: Add 0, Sub 1, Mul 2, Div 3, Pow 4, Min 5, Max 6, SiluMul 7) ----

__device__ __forceinline__ float binary_f32(int op, float a, float b) {
    switch (op) {
        case 0: return a + b;
        case 1: return a - b;
        case 2: return a * b;
        case 3: return a / b;
        case 4: return powf(a, b);
        case 5: return fminf(a, b);
        case 7: return lt2_silu(a) * b;
        default: return fmaxf(a, b);
    }
}

// int64: wrapping Add/Sub/Mul, Div truncating toward zero (i64::MIN / -1 wraps), Min, Max.
__device__ __forceinline__ i64 binary_i64(int op, i64 a, i64 b, i64* err) {
    switch (op) {
        case 0: return (i64)((u64)a + (u64)b);
        case 1: return (i64)((u64)a - (u64)b);
        case 2: return (i64)((u64)a * (u64)b);
        case 3:
            if (b == 0) {
                lt2_report(err, LT2_ERR_DIV_ZERO, a, 0);
                return 0;
            }
            if (b == -1) return (i64)(0ull - (u64)a);
            return a / b;
        case 5: return a < b ? a : b;
        default: return a > b ? a : b;
    }
}

extern "C" __global__ void lt2_binary_f32(const float* a, const float* b, float* out, int op, Bcast p) {
    LT2_GRID_STRIDE(i, p.n) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i, &oa, &ob, &oc);
        out[i] = binary_f32(op, a[oa], b[ob]);
    }
}

// Four contiguous outputs per thread, float4 loads and stores. The host launches it only where
// that is exact: the innermost collapsed dim a multiple of 4, each operand's innermost stride 0
// (broadcast: one value) or 1, every buffer 16-byte aligned (elementwise.rs `vec4`).
__device__ __forceinline__ float4 lt2_load4(const float* p, i64 off, i64 inner_stride) {
    if (inner_stride == 0) {
        const float v = p[off];
        return make_float4(v, v, v, v);
    }
    return *reinterpret_cast<const float4*>(p + off);
}

extern "C" __global__ void lt2_binary4_f32(const float* a, const float* b, float* out, int op, Bcast p) {
    const int r = p.rank - 1;
    LT2_GRID_STRIDE(i, p.n / 4) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i * 4, &oa, &ob, &oc);
        const float4 x = lt2_load4(a, oa, p.st[0][r]), y = lt2_load4(b, ob, p.st[1][r]);
        reinterpret_cast<float4*>(out)[i] = make_float4(binary_f32(op, x.x, y.x), binary_f32(op, x.y, y.y), binary_f32(op, x.z, y.z), binary_f32(op, x.w, y.w));
    }
}

extern "C" __global__ void lt2_binary_i64(const i64* a, const i64* b, i64* out, int op, Bcast p, i64* err) {
    LT2_GRID_STRIDE(i, p.n) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i, &oa, &ob, &oc);
        out[i] = binary_i64(op, a[oa], b[ob], err);
    }
}

// ---- Unary (plan::UnaryKind: Neg 0, Exp 1, Sigmoid 2, Softplus 3, Sqrt 4, Silu 5, Log 6,
// Tanh 7, Relu 8, Reciprocal 9, Abs 10, Identity 11, Sin 12, Cos 13) ----

__device__ __forceinline__ float unary_f32(int op, float v) {
    float r;
    switch (op) {
        case 0: r = -v; break;
        case 1: r = expf(v); break;
        case 2: r = lt2_sigmoid(v); break;
        case 3: r = lt2_softplus(v); break;
        case 4: r = sqrtf(v); break;
        case 5: r = lt2_silu(v); break;
        case 6: r = logf(v); break;
        case 7: r = tanhf(v); break;
        case 8: r = v < 0.0f ? 0.0f : v; break;  // NaN stays NaN
        case 9: r = 1.0f / v; break;
        case 10: r = fabsf(v); break;
        // Full-range sinf/cosf (not the __sinf intrinsics): RoPE angles reach thousands.
        case 12: r = sinf(v); break;
        case 13: r = cosf(v); break;
        default: r = v; break;
    }
    return r;
}

extern "C" __global__ void lt2_unary_f32(const float* x, float* out, int op, i64 n) {
    LT2_GRID_STRIDE(i, n) out[i] = unary_f32(op, x[i]);
}

// Four elements per thread (the host checks n % 4 == 0 and 16-byte aligned buffers).
extern "C" __global__ void lt2_unary4_f32(const float4* x, float4* out, int op, i64 n4) {
    LT2_GRID_STRIDE(i, n4) {
        const float4 v = x[i];
        out[i] = make_float4(unary_f32(op, v.x), unary_f32(op, v.y), unary_f32(op, v.z), unary_f32(op, v.w));
    }
}

// int64: Neg and Abs wrap, Relu (the host rejects the others, as the CPU backend does).
extern "C" __global__ void lt2_unary_i64(const i64* x, i64* out, int op, i64 n) {
    LT2_GRID_STRIDE(i, n) {
        i64 v = x[i], r;
        switch (op) {
            case 0: r = (i64)(0ull - (u64)v); break;
            case 10: r = v < 0 ? (i64)(0ull - (u64)v) : v; break;
            case 8: r = v < 0 ? 0 : v; break;
            default: r = v; break;
        }
        out[i] = r;
    }
}

// ---- Compare (plan::CompareKind: Eq 0, Lt 1, Le 2, Gt 3, Ge 4, And 5, Or 6, Not 7) -> bool ----

template <typename T>
__device__ __forceinline__ u8 compare(int op, T a, T b) {
    switch (op) {
        case 0: return a == b;
        case 1: return a < b;
        case 2: return a <= b;
        case 3: return a > b;
        case 4: return a >= b;
        default: return 0;
    }
}

extern "C" __global__ void lt2_compare_f32(const float* a, const float* b, u8* out, int op, Bcast p) {
    LT2_GRID_STRIDE(i, p.n) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i, &oa, &ob, &oc);
        out[i] = compare<float>(op, a[oa], b[ob]);
    }
}

extern "C" __global__ void lt2_compare_i64(const i64* a, const i64* b, u8* out, int op, Bcast p) {
    LT2_GRID_STRIDE(i, p.n) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i, &oa, &ob, &oc);
        out[i] = compare<i64>(op, a[oa], b[ob]);
    }
}

// Bool operands: Eq, And, Or, and Not (which reads only `a`).
extern "C" __global__ void lt2_compare_bool(const u8* a, const u8* b, u8* out, int op, Bcast p) {
    LT2_GRID_STRIDE(i, p.n) {
        i64 oa, ob, oc;
        lt2_bcast_offsets(p, i, &oa, &ob, &oc);
        bool x = a[oa] != 0;
        u8 r;
        switch (op) {
            case 0: r = x == (b[ob] != 0); break;
            case 5: r = x && (b[ob] != 0); break;
            case 6: r = x || (b[ob] != 0); break;
            default: r = !x; break;
        }
        out[i] = r;
    }
}

// ---- Where(cond, a, b): operand 0 = cond, 1 = a, 2 = b; one kernel per element width ----

#define LT2_WHERE(name, T)                                                                 \
    extern "C" __global__ void name(const u8* c, const T* a, const T* b, T* out, Bcast p) { \
        LT2_GRID_STRIDE(i, p.n) {                                                          \
            i64 oc, oa, ob;                                                                \
            lt2_bcast_offsets(p, i, &oc, &oa, &ob);                                        \
            out[i] = c[oc] ? a[oa] : b[ob];                                                \
        }                                                                                  \
    }
LT2_WHERE(lt2_where_w1, u8)
LT2_WHERE(lt2_where_w4, u32)
LT2_WHERE(lt2_where_w2, unsigned short)
LT2_WHERE(lt2_where_w8, u64)

// ---- Cast between f32 (0), i64 (1) and bool (2), as plan::DType; f32 to bf16 (3) or fp16 (4),
// rounding to nearest even (the operands of reduced-precision matrix products), and back ----
// f32 -> i64 truncates toward zero, saturates, and maps NaN to 0 (like Rust `as`).

extern "C" __global__ void lt2_cast(const void* x, void* out, int from, int to, i64 n) {
    LT2_GRID_STRIDE(i, n) {
        if (from == 0) {
            float v = ((const float*)x)[i];
            if (to == 1) ((i64*)out)[i] = v != v ? 0 : (i64)v;
            else if (to == 3) {
                unsigned short h;
                asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(v));
                ((unsigned short*)out)[i] = h;
            } else if (to == 4) {
                unsigned short h;
                asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
                ((unsigned short*)out)[i] = h;
            }
            else ((u8*)out)[i] = v != 0.0f;
        } else if (from == 3 || from == 4) {  // bf16 / fp16 -> f32 (exact)
            const unsigned short h = ((const unsigned short*)x)[i];
            float v;
            if (from == 3) v = __uint_as_float((u32)h << 16);
            else asm("cvt.f32.f16 %0, %1;" : "=f"(v) : "h"(h));
            ((float*)out)[i] = v;
        } else if (from == 1) {
            i64 v = ((const i64*)x)[i];
            if (to == 0) ((float*)out)[i] = (float)v;
            else ((u8*)out)[i] = v != 0;
        } else {
            u8 v = ((const u8*)x)[i] != 0;
            if (to == 0) ((float*)out)[i] = (float)v;
            else ((i64*)out)[i] = (i64)v;
        }
    }
}

// f32 -> bf16 (f16 = 0) or fp16 (f16 = 1), rounding to nearest even, four elements per thread:
// the cast before every reduced-precision product is bound by memory, so it moves 16 bytes in
// and 8 out per thread. n4 = elements / 4 (the wrapper takes this path when 4 divides them).
extern "C" __global__ void lt2_cast_half4(const float4* x, uint2* out, int f16, i64 n4) {
    LT2_GRID_STRIDE(i, n4) {
        const float4 v = x[i];
        u32 lo, hi;
        if (f16) {
            asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(lo) : "f"(v.y), "f"(v.x));
            asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(hi) : "f"(v.w), "f"(v.z));
        } else {
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(lo) : "f"(v.y), "f"(v.x));
            asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(hi) : "f"(v.w), "f"(v.z));
        }
        out[i] = make_uint2(lo, hi);
    }
}
