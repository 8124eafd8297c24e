#![no_main]
//! Any bytes as a run of Raft entry payloads; see `drover_fuzzing::log_entries`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzzing::log_entries(data));
