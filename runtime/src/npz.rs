//! Reading and writing .npz files of named tensors: how `lt2c run` takes inputs and gives
//! outputs, keyed by the ONNX graph's input and output names.

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;

use npyz::npz::{NpzArchive, NpzWriter};
use npyz::WriterBuilder;

use crate::error::RuntimeError;
use crate::tensor::{Data, Tensor};

/// Reads every array of an .npz file. Supports float32/float64/float16 (read as f32, float16
/// exactly: the inputs of an fp16 export), int64/int32 (read as i64) and bool arrays in C order.
pub fn read_npz(path: &Path) -> Result<HashMap<String, Tensor>, RuntimeError> {
    let p = path.display().to_string();
    let mut ar = NpzArchive::open(path).map_err(|e| RuntimeError::Io { path: p.clone(), err: e })?;
    read_archive(&mut ar, &p)
}

fn read_archive<R: Read + Seek>(ar: &mut NpzArchive<R>, p: &str) -> Result<HashMap<String, Tensor>, RuntimeError> {
    let names: Vec<String> = ar.array_names().map(|s| s.to_string()).collect();
    let mut out = HashMap::new();
    for name in names {
        let bad = |m: String| RuntimeError::Npz(format!("{p}: array `{name}`: {m}"));
        let arr = ar.by_name(&name).map_err(|e| bad(e.to_string()))?.ok_or_else(|| bad("vanished".into()))?;
        if arr.order() != npyz::Order::C {
            return Err(bad("Fortran order is not supported; save with np.ascontiguousarray".into()));
        }
        let shape: Vec<usize> = arr.shape().iter().map(|&d| d as usize).collect();
        let descr = arr.dtype().descr();
        let data = match descr.trim_matches('\'').trim_start_matches(['<', '|', '=']) {
            "f4" => Data::F32(arr.into_vec::<f32>().map_err(|e| bad(e.to_string()))?),
            "f8" => Data::F32(arr.into_vec::<f64>().map_err(|e| bad(e.to_string()))?.into_iter().map(|x| x as f32).collect()),
            "f2" => Data::F32(arr.into_vec::<half::f16>().map_err(|e| bad(e.to_string()))?.into_iter().map(f32::from).collect()),
            "i8" => Data::I64(arr.into_vec::<i64>().map_err(|e| bad(e.to_string()))?),
            "i4" => Data::I64(arr.into_vec::<i32>().map_err(|e| bad(e.to_string()))?.into_iter().map(i64::from).collect()),
            "b1" => Data::Bool(arr.into_vec::<bool>().map_err(|e| bad(e.to_string()))?),
            other => return Err(bad(format!("dtype `{other}` is not supported (use float32, float16, int64 or bool)"))),
        };
        out.insert(name, Tensor { shape, data });
    }
    Ok(out)
}

/// Writes named tensors to an .npz file (uncompressed), in the given order.
pub fn write_npz(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), RuntimeError> {
    let p = path.display().to_string();
    let io = |e: std::io::Error| RuntimeError::Io { path: p.clone(), err: e };
    let file = std::fs::File::create(path).map_err(io)?;
    let mut npz = NpzWriter::new(std::io::BufWriter::new(file));
    for (name, t) in tensors {
        let shape: Vec<u64> = t.shape.iter().map(|&d| d as u64).collect();
        match &t.data {
            Data::F32(v) => write_one(&mut npz, name, &shape, v.iter().copied()).map_err(io)?,
            Data::I64(v) => write_one(&mut npz, name, &shape, v.iter().copied()).map_err(io)?,
            Data::Bool(v) => write_one(&mut npz, name, &shape, v.iter().copied()).map_err(io)?,
        }
    }
    npz.zip_writer().finish().map_err(|e| RuntimeError::Npz(format!("{p}: {e}")))?;
    Ok(())
}

fn write_one<T, W>(npz: &mut NpzWriter<W>, name: &str, shape: &[u64], items: impl Iterator<Item = T>) -> std::io::Result<()>
where
    T: npyz::Serialize + npyz::AutoSerialize,
    W: std::io::Write + std::io::Seek,
{
    let stored = zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let mut w = npz.array::<T>(name, stored)?.default_dtype().shape(shape).begin_nd()?;
    w.extend(items)?;
    w.finish()
}
