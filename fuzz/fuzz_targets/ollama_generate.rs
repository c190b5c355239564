#![no_main]
//! Fuzz target: see `sluice_fuzz::ollama_generate`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::ollama_generate(data));
