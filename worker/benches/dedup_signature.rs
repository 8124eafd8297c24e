//! The per-document work of the dedup `signatures` stage, piece by piece,
//! on text from `drover datagen texts` (word 3-grams, 9 bands of 13 rows
//! of a 128-function MinHash, as `jobspecs/examples/dedup.yaml`):
//!
//! - `normalize`: NFKC, lower case, whitespace;
//! - `shingles`: word 3-gram hashes of the normalised text;
//! - `minhash`: the signature of those shingles, with the CPU's vector
//!   instructions as dispatched at run time, and `minhash_plain` without;
//! - `band_keys`: the LSH band keys of the signature;
//! - `document`: all of it, as the stage does per document.
//!
//! Throughput is documents per second on one core.
//!
//! Run: `cargo bench -p drover-worker --bench dedup_signature`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drover_worker::datagen::texts::{TextsSpec, generate};
use drover_worker::dataset::location::Location;
use drover_worker::dedup::lsh::band_keys_into;
use drover_worker::dedup::minhash::MinHasher;
use drover_worker::dedup::normalize::{exact_key, normalize_into};
use drover_worker::dedup::shingle::{Unit, shingles_into};

const DOCS: u64 = 20_000;
const BANDS: usize = 9;
const ROWS: usize = 13;

/// The generated corpus's texts.
fn corpus() -> Vec<String> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let out = Location::parse(dir.path().to_str().expect("a UTF-8 path")).expect("a location");
    let spec = TextsSpec {
        docs: DOCS,
        dup_rate: 0.1,
        near_dup_rate: 0.1,
        seed: 1,
    };
    runtime
        .block_on(generate(&out, &spec, |_| {}))
        .expect("generated texts");
    let mut texts = Vec::new();
    for entry in std::fs::read_dir(dir.path()).expect("the corpus directory") {
        let path = entry.expect("an entry").path();
        if path.extension().is_some_and(|e| e == "jsonl") {
            let body = std::fs::read_to_string(&path).expect("a part");
            for line in body.lines() {
                let doc: serde_json::Value = serde_json::from_str(line).expect("a document");
                texts.push(doc["text"].as_str().expect("a text").to_owned());
            }
        }
    }
    texts
}

fn bench(c: &mut Criterion) {
    let texts = corpus();
    let hasher = MinHasher::new(128, 1).first(BANDS * ROWS);
    let mut normalized: Vec<Vec<u8>> = Vec::new();
    let mut shingled: Vec<Vec<u32>> = Vec::new();
    let mut signatures: Vec<Vec<u32>> = Vec::new();
    for t in &texts {
        let mut n = Vec::new();
        normalize_into(t, &mut n);
        let mut s = Vec::new();
        shingles_into(&n, Unit::Word, 3, &mut s);
        let mut sig = Vec::new();
        hasher.signature_into(&s, &mut sig);
        normalized.push(n);
        shingled.push(s);
        signatures.push(sig);
    }

    let mut g = c.benchmark_group("dedup_signature");
    g.throughput(Throughput::Elements(texts.len() as u64));
    g.sample_size(20);
    let mut buf = Vec::new();
    g.bench_function("normalize", |b| {
        b.iter(|| {
            for t in &texts {
                normalize_into(t, &mut buf);
                black_box(&buf);
            }
        })
    });
    let mut out = Vec::new();
    g.bench_function("shingles", |b| {
        b.iter(|| {
            for n in &normalized {
                shingles_into(n, Unit::Word, 3, &mut out);
                black_box(&out);
            }
        })
    });
    let mut sig = Vec::new();
    g.bench_function("minhash", |b| {
        b.iter(|| {
            for s in &shingled {
                hasher.signature_into(s, &mut sig);
                black_box(&sig);
            }
        })
    });
    let plain = hasher.clone().without_vectors();
    g.bench_function("minhash_plain", |b| {
        b.iter(|| {
            for s in &shingled {
                plain.signature_into(s, &mut sig);
                black_box(&sig);
            }
        })
    });
    let (mut bytes, mut keys) = (Vec::new(), Vec::new());
    g.bench_function("band_keys", |b| {
        b.iter(|| {
            for s in &signatures {
                band_keys_into(s, BANDS, ROWS, &mut bytes, &mut keys);
                black_box(&keys);
            }
        })
    });
    g.bench_function("document", |b| {
        b.iter(|| {
            for t in &texts {
                normalize_into(t, &mut buf);
                black_box(exact_key(&buf));
                shingles_into(&buf, Unit::Word, 3, &mut out);
                hasher.signature_into(&out, &mut sig);
                band_keys_into(&sig, BANDS, ROWS, &mut bytes, &mut keys);
                black_box(&keys);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
