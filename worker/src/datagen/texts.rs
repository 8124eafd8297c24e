//! A text corpus with known duplicates, for the dedup job: captions and
//! transcriptions over a synthetic vocabulary, word frequencies following
//! Zipf's law and lengths a skewed distribution around fifteen words. A
//! share of the documents are exact duplicates of an earlier one once
//! normalised (changed case, extra whitespace, full-width letters), and a
//! share are near duplicates (words inserted, deleted or substituted at an
//! edit rate between 2% and 15%).
//!
//! Layout below `--out`:
//!
//! ```text
//! _manifest.json
//! part-NNNNN.jsonl                one document per line: id, text, source, quality
//! _truth/_manifest.json
//! _truth/clusters.jsonl           id, cluster (the original's id), kind, editRate
//! ```

use serde::Serialize;

use super::rng::Rng;
use crate::dataset::DatasetError;
use crate::dataset::location::Location;
use crate::dataset::manifest::{self, DatasetManifest, ManifestFile};
use crate::dataset::text::TextSink;

/// Distinct words in the vocabulary.
const VOCABULARY: usize = 20_000;
/// Documents per JSONL file.
const PART_DOCS: u64 = 500_000;
/// Syllables words are made of.
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ne", "ru", "ta", "shi", "po", "da", "ve", "ri", "so", "mu", "the", "an",
    "el", "or", "in", "ba", "ge", "fi", "zo", "ku", "le", "wa", "yo", "pe", "tri", "st", "ng",
];
/// Where documents come from, as the platform records it.
const SOURCES: &[&str] = &["caption", "transcription", "ocr"];

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TextsSpec {
    /// Documents.
    pub docs: u64,
    /// Share of documents that are exact duplicates (after normalisation).
    pub dup_rate: f64,
    /// Share that are near duplicates.
    pub near_dup_rate: f64,
    /// The seed.
    pub seed: u64,
}

/// What was generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedTexts {
    /// Documents written.
    pub docs: u64,
    /// Of which originals.
    pub originals: u64,
    /// Exact duplicates.
    pub exact: u64,
    /// Near duplicates.
    pub near: u64,
}

#[derive(Serialize)]
struct Doc<'a> {
    id: &'a str,
    text: &'a str,
    source: &'a str,
    quality: f64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Truth<'a> {
    id: &'a str,
    cluster: &'a str,
    kind: &'a str,
    edit_rate: f64,
}

/// The vocabulary: distinct words of two to four syllables.
fn vocabulary(rng: &mut Rng) -> Vec<String> {
    let mut words = std::collections::BTreeSet::new();
    let mut list = Vec::with_capacity(VOCABULARY);
    while list.len() < VOCABULARY {
        let n = 2 + rng.below(3) as usize;
        let w: String = (0..n)
            .map(|_| SYLLABLES[rng.below(SYLLABLES.len() as u64) as usize])
            .collect();
        if words.insert(w.clone()) {
            list.push(w);
        }
    }
    list
}

/// Zipf's law by inverse transform over the cumulative weights.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect();
        Self { cumulative }
    }

    fn sample(&self, rng: &mut Rng) -> usize {
        let x = rng.unit() * self.cumulative.last().copied().unwrap_or(0.0);
        self.cumulative.partition_point(|c| *c < x)
    }
}

/// A document length in words: skewed, mostly 6 to 30.
fn length(rng: &mut Rng) -> usize {
    let l = (2.6 + 0.45 * rng.normal()).exp();
    (l.round() as usize).clamp(3, 80)
}

/// The same text as an exact duplicate sees it differently: case, spacing
/// and full-width forms changed, the normalised form unchanged.
fn disguise(rng: &mut Rng, text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    if rng.chance(0.3) {
        out.push_str("  ");
    }
    for (i, word) in text.split(' ').enumerate() {
        if i > 0 {
            out.push_str(if rng.chance(0.2) { " \t " } else { " " });
        }
        let style = rng.below(4);
        for c in word.chars() {
            match style {
                0 => out.extend(c.to_uppercase()),
                // Full-width Latin letters: NFKC maps them back.
                1 if c.is_ascii_lowercase() => {
                    out.push(char::from_u32(c as u32 - 'a' as u32 + 0xff41).unwrap_or(c));
                }
                _ => out.push(c),
            }
        }
    }
    if rng.chance(0.3) || out == text {
        // Never byte-identical: that would be a trivial duplicate.
        out.push('\n');
    }
    out
}

/// `words` with each word deleted, substituted or followed by an inserted
/// word with probability `rate` (one third each).
fn edit(rng: &mut Rng, words: &[usize], rate: f64, zipf: &Zipf) -> Vec<usize> {
    let mut out = Vec::with_capacity(words.len() + 4);
    for &w in words {
        if !rng.chance(rate) {
            out.push(w);
            continue;
        }
        match rng.below(3) {
            0 => {}
            1 => out.push(zipf.sample(rng)),
            _ => {
                out.push(w);
                out.push(zipf.sample(rng));
            }
        }
    }
    if out.is_empty() {
        out.push(zipf.sample(rng));
    }
    out
}

