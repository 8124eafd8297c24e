//! The sensor feature job's logic as pure functions: distances
//! ([`geo`]), the cleaning of one device's readings ([`clean`]) and the
//! features of (cell, window) groups ([`features`]). The executor reads,
//! groups and writes; nothing here does IO.

pub mod clean;
pub mod features;
pub mod geo;
