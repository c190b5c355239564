#![no_main]
//! Fuzz target: see `sluice_fuzz::config`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::config(data));
