#![no_main]
//! Fuzz target: see `sluice_fuzz::openai_completion`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::openai_completion(data));
