//! Shingles: the overlapping n-grams a document is compared by, as 32-bit
//! hashes (what MinHash permutes). Words are split on the single spaces of
//! the normalised text; characters are Unicode scalar values. A text
//! shorter than one shingle is one shingle, itself, so short texts still
//! compare.
//!
//! A word n-gram's hash is built from its words' hashes, each word hashed
//! once, rather than by hashing its text: every byte is read once, not n
//! times. The combination is order-sensitive, so "a b c" and "c b a"
//! differ.

/// How text is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Word n-grams.
    Word,
    /// Character n-grams.
    Char,
}

/// Longest word n-gram: the job spec's limit on `shingle.size`.
const WORDS_MAX: usize = drover_jobspecs::limits::DEDUP_SHINGLE_SIZE_MAX as usize;

/// The distinct shingle hashes of `normalized` text, sorted: the set two
/// texts' Jaccard similarity is taken over.
pub fn shingles(normalized: &str, unit: Unit, size: usize) -> Vec<u32> {
    let mut out = Vec::new();
    shingles_into(normalized.as_bytes(), unit, size, &mut out);
    as_set(&mut out);
    out
}

/// `hashes` sorted and distinct, in place.
pub fn as_set(hashes: &mut Vec<u32>) {
    hashes.sort_unstable();
    hashes.dedup();
}

/// The shingle hashes of normalised text given as its UTF-8 bytes, in text
/// order with repeats, written into `out` (cleared first) so a caller going
/// through many texts reuses one buffer. MinHash needs no more; [`as_set`]
/// makes the set [`jaccard`] compares.
pub fn shingles_into(normalized: &[u8], unit: Unit, size: usize, out: &mut Vec<u32>) {
    let size = size.clamp(1, WORDS_MAX);
    out.clear();
    match unit {
        Unit::Word => {
            // The last `size` words' hashes, newest last.
            let mut last = [0u64; WORDS_MAX];
            let ring = &mut last[..size];
            let mut words = 0usize;
            for word in normalized.split(|&c| c == b' ') {
                ring.copy_within(1.., 0);
                ring[size - 1] = twox_hash::XxHash3_64::oneshot(word);
                words += 1;
                if words >= size {
                    out.push(window(ring));
                }
            }
            if words < size {
                out.push(window(&ring[size - words..]));
            }
        }
        Unit::Char => {
            // Character boundaries: a lead byte is not 0b10xxxxxx.
            let starts = normalized
                .iter()
                .enumerate()
                .filter(|(_, b)| (**b & 0xc0) != 0x80)
                .map(|(i, _)| i);
            let bounds: Vec<usize> = starts.chain([normalized.len()]).collect();
            let chars = bounds.len() - 1;
            if chars <= size {
                out.push(hash32(normalized));
            } else {
                out.extend(
                    (0..=chars - size).map(|i| hash32(&normalized[bounds[i]..bounds[i + size]])),
                );
            }
        }
    }
}

/// The hash of a window from its words' hashes, in order: each folded in
/// through a multiply and xor-shift (the mixing step of MurmurHash3's
/// finaliser), both one-to-one, so the order and each word count.
fn window(words: &[u64]) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15 ^ words.len() as u64;
    for &w in words {
        h = (h ^ w).wrapping_mul(0xff51_afd7_ed55_8ccd);
        h ^= h >> 32;
    }
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    (h ^ (h >> 29)) as u32
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
    fn a_window_is_its_words_in_order() {
        let word = |w: &str| twox_hash::XxHash3_64::oneshot(w.as_bytes());
        let w = |ws: &[&str]| window(&ws.iter().map(|x| word(x)).collect::<Vec<_>>());
        let mut cut = Vec::new();
        shingles_into(b"a bb ccc dd", Unit::Word, 2, &mut cut);
        assert_eq!(cut, [w(&["a", "bb"]), w(&["bb", "ccc"]), w(&["ccc", "dd"])]);
        // Fewer words than a window: one shingle of them all.
        assert_eq!(shingles("a b", Unit::Word, 3), vec![w(&["a", "b"])]);
        assert_eq!(shingles("", Unit::Word, 3), vec![w(&[""])]);
        assert_eq!(shingles("a b c", Unit::Word, 3), vec![w(&["a", "b", "c"])]);
        // Order matters; a repeated window is one shingle of the set.
        assert_ne!(w(&["a", "b", "c"]), w(&["c", "b", "a"]));
        assert_ne!(w(&["a", "b"]), w(&["ab"]));
        shingles_into(b"x y x y x", Unit::Word, 2, &mut cut);
        assert_eq!(cut.len(), 4);
        as_set(&mut cut);
        assert_eq!(cut.len(), 2);
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
