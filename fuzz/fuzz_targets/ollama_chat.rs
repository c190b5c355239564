#![no_main]
//! Fuzz target: see `sluice_fuzz::ollama_chat`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::ollama_chat(data));
