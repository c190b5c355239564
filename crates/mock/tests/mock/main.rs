//! Integration tests: a real `MockServer` on port 0, driven with reqwest in both dialects.

// clippy.toml lets tests unwrap, but only inside `#[test]` fns, not their helpers.
#![allow(clippy::unwrap_used)]

mod faults;
mod ollama;
mod openai;
mod support;
