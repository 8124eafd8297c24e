//! Helpers shared by the worker's integration tests.

#![allow(dead_code)]

pub mod export;
pub mod stages;