/// Generates `spec` under `out`; `progress` hears of every 100,000
/// documents.
pub async fn generate(
    out: &Location,
    spec: &TextsSpec,
    progress: impl Fn(u64),
) -> Result<GeneratedTexts, DatasetError> {
    let mut rng = Rng::new(spec.seed, 0x7465_7874);
    let vocab = vocabulary(&mut rng);
    let zipf = Zipf::new(vocab.len(), 1.07);
    let mut originals: Vec<(String, Vec<usize>)> = Vec::new();
    let mut counts = GeneratedTexts::default();
    let mut files = Vec::new();
    let mut sink: Option<TextSink> = None;
    let truth_dir = out.child("_truth");
    let mut truth = TextSink::create(&truth_dir, "clusters.jsonl");
    let mut line = Vec::new();
    for i in 0..spec.docs {
        if i % PART_DOCS == 0 {
            if let Some(done) = sink.take() {
                files.push(done.finish().await?);
            }
            sink = Some(TextSink::create(
                out,
                &format!("part-{:05}.jsonl", i / PART_DOCS),
            ));
        }
        let id = format!("doc-{i:09}");
        let roll = rng.unit();
        let (text, cluster, kind, rate) = if !originals.is_empty() && roll < spec.dup_rate {
            let (source, words) = &originals[rng.below(originals.len() as u64) as usize];
            let text: Vec<&str> = words.iter().map(|w| vocab[*w].as_str()).collect();
            counts.exact += 1;
            (
                disguise(&mut rng, &text.join(" ")),
                source.clone(),
                "exact",
                0.0,
            )
        } else if !originals.is_empty() && roll < spec.dup_rate + spec.near_dup_rate {
            let (source, words) = &originals[rng.below(originals.len() as u64) as usize];
            let rate = rng.range(0.02, 0.15);
            let edited = edit(&mut rng, words, rate, &zipf);
            let text: Vec<&str> = edited.iter().map(|w| vocab[*w].as_str()).collect();
            counts.near += 1;
            (text.join(" "), source.clone(), "near", rate)
        } else {
            let words: Vec<usize> = (0..length(&mut rng))
                .map(|_| zipf.sample(&mut rng))
                .collect();
            let text: Vec<&str> = words.iter().map(|w| vocab[*w].as_str()).collect();
            let text = text.join(" ");
            originals.push((id.clone(), words));
            counts.originals += 1;
            (text, id.clone(), "original", 0.0)
        };
        let doc = Doc {
            id: &id,
            text: &text,
            source: SOURCES[rng.below(SOURCES.len() as u64) as usize],
            quality: (rng.unit() * 1000.0).round() / 1000.0,
        };
        line.clear();
        serde_json::to_writer(&mut line, &doc).map_err(json_error)?;
        line.push(b'\n');
        if let Some(s) = sink.as_mut() {
            s.write(&line).await?;
            s.count_rows(1);
        }
        line.clear();
        serde_json::to_writer(
            &mut line,
            &Truth {
                id: &id,
                cluster: &cluster,
                kind,
                edit_rate: (rate * 1e4).round() / 1e4,
            },
        )
        .map_err(json_error)?;
        line.push(b'\n');
        truth.write(&line).await?;
        truth.count_rows(1);
        counts.docs += 1;
        if (i + 1) % 100_000 == 0 {
            progress(i + 1);
        }
    }
    if let Some(done) = sink.take() {
        files.push(done.finish().await?);
    }
    let writer = super::writer(
        "texts",
        format!(
            "docs={} dup-rate={} near-dup-rate={} seed={}",
            spec.docs, spec.dup_rate, spec.near_dup_rate, spec.seed
        ),
    );
    let truth_file = truth.finish().await?;
    manifest::write(
        &truth_dir,
        &DatasetManifest::new(vec![truth_file], Vec::new(), &writer),
    )
    .await?;
    // The data's manifest last: until it exists, there is no dataset.
    let files: Vec<ManifestFile> = files;
    manifest::write(out, &DatasetManifest::new(files, Vec::new(), &writer)).await?;
    Ok(counts)
}

fn json_error(e: serde_json::Error) -> DatasetError {
    DatasetError::Manifest {
        path: "generated document".into(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dedup::normalize::normalize;

    #[tokio::test]
    async fn duplicates_come_at_the_asked_rates_and_one_seed_gives_one_corpus() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TextsSpec {
            docs: 20_000,
            dup_rate: 0.1,
            near_dup_rate: 0.15,
            seed: 3,
        };
        let a = Location::parse(dir.path().join("a").to_str().unwrap()).unwrap();
        let b = Location::parse(dir.path().join("b").to_str().unwrap()).unwrap();
        let counts = generate(&a, &spec, |_| {}).await.unwrap();
        generate(&b, &spec, |_| {}).await.unwrap();
        assert_eq!(counts.docs, 20_000);
        let exact = counts.exact as f64 / 20_000.0;
        let near = counts.near as f64 / 20_000.0;
        assert!(
            (exact - 0.1).abs() < 0.01 && (near - 0.15).abs() < 0.01,
            "{counts:?}"
        );
        let read = |d: &str| std::fs::read(dir.path().join(d).join("part-00000.jsonl")).unwrap();
        assert_eq!(read("a"), read("b"));
        // Every exact duplicate normalises to its original's text.
        let text = String::from_utf8(read("a")).unwrap();
        let docs: std::collections::HashMap<String, String> = text
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["text"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let truth = std::fs::read_to_string(dir.path().join("a/_truth/clusters.jsonl")).unwrap();
        let mut checked = 0;
        for l in truth.lines() {
            let t: serde_json::Value = serde_json::from_str(l).unwrap();
            if t["kind"] == "exact" {
                let dup = &docs[t["id"].as_str().unwrap()];
                let original = &docs[t["cluster"].as_str().unwrap()];
                assert_ne!(dup, original);
                assert_eq!(normalize(dup), normalize(original));
                checked += 1;
            }
        }
        assert!(checked > 1000, "{checked}");
    }
}
