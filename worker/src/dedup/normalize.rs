//! What "the same text" means for exact duplicates: Unicode NFKC (so a
//! full-width letter or a ligature equals its plain form), lower case, and
//! every run of whitespace one space, trimmed.

use unicode_normalization::UnicodeNormalization;

/// The normalised form of `text`.
pub fn normalize(text: &str) -> String {
    let mut out = Vec::new();
    normalize_into(text, &mut out);
    // Only whole characters went in.
    String::from_utf8(out).unwrap_or_default()
}

/// [`normalize`], as UTF-8 bytes written into `out` (cleared first), so a
/// caller going through many texts reuses one buffer.
///
/// Most text is ASCII, which NFKC leaves as it is, so only the runs of
/// other characters go through the Unicode tables. That is exact: an
/// ASCII character is a starter that never composes with what precedes
/// it, so NFKC has a boundary before every one, and normalising the
/// pieces between boundaries gives the whole text's form. A run of
/// non-ASCII characters takes the ASCII character before it along, which
/// a combining mark in the run may compose with (`e` and U+0301 make
/// `é`).
pub fn normalize_into(text: &str, out: &mut Vec<u8>) {
    out.clear();
    let bytes = text.as_bytes();
    let mut space = false;
    let mut at = 0;
    while at < bytes.len() {
        let ascii_end = next(bytes, at, |b| !b.is_ascii());
        // The ASCII character before a non-ASCII run goes with the run.
        let fast_end = if ascii_end < bytes.len() && ascii_end > at {
            ascii_end - 1
        } else {
            ascii_end
        };
        push_ascii(&bytes[at..fast_end], out, &mut space);
        if fast_end == bytes.len() {
            break;
        }
        let run_end = next(bytes, ascii_end, |b| b.is_ascii());
        // Both ends are at ASCII bytes, so at character boundaries.
        push_chars(text[fast_end..run_end].nfkc(), out, &mut space);
        at = run_end;
    }
}

/// The first index from `from` whose byte matches, or the length.
fn next(bytes: &[u8], from: usize, hit: impl Fn(&u8) -> bool) -> usize {
    bytes[from..]
        .iter()
        .position(hit)
        .map_or(bytes.len(), |i| from + i)
}

/// Appends characters lowercased, whitespace runs as one space (`space`
/// carries a pending one across calls; none leads or trails).
fn push_chars(chars: impl Iterator<Item = char>, out: &mut Vec<u8>, space: &mut bool) {
    let mut utf8 = [0u8; 4];
    for c in chars.flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            *space = !out.is_empty();
            continue;
        }
        if std::mem::take(space) {
            out.push(b' ');
        }
        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
    }
}

/// [`push_chars`] for ASCII bytes. The ASCII characters
/// `char::is_whitespace` takes are tab to carriage return and space. A run
/// with single inner spaces only, the usual case, is copied lowercased in
/// one pass the compiler vectorises.
fn push_ascii(run: &[u8], out: &mut Vec<u8>, space: &mut bool) {
    let (Some(&first), Some(&last)) = (run.first(), run.last()) else {
        return;
    };
    let control = run
        .iter()
        .fold(false, |any, &b| any | matches!(b, b'\t'..=b'\r'));
    let double = run
        .iter()
        .zip(&run[1..])
        .fold(false, |any, (&x, &y)| any | (x == b' ' && y == b' '));
    if first != b' ' && last != b' ' && !control && !double {
        if std::mem::take(space) {
            out.push(b' ');
        }
        out.extend(run.iter().map(u8::to_ascii_lowercase));
        return;
    }
    for &b in run {
        if matches!(b, b'\t'..=b'\r' | b' ') {
            *space = !out.is_empty();
            continue;
        }
        if std::mem::take(space) {
            out.push(b' ');
        }
        out.push(b.to_ascii_lowercase());
    }
}

/// The exact-duplicate key of `text`: a 128-bit hash of its normalised
/// form, as 32 hex digits.
pub fn exact_key(normalized: &[u8]) -> u128 {
    twox_hash::XxHash3_128::oneshot(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_whitespace_and_compatibility_forms_do_not_matter() {
        assert_eq!(normalize("  A  cat\tsat\n"), "a cat sat");
        // Full-width letters and the "fi" ligature are their plain forms.
        assert_eq!(normalize("ＣＡＴ ﬁsh"), "cat fish");
        assert_eq!(
            exact_key(normalize("Hello  World").as_bytes()),
            exact_key(normalize("hello world").as_bytes())
        );
        assert_ne!(exact_key(b"hello world"), exact_key(b"hello worlds"));
        assert_eq!(normalize(""), "");
        // A combining mark composes with the ASCII letter before it.
        assert_eq!(normalize("cafe\u{301} Ｘ"), "café x");
        assert_eq!(normalize("a\u{0c}b\u{0b}c\rd"), "a b c d");
    }

    /// The definition: NFKC of the whole text, lowercased, whitespace runs
    /// one space, trimmed.
    fn by_definition(t: &str) -> String {
        let mut out = Vec::new();
        push_chars(t.nfkc(), &mut out, &mut false);
        String::from_utf8(out).unwrap()
    }

    proptest::proptest! {
        #[test]
        fn pieces_normalise_as_the_whole(
            parts in proptest::collection::vec(
                proptest::sample::select(vec![
                    "a", "E", "z", " ", "  ", "\t", "\n", "\u{0b}", "\u{1c}", "e\u{301}",
                    "\u{301}", "\u{327}", "\u{308}\u{301}", "ﬁ", "Ｘ", "ｗ", "\u{a0}",
                    "\u{3000}", "İ", "ß", "Σ", "\u{1100}", "\u{1161}", "\u{11a8}", "한",
                    "\u{2126}", "Å", "\u{212b}", "①", "¼", "x\u{20dd}", "\u{0b47}", "\u{0b3e}",
                ]),
                0..24,
            )
        ) {
            let text: String = parts.concat();
            proptest::prop_assert_eq!(normalize(&text), by_definition(&text));
        }
    }
}
