//! Launch wrapper for the depthwise causal convolution with state. Semantics: `cpu/conv.rs`.

use cudarc::driver::LaunchConfig;

use crate::cpu::conv::{conv_dims, ConvDims};
use crate::error::OpError;
use crate::plan::DType;

use super::kernels::Kernel;
use super::{expect_f32, grid_for, launch, Cuda, CudaBuf};

/// Returns (y [B, L, C], state_out [B, C, k-1]); see `cpu::conv::causal_conv`.
pub(crate) fn causal_conv(cu: &Cuda, x: &CudaBuf, w: &CudaBuf, bias: Option<&CudaBuf>, state: Option<&CudaBuf>, activation: &str) -> Result<(CudaBuf, CudaBuf), OpError> {
    let ConvDims { nb, l, c, k, silu } = conv_dims(&x.shape, &w.shape, bias.map(|b| &b.shape[..]), state.map(|s| &s.shape[..]), activation)?;
    for (what, t) in [("x", Some(x)), ("weight", Some(w)), ("bias", bias), ("state", state)] {
        if let Some(t) = t {
            expect_f32("causal_conv", what, t)?;
        }
    }
    let y = cu.alloc(vec![nb, l, c], DType::F32)?;
    let st = cu.alloc(vec![nb, c, k - 1], DType::F32)?;
    let (bias_p, state_p) = (bias.map_or(0, |b| b.ptr()), state.map_or(0, |s| s.ptr()));
    let dims = (nb as i64, l as i64, c as i64, k as i64);
    if y.numel() > 0 {
        if nb * l > i32::MAX as usize || c.div_ceil(256) > 65535 {
            crate::op_bail!("causal_conv: {nb} x {l} rows of {c} channels exceed the CUDA kernel's grid");
        }
        let cfg = LaunchConfig { grid_dim: ((nb * l) as u32, c.div_ceil(256) as u32, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 };
        launch!(cu, Kernel::CausalConv, cfg, x.ptr(), w.ptr(), bias_p, state_p, y.ptr(), dims.0, dims.1, dims.2, dims.3, silu as i32)?;
    }
    if st.numel() > 0 {
        launch!(cu, Kernel::CausalConvState, grid_for(st.numel(), 256), x.ptr(), state_p, st.ptr(), dims.0, dims.1, dims.2, dims.3)?;
    }
    Ok((y, st))
}
