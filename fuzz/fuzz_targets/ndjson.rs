#![no_main]
//! Fuzz target: see `sluice_fuzz::ndjson`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::ndjson(data));
