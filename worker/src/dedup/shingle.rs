//! Shingles: the overlapping n-grams a document is compared by, as 32-bit
//! hashes (what MinHash permutes). Words are split on whitespace of the
//! normalised text; characters are Unicode scalar values. A text shorter
//! than one shingle is one shingle, itself, so short texts still compare.

/// How text is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Word n-grams.
    Word,
    /// Character n-grams.
    Char,
}

/// The distinct shingle hashes of `normalized` text, sorted.
pub fn shingles(normalized: &str, unit: Unit, size: usize) -> Vec<u32> {
    let size = size.max(1);
    let mut out: Vec<u32> = match unit {
        Unit::Word => {
            // Normalised text has one space between words, so a window of
            // words is one slice of it: hashed in place, not joined.
            let bytes = normalized.as_bytes();
            let mut bounds: Vec<(usize, usize)> = Vec::with_capacity(bytes.len() / 4 + 1);
            let mut start = None;
            for (i, &b) in bytes.iter().enumerate() {
                match (b == b' ', start) {
                    (true, Some(s)) => {
                        bounds.push((s, i));
                        start = None;
                    }
                    (false, None) => start = Some(i),
                    _ => {}
                }
            }
            if let Some(s) = start {
                bounds.push((s, bytes.len()));
            }
            if bounds.len() <= size {
                let (from, to) = match (bounds.first(), bounds.last()) {
                    (Some(f), Some(l)) => (f.0, l.1),
                    _ => (0, 0),
                };
                vec![hash32(&bytes[from..to])]
            } else {
                bounds
                    .windows(size)
                    .map(|w| hash32(&bytes[w[0].0..w[size - 1].1]))
                    .collect()
            }
        }
        Unit::Char => {
            let bounds: Vec<usize> = normalized
                .char_indices()
                .map(|(i, _)| i)
                .chain([normalized.len()])
                .collect();
            let chars = bounds.len() - 1;
            if chars <= size {
                vec![hash32(normalized.as_bytes())]
            } else {
                (0..=chars - size)
                    .map(|i| hash32(&normalized.as_bytes()[bounds[i]..bounds[i + size]]))
                    .collect()
            }
        }
    };
    out.sort_unstable();
    out.dedup();
    out
}

/// A 32-bit shingle hash (the low half of XXH3-64).
fn hash32(bytes: &[u8]) -> u32 {
    twox_hash::XxHash3_64::oneshot(bytes) as u32
}

/// Exact Jaccard similarity of two sorted, distinct shingle sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut both) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                both += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - both;
    if union == 0 {
        1.0
    } else {
        both as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_its_words_joined_by_one_space() {
        let s = shingles("a bb ccc dd", Unit::Word, 2);
        let mut want: Vec<u32> = ["a bb", "bb ccc", "ccc dd"]
            .iter()
            .map(|w| hash32(w.as_bytes()))
            .collect();
        want.sort_unstable();
        assert_eq!(s, want);
        assert_eq!(shingles("a b", Unit::Word, 3), vec![hash32(b"a b")]);
        assert_eq!(shingles("", Unit::Word, 3), vec![hash32(b"")]);
    }

    #[test]
    fn word_and_char_shingles() {
        let s = shingles("a b c d", Unit::Word, 2);
        assert_eq!(s.len(), 3);
        assert_eq!(shingles("a b", Unit::Word, 3).len(), 1);
        assert_eq!(shingles("héllo", Unit::Char, 2).len(), 4);
        assert_eq!(shingles("ab", Unit::Char, 5).len(), 1);
        // Repeats count once.
        assert_eq!(shingles("x x x x", Unit::Word, 1).len(), 1);
    }

    #[test]
    fn jaccard_of_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[1], &[1]), 1.0);
        assert_eq!(jaccard(&[1], &[2]), 0.0);
        assert_eq!(jaccard(&[], &[]), 1.0);
    }
}
