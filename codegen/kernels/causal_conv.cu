// Depthwise causal 1-D convolution with carried state, channels-last. Semantics:
// runtime/src/cpu/conv.rs: y[b,t,c] = act(sum_j w[c,j] * xpad[b,t+j,c] + bias[c]) where xpad is
// state [B, C, k-1] (zeros if absent) followed by x [B, L, C]; the sum runs over j in order.
#include "common.cuh"

// xpad[b, t, c] for t in 0 .. k-1+L.
__device__ __forceinline__ float conv_xpad(const float* x, const float* state, i64 b, i64 t, i64 c, i64 L, i64 C, i64 p) {
    if (t >= p) return x[(b * L + (t - p)) * C + c];
    return state ? state[(b * C + c) * p + t] : 0.0f;
}

// One thread per output element: block x = row (b, t), blocks y and threads = channels (no
// 64-bit divisions per element).
extern "C" __global__ void lt2_causal_conv_f32(const float* x, const float* w, const float* bias, const float* state, float* y,
                                               i64 B, i64 L, i64 C, i64 K, int silu) {
    const i64 p = K - 1, row = blockIdx.x, b = row / L, t = row % L;
    const i64 c = (i64)blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    float acc = 0.0f;
    for (i64 j = 0; j < K; ++j) acc += w[c * K + j] * conv_xpad(x, state, b, t + j, c, L, C, p);
    if (bias) acc += bias[c];
    y[row * C + c] = silu ? lt2_silu(acc) : acc;
}

// The new state [B, C, k-1]: the last k-1 entries of xpad.
extern "C" __global__ void lt2_causal_conv_state_f32(const float* x, const float* state, float* state_out, i64 B, i64 L, i64 C, i64 K) {
    i64 p = K - 1;
    LT2_GRID_STRIDE(i, B * C * p) {
        i64 j = i % p, c = (i / p) % C, b = i / (p * C);
        state_out[i] = conv_xpad(x, state, b, L + j, c, L, C, p);
    }
}
