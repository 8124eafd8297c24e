//! What "the same text" means for exact duplicates: Unicode NFKC (so a
//! full-width letter or a ligature equals its plain form), lower case, and
//! every run of whitespace one space, trimmed.

use unicode_normalization::UnicodeNormalization;

/// The normalised form of `text`.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        return normalize_ascii(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.nfkc().flat_map(char::to_lowercase) {
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// [`normalize`] for ASCII text, which NFKC leaves as it is: the common
/// case, without the Unicode tables.
fn normalize_ascii(text: &str) -> String {
    let mut out = Vec::with_capacity(text.len());
    for word in text.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(b' ');
        }
        out.extend(word.bytes().map(|b| b.to_ascii_lowercase()));
    }
    // Only ASCII bytes went in.
    String::from_utf8(out).unwrap_or_default()
}

/// The exact-duplicate key of `text`: a 128-bit hash of its normalised
/// form, as 32 hex digits.
pub fn exact_key(normalized: &str) -> u128 {
    twox_hash::XxHash3_128::oneshot(normalized.as_bytes())
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
            exact_key(&normalize("Hello  World")),
            exact_key(&normalize("hello world"))
        );
        assert_ne!(exact_key("hello world"), exact_key("hello worlds"));
        assert_eq!(normalize(""), "");
        // The ASCII fast path agrees with the general one, whatever the
        // whitespace (form feed, vertical tab).
        for t in ["  Mixed\tCASE\n words  ", "a\u{0c}b\u{0b}c", "one", "  "] {
            let general: String = {
                let mut out = String::new();
                let mut pending = false;
                for c in t.nfkc().flat_map(char::to_lowercase) {
                    if c.is_whitespace() {
                        pending = !out.is_empty();
                        continue;
                    }
                    if pending {
                        out.push(' ');
                        pending = false;
                    }
                    out.push(c);
                }
                out
            };
            assert_eq!(normalize(t), general, "{t:?}");
        }
    }
}
