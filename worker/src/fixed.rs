//! Fixed-size little-endian records: what tasks hand each other in binary
//! files and what they spill to scratch, read back whole.

/// A record of fixed size.
pub trait Fixed: Sized {
    /// Bytes per record.
    const SIZE: usize;
    /// Appends the record.
    fn put(&self, out: &mut Vec<u8>);
    /// Reads one from exactly `SIZE` bytes.
    fn get(b: &[u8]) -> Self;
}

/// The `u64` at byte `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The `u32` at byte `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl Fixed for u32 {
    const SIZE: usize = 4;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u32_at(b, 0)
    }
}

impl Fixed for u64 {
    const SIZE: usize = 8;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        u64_at(b, 0)
    }
}

/// `items` as bytes.
pub fn encode<T: Fixed>(items: &[T]) -> Vec<u8> {
    let mut out = Vec::with_capacity(items.len() * T::SIZE);
    for i in items {
        i.put(&mut out);
    }
    out
}
