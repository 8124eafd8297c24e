//! Locality-sensitive hashing over MinHash signatures: the signature is
//! cut into `bands` bands of `rows` values and each band hashed to a key;
//! documents sharing any band key are candidates. Two documents of Jaccard
//! similarity `s` become candidates with probability `1 - (1 - s^r)^b`.

/// The band keys of a signature: one per band, the band's index mixed in
/// so equal values in different bands do not collide.
pub fn band_keys(signature: &[u32], bands: usize, rows: usize) -> Vec<u64> {
    let mut out = Vec::new();
    band_keys_into(signature, bands, rows, &mut Vec::new(), &mut out);
    out
}

/// [`band_keys`] into `out` (cleared first), with `bytes` as scratch: both
/// reused from one signature to the next.
pub fn band_keys_into(
    signature: &[u32],
    bands: usize,
    rows: usize,
    bytes: &mut Vec<u8>,
    out: &mut Vec<u64>,
) {
    let rows = rows.max(1);
    out.clear();
    bytes.resize(rows * 4, 0);
    for (band, values) in signature.chunks_exact(rows).take(bands).enumerate() {
        for (b, v) in bytes.chunks_exact_mut(4).zip(values) {
            b.copy_from_slice(&v.to_le_bytes());
        }
        out.push(twox_hash::XxHash3_64::oneshot_with_seed(band as u64, bytes));
    }
}

/// The chance two documents of similarity `s` share a bucket.
pub fn candidate_probability(s: f64, bands: u32, rows: u32) -> f64 {
    1.0 - (1.0 - s.powi(rows as i32)).powi(bands as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_bands_give_equal_keys_and_bands_differ() {
        let a = vec![1u32, 2, 3, 4, 5, 6];
        let mut b = a.clone();
        b[5] = 99;
        let (ka, kb) = (band_keys(&a, 3, 2), band_keys(&b, 3, 2));
        assert_eq!(ka[..2], kb[..2]);
        assert_ne!(ka[2], kb[2]);
        let same = vec![7u32; 4];
        let k = band_keys(&same, 2, 2);
        assert_ne!(k[0], k[1], "the band index is part of the key");
        assert!(candidate_probability(0.9, 9, 13) > 0.9);
        assert!(candidate_probability(0.5, 9, 13) < 0.01);
    }
}
