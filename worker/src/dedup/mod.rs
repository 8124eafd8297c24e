//! The dedup job's logic as pure functions: text normalisation
//! ([`normalize`]), shingling ([`shingle`]), MinHash signatures and their
//! Jaccard estimate ([`minhash`]), LSH band keys ([`lsh`]) and which
//! documents duplicate pairs remove ([`greedy`]). The executor moves these
//! between stages; nothing here does IO.

pub mod greedy;
pub mod lsh;
pub mod minhash;
pub mod normalize;
pub mod shingle;
pub mod union_find;
