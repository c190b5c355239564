#![no_main]
//! Fuzz target: see `sluice_fuzz::frame_to_agent`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::frame_to_agent(data));
