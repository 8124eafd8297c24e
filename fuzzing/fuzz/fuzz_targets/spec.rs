#![no_main]
//! Any bytes as a job spec; see `drover_fuzzing::spec`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| drover_fuzzing::spec(data));
