//! The binary files the dedup stages hand each other. Fixed-width records
//! (band keys, exact keys, pairs, removed indices) are little-endian and
//! read whole; a signatures shard's documents are variable-length records
//! with an offsets index beside them, so a later stage fetches just the
//! documents it needs with ranged reads.

use std::ops::Range;

use super::DocRef;
use crate::dataset::location::Location;
use crate::executors::data_attempt::{DataAttempt, Upstream, dataset_error, read_bytes};
use crate::executors::{AttemptContext, TaskError};
pub use crate::fixed::{Fixed, encode};
use crate::fixed::{u32_at, u64_at};

/// A shard's document records.
pub const DOCS: &str = "docs.bin";
/// Their offsets: one `u64` per document and one for the end.
pub const DOCS_INDEX: &str = "docs.idx";

/// Bytes between two wanted document records that are read through
/// rather than split into another request.
const READ_THROUGH_BYTES: u64 = 64 << 10;

/// Largest id kept in a document record.
const ID_BYTES_MAX: usize = 4096;

/// One LSH band key of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct BandEntry {
    /// The band's hash (band index mixed in).
    pub key: u64,
    /// The document.
    pub doc: DocRef,
}

/// The exact-duplicate key of one document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExactEntry {
    /// Hash of the normalised text.
    pub key: u128,
    /// The document.
    pub doc: DocRef,
}

/// Two documents, `a < b`, and their Jaccard similarity, or
/// [`Pair::UNKNOWN`] for a candidate not yet verified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    /// The earlier document.
    pub a: DocRef,
    /// The later document.
    pub b: DocRef,
    /// Similarity, or [`Pair::UNKNOWN`].
    pub similarity: f32,
}

impl Pair {
    /// The similarity of a candidate that still needs verifying.
    pub const UNKNOWN: f32 = -1.0;

    /// The pair of `x` and `y` in order.
    pub fn new(x: DocRef, y: DocRef, similarity: f32) -> Self {
        Self {
            a: x.min(y),
            b: x.max(y),
            similarity,
        }
    }
}

impl Fixed for BandEntry {
    const SIZE: usize = 16;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.doc.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        Self {
            key: u64_at(b, 0),
            doc: u64_at(b, 8),
        }
    }
}

impl Fixed for ExactEntry {
    const SIZE: usize = 24;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.key.to_le_bytes());
        out.extend_from_slice(&self.doc.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        let mut k = [0u8; 16];
        k.copy_from_slice(&b[..16]);
        Self {
            key: u128::from_le_bytes(k),
            doc: u64_at(b, 16),
        }
    }
}

impl Fixed for Pair {
    const SIZE: usize = 20;
    fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.a.to_le_bytes());
        out.extend_from_slice(&self.b.to_le_bytes());
        out.extend_from_slice(&self.similarity.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        Self {
            a: u64_at(b, 0),
            b: u64_at(b, 8),
            similarity: f32::from_bits(u32_at(b, 16)),
        }
    }
}

/// The records in `bytes`; `what` names the file in the error when its
/// length is not a whole number of records.
pub fn decode<T: Fixed>(bytes: &[u8], what: &str) -> Result<Vec<T>, TaskError> {
    if !bytes.len().is_multiple_of(T::SIZE) {
        return Err(TaskError::permanent(format!(
            "{what}: {} bytes is not a whole number of {}-byte records",
            bytes.len(),
            T::SIZE
        )));
    }
    Ok(bytes.chunks_exact(T::SIZE).map(T::get).collect())
}

/// Reads the whole of `relative` below `location` as records.
pub async fn read_all<T: Fixed>(location: &Location, relative: &str) -> Result<Vec<T>, TaskError> {
    let bytes = read_bytes(location, relative).await?;
    decode(&bytes, &format!("{}/{relative}", location.url))
}

