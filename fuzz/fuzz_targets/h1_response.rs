#![no_main]
//! Fuzz target: see `sluice_fuzz::h1_response`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::h1_response(data));
