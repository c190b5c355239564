//! Integration tests against the real default model (SmolLM2-135M-Instruct Q4_1).
//!
//! The model is found through `SLUICE_TEST_MODEL` or the default model directory;
//! `scripts/fetch-model.sh` puts it there. Generations are kept short so the suite
//! stays quick on two cores.

use std::path::PathBuf;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use sluice_engine::{
    ChatMessage, EmbedInput, Engine, EngineConfig, EngineError, FinishReason, FlashAttention, GenEvent,
    GenerateRequest, KeepAlive, KvCacheType, ManagedEngine, OutputFormat, Prompt, Sampling, ToolSchema,
    default_model_path,
};

fn model_path() -> PathBuf {
    let path = std::env::var_os("SLUICE_TEST_MODEL")
        .map(PathBuf::from)
        .or_else(default_model_path)
        .expect("no SLUICE_TEST_MODEL and no HOME to find the default model dir");
    assert!(
        path.is_file(),
        "test model not found at {}: run scripts/fetch-model.sh (or set SLUICE_TEST_MODEL)",
        path.display()
    );
    path
}

/// Small context and one thread per engine: tests run in parallel on two cores.
fn config() -> EngineConfig {
    EngineConfig { n_ctx: Some(1024), n_threads: Some(1), ..EngineConfig::new(model_path()) }
}

fn engine() -> Engine {
    Engine::load(config()).expect("model loads")
}

fn chat(text: &str, sampling: Sampling) -> GenerateRequest {
    GenerateRequest { prompt: Prompt::Chat(vec![ChatMessage::user(text)]), sampling, tools: Vec::new() }
}

fn greedy(max_tokens: u32) -> Sampling {
    Sampling { max_tokens: Some(max_tokens), ..Sampling::greedy() }
}

async fn run(engine: &Engine, request: GenerateRequest) -> sluice_engine::Completion {
    let generation = engine.generate(request).expect("request is accepted");
    generation.collect().await.expect("generation completes")
}

#[tokio::test]
async fn seeded_sampling_is_deterministic() {
    let engine = engine();
    let sampling = Sampling { temperature: 0.9, seed: Some(42), max_tokens: Some(24), ..Sampling::default() };
    let first = run(&engine, chat("Tell me about cats.", sampling.clone())).await;
    assert!(!first.text.is_empty());
    // Again, now batched together with other sequences.
    let neighbours: Vec<_> = ["Name a color.", "What is 2+2?"]
        .iter()
        .map(|prompt| engine.generate(chat(prompt, greedy(24))).unwrap())
        .collect();
    let second = run(&engine, chat("Tell me about cats.", sampling)).await;
    assert_eq!(first.text, second.text);
    for neighbour in neighbours {
        neighbour.collect().await.unwrap();
    }
}

