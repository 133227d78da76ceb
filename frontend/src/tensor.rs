//! Decoding ONNX TensorProtos (inline data, raw bytes, or external data files next to the
//! model) into compile-time tensors.

use std::path::Path;
use std::sync::Arc;

use tract_onnx::pb::TensorProto;

use crate::value::{Known, KnownData};
use lt2_runtime::dim::Dim;

/// ONNX TensorProto.DataType codes lt2c reads.
pub mod dt {
    pub const FLOAT: i32 = 1;
    pub const UINT8: i32 = 2;
    pub const INT32: i32 = 6;
    pub const INT64: i32 = 7;
    pub const FLOAT16: i32 = 10;
    pub const BOOL: i32 = 9;
    pub const DOUBLE: i32 = 11;
    pub const BFLOAT16: i32 = 16;
}

/// Whether `t` is a float type lt2c computes in float32: float, double, and the half types
/// (whose values float32 holds exactly; `--dtype bf16|fp16` chooses half-precision matmuls).
pub fn is_float(t: i32) -> bool {
    matches!(t, dt::FLOAT | dt::DOUBLE | dt::FLOAT16 | dt::BFLOAT16)
}

/// Decodes a tensor; `base` is the model's directory for external data.
pub fn decode(t: &TensorProto, base: Option<&Path>) -> Result<Known, String> {
    let shape: Vec<usize> = t.dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("negative dim {d}"))).collect::<Result<_, _>>()?;
    let n: usize = shape.iter().product();
    let raw_owned;
    let raw: &[u8] = if t.data_location == Some(1) {
        let get = |k: &str| t.external_data.iter().find(|e| e.key == k).map(|e| e.value.clone());
        let loc = get("location").ok_or("external data without a location")?;
        let base = base.ok_or("external data, but the model's directory is unknown")?;
        let path = base.join(&loc);
        let off: u64 = get("offset").map(|s| s.parse().map_err(|_| "bad external offset")).transpose()?.unwrap_or(0);
        // Read only this tensor's bytes: exporters put every weight in one multi-GB file.
        let io = |e: std::io::Error| format!("external data file {}: {e}", path.display());
        let mut f = std::fs::File::open(&path).map_err(io)?;
        let file_len = f.metadata().map_err(io)?.len();
        let len: u64 = get("length").map(|s| s.parse().map_err(|_| "bad external length")).transpose()?.unwrap_or(file_len.saturating_sub(off));
        if off.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(format!("external data {} is shorter than offset {off} + length {len}", path.display()));
        }
        use std::io::{Read, Seek, SeekFrom};
        f.seek(SeekFrom::Start(off)).map_err(io)?;
        let mut buf = vec![0u8; len as usize];
        f.read_exact(&mut buf).map_err(io)?;
        raw_owned = buf;
        &raw_owned
    } else {
        &t.raw_data
    };
    let data = match t.data_type {
        dt::FLOAT => KnownData::F32(Arc::new(if !raw.is_empty() {
            raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
        } else {
            t.float_data.clone()
        })),
        dt::DOUBLE => KnownData::F32(Arc::new(if !raw.is_empty() {
            raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])) as f32).collect()
        } else {
            t.double_data.iter().map(|&x| x as f32).collect()
        })),
        // Half types: raw little-endian bits, or one value's bits per int32_data entry.
        dt::FLOAT16 | dt::BFLOAT16 => {
            let bits: Vec<u16> = if !raw.is_empty() { raw.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect() } else { t.int32_data.iter().map(|&x| x as u16).collect() };
            let f = |b: u16| if t.data_type == dt::FLOAT16 { half::f16::from_bits(b).to_f32() } else { half::bf16::from_bits(b).to_f32() };
            KnownData::F32(Arc::new(bits.into_iter().map(f).collect()))
        }
        dt::INT64 => KnownData::I64(
            if !raw.is_empty() { raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect::<Vec<i64>>() } else { t.int64_data.clone() }
                .into_iter()
                .map(Dim::Const)
                .collect(),
        ),
        dt::INT32 => KnownData::I64(
            if !raw.is_empty() { raw.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect::<Vec<i64>>() } else { t.int32_data.iter().map(|&x| x as i64).collect() }
                .into_iter()
                .map(Dim::Const)
                .collect(),
        ),
        // Bytes (MatMulNBits' packed weights and zero points): their values 0..255, which
        // float32 holds exactly; no op computes on uint8 at run time.
        dt::UINT8 => KnownData::F32(Arc::new(if !raw.is_empty() { raw.iter().map(|&b| b as f32).collect() } else { t.int32_data.iter().map(|&x| x as u8 as f32).collect() })),
        dt::BOOL => KnownData::Bool(if !raw.is_empty() { raw.iter().map(|&b| b != 0).collect() } else { t.int32_data.iter().map(|&x| x != 0).collect() }),
        other => return Err(format!("tensor element type {other} is not supported (float, double, float16, bfloat16, int32, int64, uint8, bool are)")),
    };
    let len = match &data {
        KnownData::F32(v) => v.len(),
        KnownData::I64(v) => v.len(),
        KnownData::Bool(v) => v.len(),
    };
    if len != n {
        return Err(format!("holds {len} elements but its shape {shape:?} needs {n}"));
    }
    Ok(Known { shape, data, source: None })
}
