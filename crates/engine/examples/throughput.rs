//! Measures the engine on the real model: prompt processing, single-stream generation
//! and aggregate generation with several concurrent streams (greedy decoding).
//!
//! ```text
//! cargo run -p sluice-engine --release --example throughput -- [THREADS] [TOKENS] [STREAMS]
//! ```
//! The model comes from `SLUICE_TEST_MODEL` or the default model directory. Engine knobs
//! from the environment: `FA` (auto|on|off), `BATCH`, `UBATCH`, `KV` (f16|q8_0),
//! `PROMPT_TOKENS` (length of the prompt-processing test, default 2000).

use std::time::{Duration, Instant};

use futures::future::join_all;
use sluice_engine::{
    ChatMessage, Engine, EngineConfig, FlashAttention, GenerateRequest, KvCacheType, Prompt, Sampling,
    default_model_path,
};

const TOPICS: [&str; 8] = [
    "a dragon who learns to bake bread",
    "a lighthouse keeper on a distant planet",
    "a cat that becomes mayor of a small town",
    "two robots falling in love",
    "a detective who can talk to trees",
    "the last library on Earth",
    "a pirate afraid of water",
    "a child who finds a door in the sky",
];

fn request(topic: &str, tokens: u32) -> GenerateRequest {
    GenerateRequest {
        prompt: Prompt::Chat(vec![ChatMessage::user(format!("Write a long, detailed story about {topic}."))]),
        sampling: Sampling { max_tokens: Some(tokens), ..Sampling::greedy() },
        tools: Vec::new(),
    }
}

fn rate(tokens: usize, elapsed: Duration) -> f64 {
    tokens as f64 / elapsed.as_secs_f64()
}

/// Generation speed: `eval` starts when the first token is sampled, so it spans the
/// decode steps of the remaining tokens.
fn eval_rate(summary: &sluice_engine::Summary) -> f64 {
    rate(summary.completion_tokens.saturating_sub(1), summary.eval)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let threads: usize = args.next().map_or(Ok(2), |a| a.parse())?;
    let tokens: u32 = args.next().map_or(Ok(128), |a| a.parse())?;
    let streams: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let model = std::env::var_os("SLUICE_TEST_MODEL")
        .map(Into::into)
        .or_else(default_model_path)
        .ok_or("no model path")?;
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let flash_attention = match env("FA").as_deref() {
        Some("on") => FlashAttention::On,
        Some("off") => FlashAttention::Off,
        _ => FlashAttention::Auto,
    };
    let kv_cache_type =
        if env("KV").as_deref() == Some("q8_0") { KvCacheType::Q8_0 } else { KvCacheType::F16 };
    let n_batch = env("BATCH").map_or(Ok(sluice_engine::DEFAULT_BATCH), |v| v.parse())?;
    let n_ubatch = env("UBATCH").map_or(Ok(sluice_engine::DEFAULT_UBATCH.min(n_batch)), |v| v.parse())?;
    let prompt_tokens: usize = env("PROMPT_TOKENS").map_or(Ok(2000), |v| v.parse())?;
    let engine = Engine::load(EngineConfig {
        n_threads: Some(threads),
        n_parallel: streams.max(1),
        n_ctx: Some(4096),
        n_batch,
        n_ubatch,
        flash_attention,
        kv_cache_type,
        ..EngineConfig::new(model)
    })?;
    println!(
        "{} | threads {threads} | {tokens} tokens | {streams} streams | fa {flash_attention:?} | \
         batch {n_batch}/{n_ubatch} | kv {kv_cache_type:?}",
        engine.info().name
    );

    // Warm-up (page in the weights, size the compute buffers).
    engine.generate(request(TOPICS[0], 8))?.collect().await?;

    // Prompt processing: a fresh prompt of about PROMPT_TOKENS tokens, one output token.
    let long_prompt = format!(
        "{} Summarise the above.",
        "The quick brown fox jumps over the lazy dog. ".repeat(prompt_tokens / 10)
    );
    let pp = engine
        .generate(GenerateRequest {
            prompt: Prompt::Text(long_prompt),
            sampling: Sampling { max_tokens: Some(1), ..Sampling::greedy() },
            tools: Vec::new(),
        })?
        .collect()
        .await?;
    println!(
        "prompt processing: {} tokens in {:?} = {:.0} tok/s",
        pp.summary.prompt_tokens,
        pp.summary.prompt_eval,
        rate(pp.summary.prompt_tokens, pp.summary.prompt_eval)
    );

    // Single stream.
    let single = engine.generate(request(TOPICS[1], tokens))?.collect().await?;
    println!(
        "single stream: {} tokens in {:?} = {:.1} tok/s (prompt {} tokens in {:?})",
        single.summary.completion_tokens,
        single.summary.eval,
        eval_rate(&single.summary),
        single.summary.prompt_tokens,
        single.summary.prompt_eval,
    );

    // Concurrent streams, all admitted together.
    let started = Instant::now();
    let generations = (0..streams)
        .map(|i| engine.generate(request(TOPICS[(i + 2) % TOPICS.len()], tokens)))
        .collect::<Result<Vec<_>, _>>()?;
    let results = join_all(generations.into_iter().map(|g| g.collect())).await;
    let wall = started.elapsed();
    let mut total = 0;
    let mut first_token = Duration::ZERO;
    for result in results {
        let done = result?;
        total += done.summary.completion_tokens;
        first_token = first_token.max(done.summary.prompt_eval);
    }
    println!(
        "{streams} streams: {total} tokens in {wall:?} = {:.1} tok/s aggregate, \
         {:.1} tok/s after the last first token ({first_token:?})",
        rate(total, wall),
        rate(total.saturating_sub(streams), wall.saturating_sub(first_token)),
    );
    println!("{:?}", engine.stats());
    Ok(())
}