#[tokio::test]
async fn stop_string_is_not_emitted() {
    let engine = engine();
    let full = run(&engine, chat("What is the capital of France?", greedy(24))).await;
    // A stop string from the middle of the known greedy answer.
    let chars: Vec<char> = full.text.chars().collect();
    assert!(chars.len() > 12, "answer too short: {:?}", full.text);
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let expected = &full.text[..full.text.find(&stop).unwrap()];

    let sampling = Sampling { stop: vec![stop.clone()], ..greedy(24) };
    let mut generation = engine.generate(chat("What is the capital of France?", sampling)).unwrap();
    let mut text = String::new();
    let mut summary = None;
    while let Some(event) = generation.next().await {
        match event {
            GenEvent::Token(piece) => text.push_str(&piece),
            GenEvent::Logprobs(_) => {}
            GenEvent::Done(done) => summary = Some(done),
            GenEvent::Error(err) => panic!("{err}"),
        }
    }
    assert_eq!(text, expected, "stop {stop:?}");
    assert!(!text.contains(&stop));
    assert_eq!(summary.unwrap().finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn max_tokens_ends_with_length() {
    let engine = engine();
    let done = run(&engine, chat("Write a long story about a dragon.", greedy(7))).await;
    assert_eq!(done.summary.finish_reason, FinishReason::Length);
    assert_eq!(done.summary.completion_tokens, 7);
    assert_eq!(engine.stats().completion_tokens, 7);
}

#[tokio::test]
async fn dropping_a_generation_frees_its_sequence() {
    let engine = engine();
    let mut generation = engine.generate(chat("Write a long story about a dragon.", greedy(500))).unwrap();
    assert!(matches!(generation.next().await, Some(GenEvent::Token(_))));
    assert_eq!(engine.stats().active_sequences, 1);
    drop(generation);
    engine.wait_idle().await;
    let stats = engine.stats();
    assert_eq!(stats.active_sequences, 0);
    assert_eq!(stats.sequences_cancelled, 1);
    // The slot is usable again.
    let done = run(&engine, chat("Hi", greedy(4))).await;
    assert!(done.summary.completion_tokens > 0);
}

#[tokio::test]
async fn concurrent_requests_match_their_sequential_runs() {
    let engine = engine();
    let prompts = ["What is 2+2?", "Name a color.", "Say hello in French.", "What is a cat?"];
    let mut sequential = Vec::new();
    for prompt in prompts {
        sequential.push(run(&engine, chat(prompt, greedy(24))).await.text);
    }
    // A fresh engine, so the prompts are evaluated together too (no cached prefixes).
    let engine = self::engine();
    let generations: Vec<_> =
        prompts.iter().map(|prompt| engine.generate(chat(prompt, greedy(24))).unwrap()).collect();
    let concurrent: Vec<String> = join_all(generations.into_iter().map(|g| g.collect()))
        .await
        .into_iter()
        .map(|done| done.unwrap().text)
        .collect();
    assert_eq!(concurrent, sequential);
    let stats = engine.stats();
    assert_eq!(stats.sequences_started, 4);
    assert_eq!(stats.prompt_tokens_reused, 0);
}

#[tokio::test]
async fn queue_overflow_is_refused_and_queued_requests_wait_their_turn() {
    let engine = Engine::load(EngineConfig { n_parallel: 1, max_queue: 1, ..config() }).unwrap();
    let mut running = engine.generate(chat("Write a long story about a dragon.", greedy(500))).unwrap();
    assert!(matches!(running.next().await, Some(GenEvent::Token(_))));
    let queued = engine.generate(chat("Hi", greedy(4))).unwrap();
    let refused = engine.generate(chat("Hi", greedy(4)));
    assert_eq!(refused.unwrap_err(), EngineError::QueueFull(1));
    assert_eq!(engine.stats().queued_requests, 1);
    drop(running);
    assert!(queued.collect().await.unwrap().summary.completion_tokens > 0);
}

#[tokio::test]
async fn prompt_longer_than_the_context_is_refused() {
    let engine = engine();
    let long = "hello ".repeat(2000);
    let err = engine.generate(chat(&long, greedy(4))).unwrap_err();
    match err {
        EngineError::ContextOverflow { prompt_tokens, context } => {
            assert!(prompt_tokens > 1024, "{prompt_tokens}");
            assert_eq!(context, 1024);
        }
        other => panic!("expected ContextOverflow, got {other:?}"),
    }
}

#[tokio::test]
async fn second_turn_reuses_the_first_turns_cache() {
    let engine = engine();
    let question = ChatMessage::user("What is the capital of France?");
    let first_prompt = Prompt::Chat(vec![question.clone()]);
    let first_tokens = engine.count_tokens(&first_prompt).unwrap();
    let answer =
        run(&engine, GenerateRequest { prompt: first_prompt, sampling: greedy(16), tools: Vec::new() }).await;
    let before = engine.stats();
    assert_eq!(before.prompt_tokens_reused, 0);
    assert_eq!(before.prompt_tokens_evaluated, first_tokens as u64);

    let second_prompt =
        Prompt::Chat(vec![question, ChatMessage::assistant(answer.text), ChatMessage::user("And of Italy?")]);
    let second_tokens = engine.count_tokens(&second_prompt).unwrap() as u64;
    run(&engine, GenerateRequest { prompt: second_prompt, sampling: greedy(8), tools: Vec::new() }).await;
    let after = engine.stats();
    let reused = after.prompt_tokens_reused;
    let evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated;
    assert!(reused >= first_tokens as u64, "reused {reused} of {first_tokens}");
    assert_eq!(reused + evaluated, second_tokens);
}

#[tokio::test]
async fn keep_alive_unloads_an_idle_model_and_reloads_on_demand() {
    let managed = ManagedEngine::new(config(), KeepAlive::For(Duration::from_secs(10)));
    assert!(!managed.is_loaded());
    let (hello, load) = managed.generate_timed(chat("Hi", greedy(4))).await.unwrap();
    hello.collect().await.unwrap();
    assert!(managed.is_loaded());
    assert!(load > Duration::ZERO, "the call that loads reports the load time");
    let (hello, load) = managed.generate_timed(chat("Hi", greedy(4))).await.unwrap();
    hello.collect().await.unwrap();
    assert_eq!(load, Duration::ZERO, "a loaded model costs no load time");
    settle(&managed).await;

    // Freeze the clock only now: with paused time, waiting on the engine thread would
    // let Tokio jump straight to the reaper's deadline.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(5)).await;
    settle(&managed).await;
    assert!(managed.is_loaded(), "unloaded before keep_alive elapsed");
    tokio::time::advance(Duration::from_secs(6)).await;
    settle(&managed).await;
    assert!(!managed.is_loaded(), "still loaded after keep_alive");
    tokio::time::resume();

    let again = managed.generate(chat("Hi", greedy(4))).await.unwrap();
    again.collect().await.unwrap();
    assert!(managed.is_loaded());
    assert_eq!(managed.stats().sequences_started, 3, "counters survive a reload");
}

#[tokio::test(start_paused = true)]
async fn keep_alive_zero_unloads_at_once_and_forever_never_does() {
    let eager = ManagedEngine::new(config(), KeepAlive::For(Duration::ZERO));
    eager.generate(chat("Hi", greedy(2))).await.unwrap().collect().await.unwrap();
    settle(&eager).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!eager.is_loaded());

    let forever = ManagedEngine::new(config(), KeepAlive::Forever);
    forever.preload().await.unwrap();
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert!(forever.is_loaded());
}

/// Waits until the engine is idle and the reaper has seen it.
async fn settle(managed: &ManagedEngine) {
    managed.wait_idle().await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn chat_template_renders_the_default_system_prompt() {
    let engine = engine();
    let rendered = engine.render_chat(&[ChatMessage::user("Hi")]).unwrap();
    assert!(
        rendered.starts_with(
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        ),
        "{rendered:?}"
    );
    assert!(rendered.ends_with("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"));
}

#[tokio::test]
async fn info_describes_the_model() {
    let engine = engine();
    let info = engine.info();
    assert!(info.name.to_lowercase().contains("smollm"), "{}", info.name);
    assert_eq!(info.quantization, "Q4_1");
    assert_eq!(info.file_size, 98_362_432);
    assert_eq!(info.context_length, 1024);
    assert_eq!(info.train_context_length, 8192);
    assert!((100_000_000..200_000_000).contains(&info.parameters), "{}", info.parameters);
    assert!(info.memory_bytes > info.file_size / 2);
    let template = info.chat_template.as_deref().expect("SmolLM2 carries a chat template");
    assert!(template.contains("<|im_start|>"), "{template}");
}

#[tokio::test]
async fn embeddings_are_unit_vectors_that_tell_inputs_apart() {
    let engine = engine();
    let inputs =
        vec!["I love cats.".to_owned(), "I adore kittens.".to_owned(), "Tax law of 1998.".to_owned()];
    let vectors = engine.embed(inputs).await.unwrap();
    assert_eq!(vectors.len(), 3);
    let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for v in &vectors {
        assert_eq!(v.len(), engine.info().embedding_length);
        assert!((dot(v, v) - 1.0).abs() < 1e-3);
    }
    assert!(dot(&vectors[0], &vectors[1]) > dot(&vectors[0], &vectors[2]));
}

/// Token ids embed as they are (checked against the vocabulary); an input over the
/// window is refused, or cut to it with `truncate`, keeping its start.
#[tokio::test]
async fn embeddings_take_token_ids_and_truncate_on_request() {
    // A 128-token window keeps the long inputs cheap.
    let engine = Engine::load(EngineConfig { n_ctx: Some(128), ..config() }).unwrap();
    let ids =
        engine.embed_with(EmbedInput::Tokens(vec![vec![1, 2, 3], vec![400, 500]]), false).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0].len(), engine.info().embedding_length);
    assert_ne!(ids[0], ids[1]);
    let bad = engine.embed_with(EmbedInput::Tokens(vec![vec![1, 10_000_000]]), false).await;
    let named = |m: &str| m.contains("10000000") && m.contains("vocabulary");
    assert!(matches!(&bad, Err(EngineError::InvalidRequest(m)) if named(m)), "{bad:?}");

    let long = "word ".repeat(200);
    let refused = engine.embed_with(EmbedInput::Texts(vec![long.clone()]), false).await;
    assert!(matches!(refused, Err(EngineError::ContextOverflow { .. })), "{refused:?}");
    let cut = engine.embed_with(EmbedInput::Texts(vec![long.clone()]), true).await.unwrap();
    let other_tail =
        engine.embed_with(EmbedInput::Texts(vec![format!("{long} and then something else")]), true);
    assert_eq!(cut, other_tail.await.unwrap(), "both are cut to the same first 128 tokens");
}

