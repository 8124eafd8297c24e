//! The sensor feature job's logic as pure functions: distances
//! ([`geo`]) and the cleaning of one device's readings ([`clean`]). The
//! executor reads, groups and writes; nothing here does IO.

pub mod clean;
pub mod geo;
