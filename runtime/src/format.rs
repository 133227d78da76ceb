//! model.bin: the file lt2c writes and the runtime maps.
//!
//! Layout (all integers little-endian):
//! ```text
//! 0   magic  b"LT2CMODL"
//! 8   u32    format version (FORMAT_VERSION)
//! 12  u32    reserved (0)
//! 16  u64    manifest length M
//! 24  u64    data blob offset W (64-byte aligned)
//! 32  u64    data blob length N
//! 40  M      prost-encoded `Manifest`
//! W   N      the weights, then the kernel images (cubins, PTX), each at a 64-byte aligned
//!            offset inside the blob that its manifest entry gives
//! W+N u64    xxh3-64 checksum of every byte before it
//! ```
//!
//! Kernel images (manifest field 7) came without a version bump: a reader that predates them
//! skips the field and finds its weights where they always were, and a file that predates them
//! reads as one without kernels.

use std::io::Write;
use std::path::Path;

use prost::Message;

use crate::error::RuntimeError;
use crate::plan::Manifest;

/// The magic bytes every model.bin starts with.
pub const MAGIC: &[u8; 8] = b"LT2CMODL";
/// The format this runtime reads and writes; bump on any incompatible change.
pub const FORMAT_VERSION: u32 = 1;
/// Alignment of the data blob and of each weight and kernel image inside it.
pub const WEIGHT_ALIGN: usize = 64;
const HEADER_LEN: usize = 40;

/// A weight's bytes to be placed in the blob; the manifest's `WeightEntry` offsets are filled
/// in by `write`.
pub struct WeightBytes<'a> {
    pub bytes: &'a [u8],
}

fn align_up(x: usize, a: usize) -> usize {
    x.div_ceil(a) * a
}