#[tokio::test(start_paused = true)]
async fn keep_alive_can_change_while_loaded() {
    let managed = ManagedEngine::new(config(), KeepAlive::Forever);
    managed.preload().await.unwrap();
    settle(&managed).await;
    assert_eq!(managed.unloads_at(), None, "kept forever");

    managed.set_keep_alive(KeepAlive::For(Duration::from_secs(60)));
    settle(&managed).await;
    let at = managed.unloads_at().expect("now it expires");
    let now = tokio::time::Instant::now();
    assert!(at > now && at <= now + Duration::from_secs(60), "expires a keep_alive after turning idle");
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(managed.is_loaded(), "unloaded before the new keep_alive elapsed");

    managed.set_keep_alive(KeepAlive::For(Duration::ZERO));
    settle(&managed).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(!managed.is_loaded(), "keep_alive 0 unloads an idle model at once");
    assert_eq!(managed.unloads_at(), None);
}

/// A keep-alive past the clock's range (a client's `keep_alive: "300000000000y"`) is
/// forever: asking when the model unloads must not overflow `Instant`, and the reaper
/// must keep it loaded.
#[tokio::test(start_paused = true)]
async fn a_keep_alive_past_the_clock_is_forever() {
    let huge = humantime_like_years(300_000_000_000);
    let managed = ManagedEngine::new(config(), KeepAlive::For(huge));
    managed.preload().await.unwrap();
    settle(&managed).await;
    assert_eq!(managed.unloads_at(), None, "no clock can say when");
    tokio::time::sleep(Duration::from_secs(24 * 3600)).await;
    assert!(managed.is_loaded());
    managed.set_keep_alive(KeepAlive::For(Duration::MAX));
    settle(&managed).await;
    assert_eq!(managed.unloads_at(), None);
}

