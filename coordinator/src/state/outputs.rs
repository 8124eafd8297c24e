//! The accepted outputs of a template's finished partitions, packed.
//!
//! Every succeeded partition keeps its output (the fencing token of the
//! accepted completion, whether it was skipped, its manifest when not
//! empty), so a repeated completion can be told from a stale one. A 10M
//! partition backfill keeps 10M of them, and a `BTreeMap<u64, Output>`
//! spent about 53 bytes on each (a 24-byte value, its key, and nodes a
//! little over half full when filled in order). Here partitions are grouped
//! in runs of `RUN`: a run keeps presence and skipped as bits and tokens
//! in a dense vector, and only the manifests that are not empty, so a
//! finished `noop` partition costs about 9 bytes.
//!
//! Serialised as the map it replaces (partition → [`Output`]), so snapshots
//! and stored records keep their encoding.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::types::Manifest;

/// Partitions per run: one bit each in a `u64`.
const RUN: u64 = 64;

/// The accepted output of one partition, as it is encoded and handed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Output {
    /// The manifest of the accepted completion, when not empty.
    pub manifest: Option<Box<Manifest>>,
    /// Fencing token of the accepted completion.
    pub token: u64,
    /// True when the worker reused an identical earlier output.
    pub skipped: bool,
}

/// A stored output, borrowed. Encodes exactly as [`Output`] does (serde
/// sees through the box), so the packed table serialises as the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OutputRef<'a> {
    /// The manifest of the accepted completion, when not empty.
    pub manifest: Option<&'a Manifest>,
    /// Fencing token of the accepted completion.
    pub token: u64,
    /// True when the worker reused an identical earlier output.
    pub skipped: bool,
}

/// Outputs of partitions `RUN * n .. RUN * (n + 1)`.
///
/// Canonical for a given content (tokens run to the highest present
/// offset, manifests are sorted), so derived equality compares contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Run {
    /// Bit `i`: partition `start + i` has an output.
    present: u64,
    /// Bit `i`: that output was skipped.
    skipped: u64,
    /// Tokens by offset, up to the highest present offset.
    tokens: Vec<u64>,
    /// Manifests that are not empty, by offset.
    manifests: Vec<(u8, Box<Manifest>)>,
}

impl Run {
    fn get(&self, offset: u8) -> Option<OutputRef<'_>> {
        let bit = 1u64 << offset;
        if self.present & bit == 0 {
            return None;
        }
        Some(OutputRef {
            manifest: self
                .manifests
                .binary_search_by_key(&offset, |(o, _)| *o)
                .ok()
                .map(|i| &*self.manifests[i].1),
            token: self.tokens[usize::from(offset)],
            skipped: self.skipped & bit != 0,
        })
    }

    /// Sets the output at `offset`; true when it was not there before.
    fn set(&mut self, offset: u8, output: Output) -> bool {
        let bit = 1u64 << offset;
        let added = self.present & bit == 0;
        self.present |= bit;
        if output.skipped {
            self.skipped |= bit;
        } else {
            self.skipped &= !bit;
        }
        let at = usize::from(offset);
        if self.tokens.len() <= at {
            self.tokens.resize(at + 1, 0);
        }
        self.tokens[at] = output.token;
        match (
            self.manifests.binary_search_by_key(&offset, |(o, _)| *o),
            output.manifest,
        ) {
            (Ok(i), Some(m)) => self.manifests[i].1 = m,
            (Ok(i), None) => {
                self.manifests.remove(i);
            }
            (Err(i), Some(m)) => self.manifests.insert(i, (offset, m)),
            (Err(_), None) => {}
        }
        added
    }

    fn offsets(&self) -> impl Iterator<Item = u8> + '_ {
        (0..RUN as u8).filter(move |o| self.present & (1u64 << o) != 0)
    }
}

/// The accepted outputs of one template, by partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outputs {
    runs: BTreeMap<u64, Run>,
    len: usize,
}

fn split(partition: u64) -> (u64, u8) {
    // The remainder is below RUN (64), so it fits a u8.
    (partition / RUN, (partition % RUN) as u8)
}

