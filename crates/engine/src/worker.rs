//! The engine thread: the one thread that owns the llama.cpp contexts (a context is
//! tied to the model it borrows and is driven from a single thread). It sleeps on
//! its command channel while idle and otherwise loops: take new commands, drop
//! requests whose caller left, admit queued requests to free slots, run one step.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};

use llama_cpp_2::context::params::{KvCacheType as LlamaKvCacheType, LlamaContextParams};
use llama_cpp_2::token::LlamaToken;
use tokio::sync::oneshot;

use crate::EngineError;
use crate::config::{FlashAttention, KvCacheType, Resolved};
use crate::embed::Embedder;
use crate::scheduler::Scheduler;
use crate::shared::Shared;
use crate::slot::Pending;
use crate::stats::{Counters, Load};

/// A message from an [`crate::Engine`] handle to its thread.
#[derive(Debug)]
pub(crate) enum Command {
    /// Queue a tokenized generation request.
    Generate(Pending),
    /// Embed tokenized inputs and answer on `reply`.
    Embed { inputs: Vec<Vec<LlamaToken>>, reply: oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>> },
}

/// Starts the engine thread and waits until its context exists.
pub(crate) fn spawn(shared: Arc<Shared>) -> Result<mpsc::Sender<Command>, EngineError> {
    let (commands, inbox) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("sluice-engine".into())
        .spawn(move || run(&shared, &inbox, &ready_tx))
        .map_err(|err| EngineError::Load(format!("cannot start engine thread: {err}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(commands),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(EngineError::Load("engine thread exited during start-up".into())),
    }
}

fn run(
    shared: &Arc<Shared>,
    inbox: &mpsc::Receiver<Command>,
    ready: &mpsc::SyncSender<Result<(), EngineError>>,
) {
    let model = &shared.model;
    let ctx = match crate::backend::get().and_then(|backend| {
        model
            .new_context(backend, context_params(&shared.resolved))
            .map_err(|err| EngineError::Load(format!("context: {err}")))
    }) {
        Ok(ctx) => ctx,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut worker = Worker {
        shared,
        scheduler: Scheduler::new(ctx, model, Arc::clone(shared)),
        embedder: None,
        queue: VecDeque::new(),
        closing: false,
    };
    // A panic here would otherwise leave handles waiting on a gauge nobody updates.
    let crashed = std::panic::catch_unwind(AssertUnwindSafe(|| worker.run(inbox))).is_err();
    if crashed {
        tracing::error!(model = %shared.info().name, "engine thread panicked; engine closed");
    } else {
        tracing::debug!(model = %shared.info().name, "engine thread exiting");
    }
    shared.closed.store(true, Ordering::Release);
    // The host cache went with the scheduler.
    Counters::set(&shared.counters.kv_host_bytes, 0);
    Counters::set(&shared.counters.kv_host_entries, 0);
    shared.load.update(|load| *load = Load::default());
}

/// The decoding context: one KV stream of `n_ctx` cells per slot.
fn context_params(resolved: &Resolved) -> LlamaContextParams {
    // llama.cpp's `llama_flash_attn_type`: -1 auto, 0 disabled, 1 enabled.
    let flash_attention = match resolved.flash_attention {
        FlashAttention::Auto => -1,
        FlashAttention::Off => 0,
        FlashAttention::On => 1,
    };
    let kv_type = match resolved.kv_cache_type {
        KvCacheType::F16 => LlamaKvCacheType::F16,
        KvCacheType::Q8_0 => LlamaKvCacheType::Q8_0,
    };
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(resolved.kv_cells()))
        .with_n_batch(resolved.n_batch)
        .with_n_ubatch(resolved.n_ubatch)
        .with_flash_attention_policy(flash_attention)
        .with_type_k(kv_type)
        .with_type_v(kv_type)
        .with_n_seq_max(u32::try_from(resolved.n_parallel).unwrap_or(u32::MAX))
        // With one pool shared by all sequences, a sequence's attention (and so its
        // greedy output) changed with whatever else was cached; separate streams do not.
        .with_kv_unified(false)
        .with_n_threads(resolved.n_threads)
        .with_n_threads_batch(resolved.n_threads_batch)
}

struct Worker<'m> {
    shared: &'m Shared,
    scheduler: Scheduler<'m>,
    embedder: Option<Embedder<'m>>,
    queue: VecDeque<Pending>,
    /// Every handle is gone: finish what is running, then exit.
    closing: bool,
}

impl<'m> Worker<'m> {
    fn run(&mut self, inbox: &mpsc::Receiver<Command>) {
        loop {
            if self.scheduler.is_idle() && self.queue.is_empty() {
                if self.closing {
                    return;
                }
                match inbox.recv() {
                    Ok(command) => self.handle(command),
                    Err(_) => return,
                }
            }
            loop {
                match inbox.try_recv() {
                    Ok(command) => self.handle(command),
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        self.closing = true;
                        break;
                    }
                }
            }
            self.drop_abandoned();
            while let Some(pending) = self.queue.pop_front() {
                if let Err(pending) = self.scheduler.admit(pending) {
                    self.queue.push_front(pending);
                    break;
                }
            }
            if !self.scheduler.is_idle() {
                self.scheduler.step();
            }
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Generate(pending) => self.queue.push_back(pending),
            Command::Embed { inputs, reply } => {
                let result = self.embed(&inputs, &reply);
                // Counted before the load drops, so whoever waits for idle sees it.
                if result.is_none() {
                    Counters::add(&self.shared.counters.sequences_cancelled, 1);
                }
                self.shared.load.update(|load| load.embeddings = load.embeddings.saturating_sub(1));
                if let Some(result) = result {
                    let _ = reply.send(result);
                }
            }
        }
    }

    /// Embeds `inputs` one by one; `None` when the caller left before the last one
    /// (checked between inputs, so a dropped request stops at once).
    fn embed(
        &mut self,
        inputs: &[Vec<LlamaToken>],
        reply: &oneshot::Sender<Result<Vec<Vec<f32>>, EngineError>>,
    ) -> Option<Result<Vec<Vec<f32>>, EngineError>> {
        if self.embedder.is_none() {
            match Embedder::new(&self.shared.model, &self.shared.resolved) {
                Ok(embedder) => self.embedder = Some(embedder),
                Err(e) => return Some(Err(e)),
            }
        }
        let embedder = self.embedder.as_mut()?;
        let mut vectors = Vec::with_capacity(inputs.len());
        for tokens in inputs {
            if reply.is_closed() {
                return None;
            }
            match embedder.embed_one(tokens) {
                Ok(v) => vectors.push(v),
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(vectors))
    }

    /// Forgets queued requests whose caller dropped the stream before admission.
    fn drop_abandoned(&mut self) {
        let before = self.queue.len();
        self.queue.retain(|pending| !pending.events.is_closed());
        let dropped = before - self.queue.len();
        if dropped > 0 {
            Counters::add(&self.shared.counters.sequences_cancelled, dropped);
            self.shared.load.update(|load| load.queued = load.queued.saturating_sub(dropped));
        }
    }
}