/// `n` years of 365.25 days, as humantime reads `"{n}y"`.
fn humantime_like_years(n: u64) -> Duration {
    Duration::from_secs(n * 31_557_600)
}

/// Embedding requests are bounded (2,048 inputs, 300,000 tokens together), count in
/// the queue bound like generations, and a dropped one stops the engine thread before
/// its next input instead of running to completion.
#[tokio::test]
async fn embeddings_are_bounded_counted_and_cancellable() {
    let engine = Engine::load(EngineConfig { max_queue: 1, ..config() }).unwrap();
    let too_many = engine.embed(vec!["a".to_owned(); 2049]).await;
    assert!(matches!(&too_many, Err(EngineError::InvalidRequest(m)) if m.contains("2048")), "{too_many:?}");
    let too_long = engine.embed(vec!["word ".repeat(300); 2048]).await;
    assert!(matches!(&too_long, Err(EngineError::InvalidRequest(m)) if m.contains("300000")), "{too_long:?}");

    // About 200,000 tokens: minutes of work on one thread.
    let big = tokio::spawn({
        let engine = engine.clone();
        async move { engine.embed(vec!["word ".repeat(100); 2000]).await }
    });
    while engine.is_idle() {
        tokio::task::yield_now().await;
    }
    assert_eq!(engine.generate(chat("Hi", greedy(2))).unwrap_err(), EngineError::QueueFull(1));
    assert_eq!(engine.embed(vec!["x".into()]).await.unwrap_err(), EngineError::QueueFull(1));
    big.abort();
    tokio::time::timeout(Duration::from_secs(5), engine.wait_idle())
        .await
        .expect("a dropped embedding request stops at its next input");
    assert_eq!(engine.stats().sequences_cancelled, 1);
}

