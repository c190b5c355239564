#![no_main]
//! Fuzz target: see `sluice_fuzz::frame_to_gateway`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| sluice_fuzz::frame_to_gateway(data));
