#![no_main]
//! Fuzz target: see `sluice_fuzz::sse`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::sse(data));
