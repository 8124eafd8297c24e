#![no_main]
//! Any bytes as a run of gRPC requests to a single-node coordinator; see
//! `drover_fuzzing::grpc_requests`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzzing::grpc_requests(data));