/// A user message of roughly `tokens` tokens, distinct per `tag`.
fn long_message(tag: &str, tokens: usize) -> String {
    let sentence = "The clerks wrote down the height of the flood and the price of grain. ";
    format!("{tag}: summarise this record.\n{}", sentence.repeat(tokens / 15))
}

/// One slot, so every new conversation pushes the previous one out of it.
fn one_slot(kv_cache_bytes: u64) -> Engine {
    Engine::load(EngineConfig { n_parallel: 1, kv_cache_bytes, ..config() }).expect("model loads")
}

/// Runs turn one of a conversation, then returns the messages of its second turn.
async fn two_turns(engine: &Engine, tag: &str) -> Vec<ChatMessage> {
    let first = vec![ChatMessage::user(long_message(tag, 200))];
    let answer = run(
        engine,
        GenerateRequest { prompt: Prompt::Chat(first.clone()), sampling: greedy(12), tools: Vec::new() },
    )
    .await;
    let mut second = first;
    second.push(ChatMessage::assistant(answer.text));
    second.push(ChatMessage::user("Say it in one sentence."));
    second
}

#[tokio::test]
async fn an_evicted_conversation_is_restored_from_the_host_cache_and_answers_the_same() {
    // Reference: the follow-up right after the first turn, its history still in the slot.
    let reference = one_slot(0);
    let followup = two_turns(&reference, "A").await;
    let expected = run(
        &reference,
        GenerateRequest { prompt: Prompt::Chat(followup.clone()), sampling: greedy(16), tools: Vec::new() },
    )
    .await;

    let engine = one_slot(64 << 20);
    assert_eq!(two_turns(&engine, "A").await, followup);
    // Another conversation takes the only slot: A's KV state moves to host memory.
    two_turns(&engine, "B").await;
    let before = engine.stats();
    assert_eq!((before.kv_host_saves, before.kv_host_entries), (1, 1));
    assert!(before.kv_host_bytes > 0);

    let history = engine.count_tokens(&Prompt::Chat(followup.clone())).unwrap() as u64;
    let got = run(
        &engine,
        GenerateRequest { prompt: Prompt::Chat(followup), sampling: greedy(16), tools: Vec::new() },
    )
    .await;
    assert_eq!(got.text, expected.text, "the restored conversation answers as if never evicted");
    let after = engine.stats();
    assert_eq!((after.kv_host_hits, after.kv_host_restores), (1, 1));
    // B was saved when A took the slot back; A left the host cache when restored.
    assert_eq!((after.kv_host_saves, after.kv_host_entries), (2, 1));
    let evaluated = after.prompt_tokens_evaluated - before.prompt_tokens_evaluated;
    assert!(after.kv_host_restored_tokens > 200, "{after:?}");
    assert!(evaluated < 30, "only the new turn is read: {evaluated} of {history} tokens");
}

