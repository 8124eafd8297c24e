//! Drover's job spec format: YAML in, a validated and expanded task graph out.
//!
//! ```text
//! YAML text ──yaml──► spanned tree ──interpolate──► ${params.x}, ${run.date} resolved
//!            ──load/decode/kinds──► JobSpec ──plan::expand──► TaskGraph (templates)
//! ```
//!
//! Every step reports problems as [`Diagnostic`]s with file, line, column and
//! a hint, and keeps going, so a user sees all their mistakes in one run.
//!
//! # Layout
//!
//! - [`yaml`]: YAML text to a tree that remembers positions.
//! - [`diagnostic`]: what a problem looks like and how it is printed.
//! - [`decode`]: typed reads from the tree that record errors and go on.
//! - [`interpolate`]: `${params.*}`, `${run.*}` and `${partition.*}`.
//! - [`load`]: the whole spec, field by field, and the DAG checks.
//! - [`kinds`]: each task kind's config and its stages.
//! - [`partitions`]: compact partition sets (date ranges, shards, lists).
//! - [`schedule`]: cron in a timezone, DST-correct fire times.
//! - [`plan`]: expansion into the template graph, and `drover job plan`.
//! - [`schema`]: the JSON Schema of the format, for editors.
//! - [`secrets`]: the credentials a spec must never carry.
//! - [`limits`]: the bound on every dimension of a spec.
//! - [`model`]: the typed spec.

pub mod decode;
pub mod diagnostic;
pub mod interpolate;
pub mod kinds;
pub mod limits;
pub mod load;
pub mod model;
pub mod partitions;
pub mod plan;
pub mod schedule;
pub mod schema;
pub mod secrets;
pub mod yaml;

pub use diagnostic::{Diagnostic, Severity};
pub use kinds::KindConfig;
pub use load::{API_VERSION, LoadOptions};
pub use model::{JobSpec, TaskSpec};
pub use partitions::PartitionSet;
pub use plan::{Plan, TaskGraph, Template, expand, plan};
