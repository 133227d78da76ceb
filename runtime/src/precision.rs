//! Reduced-precision weights (`lt2c --dtype bf16|fp16`): how their bytes are stored in model.bin
//! and how fp32 values round to them. Only weights of matrix products use these types; backends
//! round the activation operand the same way, so CPU and CUDA multiply the same numbers.

use crate::plan::DType;

/// Bytes per element of a stored weight of this type.
pub fn stored_size(d: DType) -> usize {
    match d {
        DType::F32 => 4,
        DType::I64 => 8,
        DType::Bool => 1,
        DType::Bf16 | DType::F16 => 2,
    }
}

/// Encodes fp32 values as little-endian bf16/fp16 (round to nearest even).
pub fn encode(d: DType, xs: &[f32]) -> Vec<u8> {
    match d {
        DType::Bf16 => xs.iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect(),
        DType::F16 => xs.iter().flat_map(|&x| half::f16::from_f32(x).to_le_bytes()).collect(),
        _ => xs.iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

/// Decodes little-endian bf16/fp16 bytes to fp32 (exact).
pub fn decode(d: DType, bytes: &[u8]) -> Vec<f32> {
    let pairs = bytes.chunks_exact(2).map(|c| [c[0], c[1]]);
    match d {
        DType::F16 => pairs.map(|b| half::f16::from_le_bytes(b).to_f32()).collect(),
        _ => pairs.map(|b| half::bf16::from_le_bytes(b).to_f32()).collect(),
    }
}

/// Rounds fp32 values in place to the nearest value of `d` (no-op for F32).
pub fn round_in_place(d: DType, xs: &mut [f32]) {
    match d {
        DType::Bf16 => xs.iter_mut().for_each(|x| *x = half::bf16::from_f32(*x).to_f32()),
        DType::F16 => xs.iter_mut().for_each(|x| *x = half::f16::from_f32(*x).to_f32()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rounding() {
        let xs = [1.0f32, -2.5, 3.140625, 1e-3, 65504.0];
        for d in [DType::Bf16, DType::F16] {
            let mut r = xs;
            round_in_place(d, &mut r);
            assert_eq!(decode(d, &encode(d, &xs)), r.to_vec());
        }
        // bf16 keeps 8 significant bits: 1 + 2^-9 rounds to 1, 1 + 3*2^-9 to 1 + 2^-7.
        let mut v = [1.0 + 2f32.powi(-9), 1.0 + 3.0 * 2f32.powi(-9)];
        round_in_place(DType::Bf16, &mut v);
        assert_eq!(v, [1.0, 1.0 + 2f32.powi(-7)]);
    }
}
