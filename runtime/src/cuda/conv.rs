//! Launch wrapper for the depthwise causal convolution with state. Semantics: `cpu/conv.rs`.

use crate::error::OpError;
use crate::op_bail;
use crate::plan::DType;

use super::kernels::Kernel;
use super::{expect_f32, grid_for, launch, Cuda, CudaBuf};

/// Returns (y [B, L, C], state_out [B, C, k-1]); see `cpu::conv::causal_conv`.
pub(crate) fn causal_conv(cu: &Cuda, x: &CudaBuf, w: &CudaBuf, bias: Option<&CudaBuf>, state: Option<&CudaBuf>, activation: &str) -> Result<(CudaBuf, CudaBuf), OpError> {
    let silu = match activation {
        "" | "none" => false,
        "silu" | "swish" => true,
        other => op_bail!("causal_conv: unsupported activation {other:?} (expected \"\", \"none\", \"silu\" or \"swish\")"),
    };
    expect_f32("causal_conv", "x", x)?;
    expect_f32("causal_conv", "weight", w)?;
    let &[nb, l, c] = x.shape.as_slice() else { op_bail!("causal_conv: x must be [B, L, C], got shape {:?}", x.shape) };
    let k = match w.shape.as_slice() {
        &[wc, k] | &[wc, 1, k] if wc == c => k,
        _ => op_bail!("causal_conv: weight must be [C, k] or [C, 1, k] with C = {c}, got shape {:?}", w.shape),
    };
    if k == 0 {
        op_bail!("causal_conv: kernel size is 0 (weight shape {:?})", w.shape);
    }
    if let Some(b) = bias {
        if b.shape != [c] {
            op_bail!("causal_conv: bias must be [{c}], got shape {:?}", b.shape);
        }
        expect_f32("causal_conv", "bias", b)?;
    }
    if let Some(s) = state {
        if s.shape != [nb, c, k - 1] {
            op_bail!("causal_conv: state must be [B, C, k-1] = [{nb}, {c}, {}], got shape {:?}", k - 1, s.shape);
        }
        expect_f32("causal_conv", "state", s)?;
    }
    let y = cu.alloc(vec![nb, l, c], DType::F32)?;
    let st = cu.alloc(vec![nb, c, k - 1], DType::F32)?;
    let (bias_p, state_p) = (bias.map_or(0, |b| b.ptr()), state.map_or(0, |s| s.ptr()));
    let dims = (nb as i64, l as i64, c as i64, k as i64);
    if y.numel() > 0 {
        launch!(cu, Kernel::CausalConv, grid_for(y.numel(), 256), x.ptr(), w.ptr(), bias_p, state_p, y.ptr(), dims.0, dims.1, dims.2, dims.3, silu as i32)?;
    }
    if st.numel() > 0 {
        launch!(cu, Kernel::CausalConvState, grid_for(st.numel(), 256), x.ptr(), state_p, st.ptr(), dims.0, dims.1, dims.2, dims.3)?;
    }
    Ok((y, st))
}