#[tokio::test]
async fn the_host_cache_stays_within_its_bytes_dropping_the_least_recently_used() {
    // A ~230-token sequence is ~5.3 MB of f16 KV for SmolLM2: 8 MiB hold one, not two.
    let budget = 8 << 20;
    let engine = one_slot(budget);
    for tag in ["A", "B", "C", "D"] {
        two_turns(&engine, tag).await;
        assert!(engine.stats().kv_host_bytes <= budget);
    }
    let stats = engine.stats();
    assert_eq!(stats.kv_host_saves, 3, "A, B and C were saved when the next took the slot");
    assert_eq!((stats.kv_host_evictions, stats.kv_host_entries), (2, 1));
    // Only C is left: C is restored (and D saved in its place), A must be read again.
    let c = Prompt::Chat(vec![ChatMessage::user(long_message("C", 200))]);
    run(&engine, GenerateRequest { prompt: c, sampling: greedy(1), tools: Vec::new() }).await;
    assert_eq!(engine.stats().kv_host_restores, 1);
    let a = Prompt::Chat(vec![ChatMessage::user(long_message("A", 200))]);
    run(&engine, GenerateRequest { prompt: a, sampling: greedy(1), tools: Vec::new() }).await;
    assert_eq!(engine.stats().kv_host_restores, 1);
}

#[tokio::test]
async fn a_q8_0_kv_cache_loads_answers_and_takes_less_memory() {
    let f16 = engine();
    let q8 = Engine::load(EngineConfig { kv_cache_type: KvCacheType::Q8_0, ..config() }).unwrap();
    let answer = run(&q8, chat("What is the capital of France?", greedy(12))).await;
    // 8-bit cells change the logits a little, so the greedy text may differ from f16's.
    assert_eq!(answer.summary.completion_tokens, 12);
    assert!(answer.text.chars().filter(|c| c.is_alphabetic()).count() > 10, "{:?}", answer.text);
    assert!(q8.info().memory_bytes < f16.info().memory_bytes);
    let off =
        EngineConfig { kv_cache_type: KvCacheType::Q8_0, flash_attention: FlashAttention::Off, ..config() };
    assert!(matches!(Engine::load(off), Err(EngineError::Load(msg)) if msg.contains("flash attention")));
}

/// What [`pet_schema`] describes, checked by serde: an unknown, missing or mistyped
/// field fails to parse; the bounds are checked by [`valid_pet`].
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // read through Debug only
struct Pet {
    name: String,
    age: i64,
    kind: PetKind,
    tags: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum PetKind {
    Cat,
    Dog,
}

fn pet_schema() -> serde_json::Value {
    serde_json::json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 12},
            "age": {"type": "integer", "minimum": 0, "maximum": 30},
            "kind": {"enum": ["cat", "dog"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 8}, "maxItems": 3}
        },
        "required": ["name", "age", "kind", "tags"],
        "additionalProperties": false
    })
}

/// `Ok` when `text` is a document [`pet_schema`] accepts.
fn valid_pet(text: &str) -> Result<(), String> {
    let pet: Pet = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let bounded = pet.name.chars().count() <= 12
        && (0..=30).contains(&pet.age)
        && pet.tags.len() <= 3
        && pet.tags.iter().all(|t| t.chars().count() <= 8);
    if bounded { Ok(()) } else { Err(format!("out of bounds: {pet:?}")) }
}

/// Samples `n` answers at temperature 1.5 from the whole distribution (no top-k, top-p
/// or min-p to hide unlikely tokens), each constrained to [`pet_schema`], and returns
/// the invalid ones. `max_tokens` is far above what the bounded schema can take, so a
/// constrained answer always ends by itself.
async fn invalid_hot_answers(n: usize) -> Vec<String> {
    let engine = engine();
    let mut invalid = Vec::new();
    for i in 0..n {
        let sampling = Sampling {
            temperature: 1.5,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(i as u64),
            max_tokens: Some(400),
            format: Some(OutputFormat::JsonSchema(pet_schema())),
            ..Sampling::default()
        };
        let answer = run(&engine, chat("Describe a pet as JSON.", sampling)).await;
        if let Err(why) = valid_pet(&answer.text) {
            invalid.push(format!("{:?} ({:?}): {why}", answer.text, answer.summary.finish_reason));
        }
    }
    invalid
}