/// The records of every file of `ups`' outputs whose path `wanted`
/// accepts, upstream by upstream; stops early when the attempt is told to.
pub async fn gather<T: Fixed>(
    attempt: &DataAttempt,
    ctx: &AttemptContext,
    ups: &[Upstream],
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<T>, TaskError> {
    let mut out = Vec::new();
    for u in ups {
        attempt.stopped(ctx)?;
        for f in u.manifest.files.iter().filter(|f| wanted(&f.path)) {
            let records = read_all::<T>(&u.location, &f.path).await?;
            // The first file's records are taken as they are, not copied.
            if out.is_empty() {
                out = records;
            } else {
                out.extend(records);
            }
        }
    }
    Ok(out)
}

/// The content hashes of `ups`' outputs, for an input fingerprint.
pub fn content_hashes(ups: &[Upstream]) -> Vec<String> {
    ups.iter().map(|u| u.manifest.content_hash()).collect()
}

/// What a later stage needs of a document: its shingles (to verify),
/// its keep score (to choose a representative) and its id (to name it).
#[derive(Debug, Clone, PartialEq)]
pub struct DocRecord {
    /// Shingle hashes in text order, repeats included (sorting is left to
    /// the few records `verify` reads).
    pub shingles: Vec<u32>,
    /// Higher wins the representative's place; ties go to the earlier.
    pub keep: f64,
    /// The document's id, as text.
    pub id: String,
}

impl DocRecord {
    /// Appends the record of these parts (a record need not be built to
    /// be written).
    pub fn put(shingles: &[u32], keep: f64, id: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(&(shingles.len() as u32).to_le_bytes());
        for s in shingles {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&keep.to_le_bytes());
        let id = truncated(id, ID_BYTES_MAX);
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id.as_bytes());
    }

    /// Reads one record from exactly its bytes.
    pub fn get(b: &[u8], what: &str) -> Result<Self, TaskError> {
        let bad = || TaskError::permanent(format!("{what}: a document record is cut short"));
        let n = u32_at(b.get(..4).ok_or_else(bad)?, 0) as usize;
        let shingles_end = 4 + n * 4;
        let keep_end = shingles_end + 8;
        let fixed = b.get(..keep_end + 4).ok_or_else(bad)?;
        let shingles = fixed[4..shingles_end]
            .chunks_exact(4)
            .map(u32::get)
            .collect();
        let keep = f64::from_bits(u64_at(fixed, shingles_end));
        let id_len = u32_at(fixed, keep_end) as usize;
        let id = b.get(keep_end + 4..keep_end + 4 + id_len).ok_or_else(bad)?;
        Ok(Self {
            shingles,
            keep,
            id: String::from_utf8_lossy(id).into_owned(),
        })
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncated(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The records of documents `indices` (sorted, distinct) of the shard
/// whose output is `location`, fetched with ranged reads.
pub async fn read_docs(location: &Location, indices: &[u32]) -> Result<Vec<DocRecord>, TaskError> {
    if indices.is_empty() {
        return Ok(Vec::new());
    }
    let what = format!("{}/{DOCS}", location.url);
    let offsets: Vec<u64> = read_all(location, DOCS_INDEX).await?;
    let mut ranges = Vec::with_capacity(indices.len());
    for &i in indices {
        let i = i as usize;
        match (offsets.get(i), offsets.get(i + 1)) {
            (Some(&a), Some(&b)) if a <= b => ranges.push(a..b),
            _ => {
                return Err(TaskError::permanent(format!(
                    "{what}: no document {i} (the shard has {})",
                    offsets.len().saturating_sub(1)
                )));
            }
        }
    }
    // Records close together are fetched in one read: a store that does
    // not merge ranges itself (a local disk) would otherwise make one
    // request per document.
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in &ranges {
        match merged.last_mut() {
            Some(m) if r.start <= m.end.saturating_add(READ_THROUGH_BYTES) => {
                m.end = m.end.max(r.end)
            }
            _ => merged.push(r.clone()),
        }
    }
    let fetched = location
        .store
        .get_ranges(&location.path(DOCS), &merged)
        .await
        .map_err(|e| dataset_error(e.into()))?;
    let short = || TaskError::permanent(format!("{what}: a ranged read came back short"));
    let mut out = Vec::with_capacity(ranges.len());
    let mut k = 0;
    for r in ranges {
        // Both lists are in offset order, so the merged range holding `r`
        // is the current one or a later one.
        while merged.get(k).is_some_and(|m| m.end < r.end) {
            k += 1;
        }
        let (Some(m), Some(bytes)) = (merged.get(k), fetched.get(k)) else {
            return Err(short());
        };
        let at = (r.start - m.start) as usize..(r.end - m.start) as usize;
        let record = bytes.get(at).ok_or_else(short)?;
        out.push(DocRecord::get(record, &what)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    #[tokio::test]
    async fn documents_near_and_far_apart_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::parse(dir.path().to_str().unwrap()).unwrap();
        // About 4 KB a record, so skipping twenty leaves a gap wider than
        // what is read through.
        let docs: Vec<DocRecord> = (0..200u32)
            .map(|i| DocRecord {
                shingles: (0..1000).map(|k| i * 7 + k).collect(),
                keep: f64::from(i),
                id: format!("doc-{i}"),
            })
            .collect();
        let (mut bytes, mut offsets) = (Vec::new(), vec![0u64]);
        for d in &docs {
            DocRecord::put(&d.shingles, d.keep, &d.id, &mut bytes);
            offsets.push(bytes.len() as u64);
        }
        for (name, body) in [(DOCS, bytes), (DOCS_INDEX, encode(&offsets))] {
            loc.store
                .put(&loc.path(name), PutPayload::from(body))
                .await
                .unwrap();
        }
        let wanted = [0u32, 1, 2, 50, 51, 120, 199];
        let got = read_docs(&loc, &wanted).await.unwrap();
        let want: Vec<DocRecord> = wanted.iter().map(|&i| docs[i as usize].clone()).collect();
        assert_eq!(got, want);
        assert!(read_docs(&loc, &[200]).await.is_err());
    }

    #[test]
    fn records_round_trip() {
        let pairs = vec![Pair::new(9, 3, 0.5), Pair::new(1, 2, Pair::UNKNOWN)];
        assert_eq!(pairs[0].a, 3);
        assert_eq!(decode::<Pair>(&encode(&pairs), "p").unwrap(), pairs);
        let exact = vec![ExactEntry {
            key: u128::MAX - 7,
            doc: 42,
        }];
        assert_eq!(decode::<ExactEntry>(&encode(&exact), "e").unwrap(), exact);
        assert!(decode::<BandEntry>(&[0; 17], "b").is_err());
        let doc = DocRecord {
            shingles: vec![1, 5, 9],
            keep: 2.5,
            id: "doc-1".into(),
        };
        let mut bytes = Vec::new();
        DocRecord::put(&doc.shingles, doc.keep, &doc.id, &mut bytes);
        assert_eq!(DocRecord::get(&bytes, "d").unwrap(), doc);
        assert!(DocRecord::get(&bytes[..bytes.len() - 1], "d").is_err());
        assert_eq!(truncated("héllo", 2), "h");
    }
}
