//! The worker crate from outside: the data jobs' executors on real files
//! (read back as users would), the S3 path against an S3-compatible
//! server, and the lease loop against a coordinator. One test binary
//! rather than one per file: each would link the whole crate again.

mod support;

mod annotation_export;
mod dedup;
mod lease_loop;
mod s3;
mod sensor_features;