#[tokio::test]
async fn hot_sampling_against_a_schema_never_gives_an_invalid_answer() {
    let invalid = invalid_hot_answers(50).await;
    assert!(invalid.is_empty(), "{} of 50 invalid: {invalid:#?}", invalid.len());
}

/// The 1,000-answer run of the issue; about ten minutes on one thread.
/// `cargo nextest run -p sluice-engine --run-ignored only thousand_hot`
#[tokio::test]
#[ignore = "slow: 1,000 generations"]
async fn thousand_hot_answers_against_a_schema_are_all_valid() {
    let invalid = invalid_hot_answers(1000).await;
    assert!(invalid.is_empty(), "{} of 1000 invalid: {invalid:#?}", invalid.len());
}

#[tokio::test]
async fn the_constraint_belongs_to_its_sequence_alone() {
    let engine = engine();
    let plain = chat("What is the capital of France?", greedy(16));
    let alone = run(&engine, plain.clone()).await;
    // The same plain request batched beside a constrained one answers the same, and the
    // constrained one is a JSON object even though the model would write prose.
    let json = Sampling { format: Some(OutputFormat::Json), ..greedy(48) };
    let constrained = engine.generate(chat("What is the capital of France?", json)).unwrap();
    let beside = engine.generate(plain).unwrap();
    let (constrained, beside) = futures::join!(constrained.collect(), beside.collect());
    assert_eq!(beside.unwrap().text, alone.text);
    assert!(!alone.text.trim_start().starts_with('{'), "the model answers in prose: {:?}", alone.text);
    let constrained = constrained.unwrap();
    assert!(constrained.text.trim_start().starts_with('{'), "{:?}", constrained.text);
    if constrained.summary.finish_reason == FinishReason::Stop {
        let v: serde_json::Value = serde_json::from_str(&constrained.text).expect("a whole JSON document");
        assert!(v.is_object(), "{v}");
    }
}

