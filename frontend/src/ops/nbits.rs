//! Dequantizing MatMulNBits' weight (onnxruntime's ContribOperators.md): B holds, for each of
//! the N output columns, ceil(K / block_size) blocks of `block_size` values of `bits` bits each,
//! packed little-endian (value i of a block at bit i * bits of its blob, low bits first); value
//! q of block j of column n means (q - zero_point[n][j]) * scale[n][j]. Zero points default to
//! 2^(bits - 1); given as uint8 they are packed the same way (one row of ceil(blocks * bits / 8)
//! bytes per column), as floats one per scale.

/// One MatMulNBits weight as the importer found it (uint8 data already as float values 0..255).
pub(super) struct Quantized<'a> {
    pub k: i64,
    pub n: i64,
    pub bits: i64,
    pub block: i64,
    /// B: [N, blocks, blob bytes].
    pub packed: &'a [f32],
    /// [N * blocks].
    pub scales: &'a [f32],
    pub zero_points: Option<&'a [f32]>,
    /// The zero points are uint8 `bits`-packed (else one float per scale).
    pub zero_points_packed: bool,
}

/// `bits`-wide value number `i` of a little-endian packed byte row.
fn unpack(row: &[f32], i: usize, bits: usize) -> u32 {
    let bit = i * bits;
    let (byte, shift) = (bit / 8, bit % 8);
    let lo = row.get(byte).copied().unwrap_or(0.0) as u32;
    let hi = row.get(byte + 1).copied().unwrap_or(0.0) as u32;
    ((lo | hi << 8) >> shift) & ((1u32 << bits) - 1)
}

/// The weight as [N, K] floats (row n: output column n), or why it cannot be read.
pub(super) fn dequantize(q: &Quantized) -> Result<Vec<f32>, String> {
    if ![2, 4, 8].contains(&q.bits) {
        return Err(format!("bits = {} (2, 4 and 8 are supported)", q.bits));
    }
    if q.k <= 0 || q.n <= 0 || q.block < 16 || q.block & (q.block - 1) != 0 {
        return Err(format!("K = {}, N = {}, block_size = {} (a power of two >= 16)", q.k, q.n, q.block));
    }
    let (k, n, bits, block) = (q.k as usize, q.n as usize, q.bits as usize, q.block as usize);
    let blocks = k.div_ceil(block);
    let blob = block * bits / 8;
    if q.packed.len() != n * blocks * blob {
        return Err(format!("B holds {} bytes, not N * blocks * blob = {n} * {blocks} * {blob}", q.packed.len()));
    }
    if q.scales.len() != n * blocks {
        return Err(format!("scales holds {} values, not N * blocks = {}", q.scales.len(), n * blocks));
    }
    let zp_row = (blocks * bits).div_ceil(8);
    match (q.zero_points, q.zero_points_packed) {
        (Some(z), true) if z.len() != n * zp_row => return Err(format!("packed zero_points hold {} bytes, not {}", z.len(), n * zp_row)),
        (Some(z), false) if z.len() != n * blocks => return Err(format!("zero_points hold {} values, not N * blocks = {}", z.len(), n * blocks)),
        _ => {}
    }
    let mid = (1u32 << (bits - 1)) as f32;
    let mut w = vec![0f32; n * k];
    for col in 0..n {
        for j in 0..blocks {
            let s = q.scales[col * blocks + j];
            let zp = match q.zero_points {
                None => mid,
                Some(z) if q.zero_points_packed => unpack(&z[col * zp_row..(col + 1) * zp_row], j, bits) as f32,
                Some(z) => z[col * blocks + j],
            };
            let row = &q.packed[(col * blocks + j) * blob..(col * blocks + j + 1) * blob];
            for i in 0..block.min(k - j * block) {
                w[col * k + j * block + i] = (unpack(row, i, bits) as f32 - zp) * s;
            }
        }
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs values of `bits` bits little-endian into bytes (as floats), the way onnxruntime does.
    fn pack(vals: &[u32], bits: usize) -> Vec<f32> {
        let mut out = vec![0u32; (vals.len() * bits).div_ceil(8)];
        for (i, &v) in vals.iter().enumerate() {
            let bit = i * bits;
            out[bit / 8] |= (v << (bit % 8)) & 0xff;
            if bit % 8 + bits > 8 {
                out[bit / 8 + 1] |= v >> (8 - bit % 8);
            }
        }
        out.into_iter().map(|b| b as f32).collect()
    }

    #[test]
    fn four_bit_blocks_with_and_without_zero_points() {
        // N = 2, K = 40, block 32: two blocks per column, the second one partly used.
        let (n, k, block, bits) = (2usize, 40usize, 32usize, 4usize);
        let vals: Vec<u32> = (0..n * 2 * block).map(|i| (i * 7 % 16) as u32).collect();
        let packed: Vec<f32> = vals.chunks(block).flat_map(|b| pack(b, bits)).collect();
        let scales = [0.5f32, 2.0, -1.0, 0.25];
        let q = Quantized { k: k as i64, n: n as i64, bits: 4, block: block as i64, packed: &packed, scales: &scales, zero_points: None, zero_points_packed: false };
        let w = dequantize(&q).unwrap();
        for col in 0..n {
            for kk in 0..k {
                let (j, i) = (kk / block, kk % block);
                let want = (vals[(col * 2 + j) * block + i] as f32 - 8.0) * scales[col * 2 + j];
                assert_eq!(w[col * k + kk], want, "column {col}, k {kk}");
            }
        }
        // Packed uint8 zero points: one byte holds both blocks' 4-bit values.
        let zps = [3u32, 12, 0, 15];
        let zp: Vec<f32> = zps.chunks(2).flat_map(|z| pack(z, 4)).collect();
        let q = Quantized { zero_points: Some(&zp), zero_points_packed: true, ..q };
        let w = dequantize(&q).unwrap();
        assert_eq!(w[0], (vals[0] as f32 - 3.0) * 0.5);
        assert_eq!(w[k + 35], (vals[(2 + 1) * block + 3] as f32 - 15.0) * 0.25);
        // Float zero points, one per scale.
        let zf = [1.5f32, 0.0, 2.0, -1.0];
        let q = Quantized { zero_points: Some(&zf), zero_points_packed: false, ..q };
        assert_eq!(dequantize(&q).unwrap()[k + 33], (vals[(2 + 1) * block + 1] as f32 + 1.0) * 0.25);
    }

    #[test]
    fn two_and_eight_bits_and_bad_sizes() {
        for bits in [2usize, 8] {
            let vals: Vec<u32> = (0..16u32).map(|i| i % (1 << bits)).collect();
            let packed = pack(&vals, bits);
            let q = Quantized { k: 16, n: 1, bits: bits as i64, block: 16, packed: &packed, scales: &[1.0], zero_points: None, zero_points_packed: false };
            let mid = (1u32 << (bits - 1)) as f32;
            assert_eq!(dequantize(&q).unwrap(), vals.iter().map(|&v| v as f32 - mid).collect::<Vec<_>>(), "{bits} bits");
        }
        let q = Quantized { k: 16, n: 1, bits: 3, block: 16, packed: &[0.0; 6], scales: &[1.0], zero_points: None, zero_points_packed: false };
        assert!(dequantize(&q).unwrap_err().contains("bits = 3"));
        let q = Quantized { bits: 4, packed: &[0.0; 7], ..q };
        assert!(dequantize(&q).unwrap_err().contains("B holds 7 bytes"));
    }
}
