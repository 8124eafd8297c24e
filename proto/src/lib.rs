//! Drover's gRPC protocol: the `.proto` files and the tonic/prost code
//! generated from them.
//!
//! # Layout
//!
//! - `proto/drover/v1/*.proto`: the protocol, package `drover.v1`, one file
//!   per service plus `common.proto` for shared types. The comments there
//!   are the reference documentation, and they also state the error
//!   contract (which gRPC status code means what).
//!   - `job.proto`: [`v1::job_service_server::JobService`], the user-facing
//!     job API.
//!   - `worker.proto`: [`v1::worker_service_server::WorkerService`], the
//!     lease loop of workers.
//!   - `admin.proto`: [`v1::admin_service_server::AdminService`], cluster
//!     and worker operations for SREs.
//!   - `raft.proto`: [`v1::raft_service_server::RaftService`], the internal
//!     coordinator-to-coordinator transport.
//! - `build.rs`: compiles the files with `protox` (no system `protoc`) and
//!   generates the code with `tonic-prost-build`.
//! - [`v1`]: the generated messages, clients (`*_client`) and servers
//!   (`*_server`).
//! - [`FILE_DESCRIPTOR_SET`]: the encoded descriptors with source info, for
//!   gRPC reflection and for the documentation test.
//! - The `*_METADATA_KEY` constants: gRPC metadata keys of the error
//!   contract and of trace propagation.
//! - [`trace`]: the W3C `traceparent` value those keys and
//!   `LeasedTask.trace_parent` carry: parsing, printing, new roots.
//! - [`names`]: the names users see for the wire enums (`succeeded`,
//!   `annotation_export`), one table each.
//! - [`spans`]: `tracing` spans joined to that trace when they are
//!   exported over OTLP.
//!
//! Wire types stay at the edge: each service converts them to domain types
//! in its own `convert` module, and domain code never sees prost types.

pub mod names;
pub mod spans;
pub mod trace;

/// Generated code for package `drover.v1`.
// No `#[allow]` is needed here: the proto comments are plain prose (no
// markdown lists or indented blocks), so the rustdoc prost copies from them
// passes clippy's doc lints and yields no doctests. Keep them that way.
pub mod v1 {
    tonic::include_proto!("drover.v1");
}

/// Encoded `google.protobuf.FileDescriptorSet` of every file in package
/// `drover.v1`, including source info (comments and spans). Serve it through
/// gRPC reflection, or decode it to inspect the protocol.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/drover_descriptor.bin"));

/// Response metadata key holding the leader's gRPC address on an
/// `UNAVAILABLE` status from a coordinator that is not the leader. Clients
/// resend to that address; when the key is absent the leader is unknown and
/// clients retry with backoff.
pub const LEADER_METADATA_KEY: &str = "drover-leader";

/// Binary response metadata key holding an encoded [`v1::DiagnosticList`] on
/// an `INVALID_ARGUMENT` status for an invalid job spec. The `-bin` suffix
/// makes gRPC carry the value as base64-encoded bytes.
pub const DIAGNOSTICS_METADATA_KEY: &str = "drover-diagnostics-bin";

/// Metadata key on an error from a coordinator whose storage failed (a
/// full disk): the node has stopped and is about to exit, so a client
/// tries the other coordinators, and reports this error when none serves.
pub const NODE_FAILED_METADATA_KEY: &str = "drover-node-failed";

/// Request metadata key carrying the W3C trace context of the caller, so
/// coordinator spans join the client's trace. On SubmitJob it becomes the
/// job's trace: every attempt of the job's tasks runs in it (see [`trace`]).
pub const TRACEPARENT_METADATA_KEY: &str = "traceparent";

/// Request metadata key carrying vendor-specific W3C trace state that goes
/// with [`TRACEPARENT_METADATA_KEY`].
pub const TRACESTATE_METADATA_KEY: &str = "tracestate";

/// A client endpoint for a Drover address: `host:port` (plain HTTP/2, the
/// local default) or a full URI. Callers add their own timeouts.
pub fn endpoint(address: &str) -> Result<tonic::transport::Endpoint, tonic::transport::Error> {
    let uri = if address.contains("://") {
        address.to_owned()
    } else {
        format!("http://{address}")
    };
    Ok(tonic::transport::Endpoint::from_shared(uri)?.tcp_nodelay(true))
}

/// The key, below a cluster's task log store (`RegisterResponse.task_log_url`),
/// of the log of the attempt whose output prefix is `output_prefix`. Workers
/// write it and coordinators read it, so both name it here.
pub fn task_log_key(output_prefix: &str) -> String {
    format!("{}.log", output_prefix.trim_end_matches('/'))
}