/// Serialises a manifest, its weights (in `manifest.weights` order) and its kernel images (in
/// `manifest.kernels` order) into model.bin bytes. Fills each entry's offset and nbytes.
pub fn encode(manifest: Manifest, weights: &[WeightBytes<'_>], kernels: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    emit(&mut out, manifest, weights, kernels).expect("writing to a Vec cannot fail");
    out
}

/// Writes model.bin straight to `path` (weights streamed, never copied into one buffer);
/// returns the file size. `kernels` as for `encode`.
pub fn write_model_file(path: &Path, manifest: Manifest, weights: &[WeightBytes<'_>], kernels: &[&[u8]]) -> Result<u64, RuntimeError> {
    let io = |e| RuntimeError::Io { path: path.display().to_string(), err: e };
    // Written beside the target and renamed into place: a reader never sees half a file.
    let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    tmp_name.push(format!(".{}.partial", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let file = std::fs::File::create(&tmp)?;
        let mut w = std::io::BufWriter::with_capacity(1 << 22, file);
        let n = emit(&mut w, manifest, weights, kernels)?;
        w.flush()?;
        drop(w);
        std::fs::rename(&tmp, path)?;
        Ok(n)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Writes the file to `out` while hashing it; returns the bytes written.
fn emit<W: Write>(out: &mut W, mut manifest: Manifest, weights: &[WeightBytes<'_>], kernels: &[&[u8]]) -> std::io::Result<u64> {
    assert_eq!(manifest.weights.len(), weights.len(), "one byte slice per weight entry");
    assert_eq!(manifest.kernels.len(), kernels.len(), "one byte slice per kernel image");
    let mut off = 0usize;
    let mut place = |len: usize| {
        off = align_up(off, WEIGHT_ALIGN);
        let at = off;
        off += len;
        (at as u64, len as u64)
    };
    for (e, w) in manifest.weights.iter_mut().zip(weights) {
        (e.offset, e.nbytes) = place(w.bytes.len());
    }
    for (e, k) in manifest.kernels.iter_mut().zip(kernels) {
        (e.offset, e.nbytes) = place(k.len());
    }
    let blob_len = off;
    let man = manifest.encode_to_vec();
    let blob_off = align_up(HEADER_LEN + man.len(), WEIGHT_ALIGN);
    let mut h = Hashing { inner: out, hasher: xxhash_rust::xxh3::Xxh3::new(), written: 0 };
    h.write_all(MAGIC)?;
    h.write_all(&FORMAT_VERSION.to_le_bytes())?;
    h.write_all(&0u32.to_le_bytes())?;
    h.write_all(&(man.len() as u64).to_le_bytes())?;
    h.write_all(&(blob_off as u64).to_le_bytes())?;
    h.write_all(&(blob_len as u64).to_le_bytes())?;
    h.write_all(&man)?;
    h.pad_to(blob_off as u64)?;
    let sections = manifest.weights.iter().map(|e| e.offset).zip(weights.iter().map(|w| w.bytes));
    for (offset, bytes) in sections.chain(manifest.kernels.iter().map(|e| e.offset).zip(kernels.iter().copied())) {
        h.pad_to(blob_off as u64 + offset)?;
        h.write_all(bytes)?;
    }
    h.pad_to((blob_off + blob_len) as u64)?;
    let sum = h.hasher.digest();
    h.inner.write_all(&sum.to_le_bytes())?;
    Ok(h.written + 8)
}

/// A writer that hashes everything passing through it.
struct Hashing<'a, W: Write> {
    inner: &'a mut W,
    hasher: xxhash_rust::xxh3::Xxh3,
    written: u64,
}

impl<W: Write> Hashing<'_, W> {
    fn pad_to(&mut self, pos: u64) -> std::io::Result<()> {
        const ZEROS: [u8; 64] = [0; 64];
        while self.written < pos {
            let n = ((pos - self.written) as usize).min(ZEROS.len());
            self.write_all(&ZEROS[..n])?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A model.bin opened and checked: the manifest decoded, the weights and kernel images mapped.
pub struct ModelFile {
    pub manifest: Manifest,
    pub format_version: u32,
    map: memmap2::Mmap,
    blob_off: usize,
    blob_len: usize,
}

impl ModelFile {
    /// Maps and validates the file (magic, version, bounds, checksum, weight and kernel tables).
    pub fn open(path: &Path) -> Result<ModelFile, RuntimeError> {
        let io = |e| RuntimeError::Io { path: path.display().to_string(), err: e };
        let f = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the file is opened read-only; the runtime treats concurrent modification of a
        // model file as unsupported (as every mmap-based loader does).
        let map = unsafe { memmap2::Mmap::map(&f) }.map_err(io)?;
        Self::from_map(map)
    }

    fn from_map(map: memmap2::Mmap) -> Result<ModelFile, RuntimeError> {
        let b: &[u8] = &map;
        if b.len() < 8 || &b[..8] != MAGIC {
            return Err(RuntimeError::BadMagic);
        }
        if b.len() < HEADER_LEN + 8 {
            return Err(RuntimeError::Corrupt(format!("file is {} bytes, shorter than the header", b.len())));
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        let version = u32_at(8);
        if version != FORMAT_VERSION {
            return Err(RuntimeError::UnsupportedVersion { found: version, supported: FORMAT_VERSION });
        }
        let man_len = u64_at(16) as usize;
        let blob_off = u64_at(24) as usize;
        let blob_len = u64_at(32) as usize;
        let end = blob_off.checked_add(blob_len).and_then(|e| e.checked_add(8));
        if end != Some(b.len()) || HEADER_LEN.saturating_add(man_len) > blob_off || blob_off % WEIGHT_ALIGN != 0 {
            return Err(RuntimeError::Corrupt(format!(
                "section sizes do not add up to the file size ({} bytes): truncated or damaged file",
                b.len()
            )));
        }
        let body = &b[..b.len() - 8];
        let stored = u64_at(b.len() - 8);
        if xxhash_rust::xxh3::xxh3_64(body) != stored {
            return Err(RuntimeError::Corrupt("checksum mismatch: the file was damaged after it was written".into()));
        }
        let manifest = Manifest::decode(&b[HEADER_LEN..HEADER_LEN + man_len])
            .map_err(|e| RuntimeError::Corrupt(format!("manifest does not decode: {e}")))?;
        let inside = |offset: u64, nbytes: u64| offset.is_multiple_of(WEIGHT_ALIGN as u64) && offset.saturating_add(nbytes) <= blob_len as u64;
        if let Some(w) = manifest.weights.iter().find(|w| !inside(w.offset, w.nbytes)) {
            return Err(RuntimeError::Corrupt(format!("weight `{}` lies outside the weight blob", w.name)));
        }
        if let Some(k) = manifest.kernels.iter().find(|k| !inside(k.offset, k.nbytes)) {
            return Err(RuntimeError::Corrupt(format!("kernel image {} for {} lies outside the data blob", k.file, k.arch)));
        }
        Ok(ModelFile { manifest, format_version: version, map, blob_off, blob_len })
    }

    /// The raw bytes of weight `i` (64-byte aligned in the mapped file).
    pub fn weight_bytes(&self, i: usize) -> &[u8] {
        let w = &self.manifest.weights[i];
        let s = self.blob_off + w.offset as usize;
        &self.map[s..s + w.nbytes as usize]
    }

    /// The bytes of kernel image `i` (`manifest.kernels[i]`; 64-byte aligned in the mapped file).
    pub fn kernel_bytes(&self, i: usize) -> &[u8] {
        let k = &self.manifest.kernels[i];
        let s = self.blob_off + k.offset as usize;
        &self.map[s..s + k.nbytes as usize]
    }

    /// Bytes of the data blob: the weights and the kernel images, with alignment padding.
    pub fn weight_blob_len(&self) -> usize {
        self.blob_len
    }
}

/// Writes model.bin bytes to `path`.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), RuntimeError> {
    std::fs::write(path, bytes).map_err(|e| RuntimeError::Io { path: path.display().to_string(), err: e })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{DType, ImageKind, KernelImage, WeightEntry};

    fn sample() -> Vec<u8> {
        let m = Manifest {
            producer: "test".into(),
            weights: vec![
                WeightEntry { name: "a".into(), dtype: DType::F32 as i32, shape: vec![3], ..Default::default() },
                WeightEntry { name: "b".into(), dtype: DType::F32 as i32, shape: vec![1], ..Default::default() },
            ],
            ..Default::default()
        };
        let a: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let b: Vec<u8> = 7.5f32.to_le_bytes().to_vec();
        encode(m, &[WeightBytes { bytes: &a }, WeightBytes { bytes: &b }], &[])
    }

    fn open_bytes(bytes: &[u8]) -> Result<ModelFile, RuntimeError> {
        let dir = std::env::temp_dir().join(format!("lt2c-format-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::write(&dir, bytes).unwrap();
        let r = ModelFile::open(&dir);
        let _ = std::fs::remove_file(&dir);
        r
    }

    #[test]
    fn round_trip_with_aligned_weights() {
        let f = open_bytes(&sample()).unwrap();
        assert_eq!(f.manifest.producer, "test");
        assert_eq!(f.manifest.weights[1].offset % 64, 0);
        assert_eq!(f.weight_bytes(1), 7.5f32.to_le_bytes());
        assert_eq!(f.weight_bytes(0).len(), 12);
    }

    #[test]
    fn rejects_bad_magic_version_truncation_and_bit_flips() {
        let good = sample();
        let mut m = good.clone();
        m[0] = b'X';
        assert!(matches!(open_bytes(&m), Err(RuntimeError::BadMagic)));
        let mut v = good.clone();
        v[8] = 99;
        assert!(matches!(open_bytes(&v), Err(RuntimeError::UnsupportedVersion { found: 99, .. })));
        assert!(matches!(open_bytes(&good[..good.len() - 3]), Err(RuntimeError::Corrupt(_))));
        let mut flip = good.clone();
        let n = flip.len();
        flip[n - 12] ^= 1;
        assert!(matches!(open_bytes(&flip), Err(RuntimeError::Corrupt(_))));
        assert!(matches!(open_bytes(b"LT2C"), Err(RuntimeError::BadMagic)));
    }

    #[test]
    fn kernel_images_follow_the_weights_aligned_and_under_the_checksum() {
        let image = |arch: &str, kind: ImageKind| KernelImage { file: "gdn.cu".into(), arch: arch.into(), kind: kind as i32, ..Default::default() };
        let m = Manifest {
            weights: vec![WeightEntry { name: "a".into(), dtype: DType::F32 as i32, shape: vec![3], ..Default::default() }],
            kernels: vec![image("sm_80", ImageKind::Cubin), image("compute_80", ImageKind::Ptx)],
            ..Default::default()
        };
        let a: Vec<u8> = [1.0f32, 2.0, 3.0].iter().flat_map(|x| x.to_le_bytes()).collect();
        let cubin: Vec<u8> = (0..200u8).collect();
        let ptx = b"//\n.version 8.8\n.target sm_80\n".to_vec();
        let good = encode(m, &[WeightBytes { bytes: &a }], &[&cubin, &ptx]);
        let f = open_bytes(&good).unwrap();
        assert_eq!(f.weight_bytes(0), &a[..]);
        assert_eq!(f.kernel_bytes(0), &cubin[..]);
        assert_eq!(f.kernel_bytes(1), &ptx[..]);
        assert!(f.manifest.kernels.iter().all(|k| k.offset % 64 == 0 && k.offset >= 12));
        assert_eq!(f.manifest.kernels[1].nbytes, ptx.len() as u64);
        // The last image's bytes end the blob, just before the checksum.
        let mut flip = good.clone();
        let n = flip.len();
        flip[n - 9] ^= 1;
        assert!(matches!(open_bytes(&flip), Err(RuntimeError::Corrupt(_))));
    }
}
