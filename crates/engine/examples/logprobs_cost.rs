//! What reporting log probabilities costs: single-stream generation speed with
//! `logprobs` (top 5 alternatives) against without, interleaved in the same run so both
//! see the same machine.
//!
//! ```text
//! taskset -c 1 cargo run -p sluice-engine --release --example logprobs_cost -- [REPEATS] [TOKENS] [TOP]
//! ```
//! The model comes from `SLUICE_TEST_MODEL` or the default model directory; one thread.

use std::time::Duration;

use sluice_engine::{
    ChatMessage, Engine, EngineConfig, GenerateRequest, Prompt, Sampling, default_model_path,
};

fn request(tokens: u32, logprobs: Option<u8>) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::user(
            "Write a long, detailed story about a lighthouse keeper.",
        )]),
        sampling: Sampling { max_tokens: Some(tokens), logprobs, ..Sampling::greedy() },
        tools: Vec::new(),
    }
}

/// Tokens per second of the decode steps after the first token.
fn eval_rate(tokens: usize, eval: Duration) -> f64 {
    tokens.saturating_sub(1) as f64 / eval.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let repeats: usize = args.next().map_or(Ok(9), |a| a.parse())?;
    let tokens: u32 = args.next().map_or(Ok(128), |a| a.parse())?;
    let top: u8 = args.next().map_or(Ok(5), |a| a.parse())?;
    let model = std::env::var_os("SLUICE_TEST_MODEL")
        .map(Into::into)
        .or_else(default_model_path)
        .ok_or("no model path")?;
    let engine = Engine::load(EngineConfig {
        n_threads: Some(1),
        n_parallel: 1,
        n_ctx: Some(1024),
        ..EngineConfig::new(model)
    })?;
    engine.generate(request(16, None))?.collect().await?;
    let (mut plain, mut with) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        for (logprobs, rates) in [(None, &mut plain), (Some(top), &mut with)] {
            let done = engine.generate(request(tokens, logprobs))?.collect().await?;
            rates.push(eval_rate(done.summary.completion_tokens, done.summary.eval));
        }
    }
    let (p, w) = (median(plain), median(with));
    println!(
        "{} | {tokens} tokens x {repeats} | without logprobs {p:.1} tok/s | with top_logprobs={top} {w:.1} tok/s | {:.1}%",
        engine.info().name,
        100.0 * w / p
    );
    Ok(())
}