#[tokio::test]
async fn a_schema_the_constraint_cannot_enforce_is_refused_before_queueing() {
    let engine = engine();
    for schema in [
        serde_json::json!({"type": "strin"}),
        serde_json::json!({"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}),
    ] {
        let sampling = Sampling { format: Some(OutputFormat::JsonSchema(schema.clone())), ..greedy(8) };
        let err = engine.generate(chat("hi", sampling)).unwrap_err();
        assert!(matches!(&err, EngineError::InvalidSchema(_)), "{schema}: {err:?}");
        assert!(err.is_client_error());
    }
    assert_eq!(engine.stats().sequences_started, 0);
}

#[tokio::test]
async fn a_prompt_continues_from_token_ids_checked_against_the_vocabulary() {
    let engine = engine();
    let first = Prompt::Chat(vec![ChatMessage::user("My name is Ada.")]);
    let ids = engine.prompt_tokens(&first).unwrap();
    let then = Prompt::Chat(vec![ChatMessage::user("What is my name?")]);
    let alone = engine.prompt_tokens(&then).unwrap();
    let joined = engine
        .prompt_tokens(&Prompt::Continue { context: ids.clone(), then: Box::new(then.clone()) })
        .unwrap();
    // The ids come first, as given; the next prompt follows without a second BOS token.
    assert_eq!(joined[..ids.len()], ids[..]);
    assert!(alone.ends_with(&joined[ids.len()..]), "{alone:?} / {joined:?}");
    assert!(joined.len() - ids.len() + 1 >= alone.len());
    // Generation reads them all.
    let request = GenerateRequest {
        prompt: Prompt::Continue { context: ids.clone(), then: Box::new(then.clone()) },
        sampling: greedy(4),
        tools: Vec::new(),
    };
    let answer = run(&engine, request).await;
    assert_eq!(answer.summary.prompt_tokens, joined.len());

    let bad = Prompt::Continue { context: vec![1, 99_999_999], then: Box::new(then) };
    let err =
        engine.generate(GenerateRequest { prompt: bad, sampling: greedy(4), tools: Vec::new() }).unwrap_err();
    assert!(matches!(&err, EngineError::InvalidRequest(m) if m.contains("99999999")), "{err:?}");
}

#[tokio::test]
async fn logprobs_come_from_the_logits_for_every_token() {
    let engine = engine();
    let plain = run(&engine, chat("Name three fruits.", greedy(24))).await;
    assert!(plain.logprobs.is_empty(), "none unless asked for");
    let asked = run(&engine, chat("Name three fruits.", Sampling { logprobs: Some(5), ..greedy(24) })).await;
    assert_eq!(asked.text, plain.text, "reporting log probabilities does not change the answer");
    assert_eq!(asked.logprobs.len(), asked.summary.completion_tokens, "one entry per generated token");
    let bytes: Vec<u8> = asked.logprobs.iter().flat_map(|l| l.bytes.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), asked.text, "the tokens spell the answer");
    for l in &asked.logprobs {
        assert_eq!(l.top.len(), 5, "{l:?}");
        assert!(l.top.windows(2).all(|w| w[0].logprob >= w[1].logprob), "sorted: {l:?}");
        assert!(l.logprob <= 0.0 && l.logprob.is_finite(), "{l:?}");
        // Greedy: the chosen token is the likeliest one.
        assert!((l.logprob - l.top[0].logprob).abs() < 1e-6, "{l:?}");
        assert_eq!(l.token, l.top[0].token);
        let mass: f32 = l.top.iter().map(|t| t.logprob.exp()).sum();
        assert!(mass <= 1.0 + 1e-4, "probabilities sum to at most 1: {mass} {l:?}");
    }
    let none = run(&engine, chat("Name three fruits.", Sampling { logprobs: Some(0), ..greedy(8) })).await;
    assert!(none.logprobs.iter().all(|l| l.top.is_empty()) && !none.logprobs.is_empty());
}

#[tokio::test]
async fn logprobs_of_a_matched_stop_string_are_not_reported() {
    let engine = engine();
    let full = run(&engine, chat("What is the capital of France?", greedy(24))).await;
    let chars: Vec<char> = full.text.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let sampling = Sampling { stop: vec![stop], logprobs: Some(2), ..greedy(24) };
    let cut = run(&engine, chat("What is the capital of France?", sampling)).await;
    let spelled: Vec<u8> = cut.logprobs.iter().flat_map(|l| l.bytes.clone()).collect();
    assert!(spelled.starts_with(cut.text.as_bytes()), "every sent byte has its token");
    let last = cut.logprobs.last().map_or(0, |l| l.bytes.len());
    assert!(spelled.len() - last < cut.text.len(), "no token made only of the stop string");
}

#[tokio::test]
async fn a_tool_call_grammar_constrains_the_whole_answer_to_one_valid_call() {
    let engine = engine();
    let city = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 20}},
        "required": ["city"]
    });
    let tools = vec![
        ToolSchema { name: "get_weather".into(), parameters: Some(city) },
        ToolSchema { name: "get_time".into(), parameters: None },
    ];
    for seed in 0..3 {
        let sampling = Sampling {
            format: Some(OutputFormat::ToolCall(tools.clone())),
            temperature: 1.2,
            seed: Some(seed),
            max_tokens: Some(120),
            ..Sampling::default()
        };
        let out = run(&engine, chat("What is the weather in Oslo?", sampling)).await;
        assert_eq!(out.summary.finish_reason, FinishReason::Stop, "{:?}", out.text);
        let body = out.text.strip_prefix("<tool_call>\n").and_then(|t| t.strip_suffix("\n</tool_call>"));
        let call: serde_json::Value = serde_json::from_str(body.expect("wrapped in the tags")).unwrap();
        match call["name"].as_str() {
            Some("get_weather") => assert!(call["arguments"]["city"].is_string(), "{call}"),
            Some("get_time") => assert!(call["arguments"].is_object(), "{call}"),
            other => panic!("not a declared tool: {other:?} in {call}"),
        }
    }
}
