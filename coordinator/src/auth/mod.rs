//! Who may call the cluster, and the record of what they did.
//!
//! With authentication on (`drover coordinator --auth`), every request to
//! the job, worker and admin services carries a bearer token (or, for the
//! worker service, comes over mutual TLS with a worker certificate). Roles:
//!
//! | role        | services                                        |
//! |-------------|-------------------------------------------------|
//! | `submitter` | jobs, in its namespaces only                    |
//! | `operator`  | everything                                      |
//! | `worker`    | the worker service (lease, heartbeat, complete) |
//!
//! Raft stays with coordinators: under TLS the Raft service takes only node
//! certificates (see `raft::service`).
//!
//! # Layout
//!
//! - [`secret`]: the token string, `drv_<id>_<secret>`, and its hash.
//! - [`policy`]: [`Caller`], and which services each role opens.
//! - [`guard`]: the tower layer that applies them to every request.
//! - [`rate`]: per-client token buckets.
//! - [`audit`]: the append-only, fsync'd audit log.

pub mod audit;
pub mod guard;
pub mod policy;
pub mod rate;
pub mod secret;

pub use audit::AuditLog;
pub use guard::{AuthSettings, GuardLayer};
pub use policy::Caller;
pub use rate::Rate;
