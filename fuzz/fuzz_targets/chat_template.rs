#![no_main]
//! Fuzz target: see `sluice_fuzz::chat_template`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::chat_template(data));