impl Outputs {
    /// Outputs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The output of `partition`, if it finished.
    pub fn get(&self, partition: u64) -> Option<OutputRef<'_>> {
        let (run, offset) = split(partition);
        self.runs.get(&run)?.get(offset)
    }

    /// Records (or replaces) the output of `partition`.
    pub fn insert(&mut self, partition: u64, output: Output) {
        let (run, offset) = split(partition);
        if self.runs.entry(run).or_default().set(offset, output) {
            self.len += 1;
        }
    }

    /// Outputs in partition order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, OutputRef<'_>)> + '_ {
        self.runs_in(0..u64::MAX)
    }

    /// Outputs of partitions in `range`, in order.
    pub fn range(&self, range: Range<u64>) -> impl Iterator<Item = (u64, OutputRef<'_>)> + '_ {
        self.runs_in(range.clone())
            .filter(move |(p, _)| range.contains(p))
    }

    /// Partitions with an output, in order.
    pub fn keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(p, _)| p)
    }

    /// Every output of the runs overlapping `range`.
    fn runs_in(&self, range: Range<u64>) -> impl Iterator<Item = (u64, OutputRef<'_>)> + '_ {
        let first = range.start / RUN;
        let last = range.end.div_ceil(RUN);
        self.runs
            .range(first..last.max(first))
            .flat_map(|(&n, run)| {
                run.offsets().map(move |o| {
                    let output = run.get(o).expect("offsets yields present outputs");
                    (n * RUN + u64::from(o), output)
                })
            })
    }
}

impl Extend<(u64, Output)> for Outputs {
    fn extend<I: IntoIterator<Item = (u64, Output)>>(&mut self, items: I) {
        for (partition, output) in items {
            self.insert(partition, output);
        }
    }
}

impl Serialize for Outputs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (partition, output) in self.iter() {
            map.serialize_entry(&partition, &output)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Outputs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OutputsVisitor;
        impl<'de> Visitor<'de> for OutputsVisitor {
            type Value = Outputs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map of partition to output")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Outputs, A::Error> {
                let mut outputs = Outputs::default();
                while let Some((partition, output)) = map.next_entry::<u64, Output>()? {
                    outputs.insert(partition, output);
                }
                Ok(outputs)
            }
        }
        deserializer.deserialize_map(OutputsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn output(token: u64, skipped: bool, prefix: Option<&str>) -> Output {
        Output {
            manifest: prefix.map(|p| {
                Box::new(Manifest {
                    prefix: p.into(),
                    ..Manifest::default()
                })
            }),
            token,
            skipped,
        }
    }

    fn owned(r: OutputRef<'_>) -> Output {
        Output {
            manifest: r.manifest.map(|m| Box::new(m.clone())),
            token: r.token,
            skipped: r.skipped,
        }
    }

    proptest! {
        /// The packed table answers every read as the map it replaces, and
        /// encodes to the same bytes.
        #[test]
        fn outputs_behave_and_encode_as_the_map(
            writes in prop::collection::vec(
                (0u64..400, 1u64..1000, any::<bool>(), prop::option::of("[a-z]{1,4}")),
                0..200,
            ),
            range in (0u64..400, 0u64..400),
        ) {
            let mut packed = Outputs::default();
            let mut map = BTreeMap::new();
            for (p, token, skipped, prefix) in writes {
                packed.insert(p, output(token, skipped, prefix.as_deref()));
                map.insert(p, output(token, skipped, prefix.as_deref()));
            }
            prop_assert_eq!(packed.len(), map.len());
            for p in 0..400 {
                prop_assert_eq!(packed.get(p).map(owned), map.get(&p).cloned());
            }
            let listed: Vec<_> = packed.iter().map(|(p, o)| (p, owned(o))).collect();
            let expected: Vec<_> = map.iter().map(|(p, o)| (*p, o.clone())).collect();
            prop_assert_eq!(listed, expected);
            let (a, b) = (range.0.min(range.1), range.0.max(range.1));
            let ranged: Vec<_> = packed.range(a..b).map(|(p, _)| p).collect();
            let expected: Vec<_> = map.range(a..b).map(|(p, _)| *p).collect();
            prop_assert_eq!(ranged, expected);
            let bytes = postcard::to_stdvec(&packed).unwrap();
            prop_assert_eq!(&bytes, &postcard::to_stdvec(&map).unwrap());
            let back: Outputs = postcard::from_bytes(&bytes).unwrap();
            prop_assert_eq!(back, packed);
        }
    }

    #[test]
    fn a_run_of_noop_outputs_costs_a_token_and_two_bits_each() {
        let mut outputs = Outputs::default();
        for p in 0..RUN {
            outputs.insert(p, output(p + 1, false, None));
        }
        let run = &outputs.runs[&0];
        assert_eq!(run.tokens.len(), RUN as usize);
        assert!(run.manifests.is_empty());
        assert_eq!(outputs.get(5).map(|o| o.token), Some(6));
    }
}
