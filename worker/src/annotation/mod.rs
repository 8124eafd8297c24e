//! The statistics of the annotation export: consensus labels from several
//! annotators' votes ([`consensus`]) and how far the annotators agree
//! ([`agreement`]). Pure functions over dense indices (items, annotators
//! and classes numbered from 0), so the executor maps ids to indices once
//! and these stay independent of any file format.

pub mod agreement;
pub mod boxes;
pub mod consensus;
pub mod pseudonym;
pub mod report;
pub mod stats;

#[cfg(test)]
pub(crate) mod testdata;

/// One annotator's label for one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Vote {
    /// The item, from 0.
    pub item: u32,
    /// Who labelled it, from 0.
    pub annotator: u32,
    /// The class chosen, from 0.
    pub class: u32,
}

/// Votes over `items` items, `annotators` annotators and `classes`
/// classes; every index in `votes` is below its bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Votes {
    /// Items.
    pub items: usize,
    /// Annotators.
    pub annotators: usize,
    /// Classes.
    pub classes: usize,
    /// The votes, in any order.
    pub votes: Vec<Vote>,
}

/// Why votes cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VotesError {
    /// A vote names an index past its bound.
    #[error("vote {index} names {what} {value}, but there are only {bound}")]
    OutOfRange {
        /// Position of the vote.
        index: usize,
        /// `item`, `annotator` or `class`.
        what: &'static str,
        /// The index it names.
        value: u32,
        /// The bound.
        bound: usize,
    },
}

impl Votes {
    /// Checks every vote's indices against the bounds.
    pub fn validate(&self) -> Result<(), VotesError> {
        for (index, v) in self.votes.iter().enumerate() {
            for (what, value, bound) in [
                ("item", v.item, self.items),
                ("annotator", v.annotator, self.annotators),
                ("class", v.class, self.classes),
            ] {
                if value as usize >= bound {
                    return Err(VotesError::OutOfRange {
                        index,
                        what,
                        value,
                        bound,
                    });
                }
            }
        }
        Ok(())
    }

    /// Per item, how many votes each class got.
    pub fn class_counts(&self) -> Vec<Vec<u32>> {
        let mut counts = vec![vec![0u32; self.classes]; self.items];
        for v in &self.votes {
            counts[v.item as usize][v.class as usize] += 1;
        }
        counts
    }
}
