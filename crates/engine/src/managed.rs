//! Keep-alive: a `ManagedEngine` loads its model on first use (or on `preload`),
//! unloads it after it has been idle for the keep-alive period, and loads it again
//! on the next request, like Ollama's `keep_alive`.
//!
//! While a model is loaded, a small reaper task watches the engine's load gauge: each
//! time the engine turns idle it waits out the keep-alive period, and unloads unless
//! work arrived meanwhile. The check and the unload happen under the same lock that
//! requests are queued under, so a request never lands on an engine being dropped.
//! The keep-alive can change at any time (Ollama sends one with each request); the
//! reaper watches it too and starts its wait over with the new value.

use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use tokio::time::Instant;

use tokio::task::JoinHandle;

use crate::engine::Engine;
use crate::stats::Counters;
use crate::{EngineConfig, EngineError, EngineStats, GenerateRequest, Generation, ModelInfo};

/// How long an idle model stays in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Never unload once loaded.
    Forever,
    /// Unload after being idle this long; `Duration::ZERO` unloads as soon as idle.
    For(Duration),
}

/// An engine that is loaded on demand and unloaded when idle. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ManagedEngine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: EngineConfig,
    /// The current keep-alive; the reaper re-reads it whenever it changes.
    keep_alive: tokio::sync::watch::Sender<KeepAlive>,
    /// When the loaded engine last turned idle (`None` while busy or unloaded).
    idle_since: Mutex<Option<Instant>>,
    /// Counters survive reloads, so `stats` stays monotonic.
    counters: Arc<Counters>,
    loaded: Mutex<Option<Loaded>>,
    /// Serialises loads: concurrent first requests share one load.
    loading: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct Loaded {
    engine: Engine,
    /// Tells this load apart from a later one, so a stale reaper cannot unload it.
    epoch: u64,
    reaper: Option<JoinHandle<()>>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(reaper) = self.reaper.take() {
            reaper.abort();
        }
    }
}

impl ManagedEngine {
    /// A managed engine for `config`; nothing is loaded until first use or `preload`.
    pub fn new(config: EngineConfig, keep_alive: KeepAlive) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                keep_alive: tokio::sync::watch::Sender::new(keep_alive),
                idle_since: Mutex::new(None),
                counters: Arc::default(),
                loaded: Mutex::new(None),
                loading: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Loads the model now unless it is loaded already. Must run inside a Tokio runtime.
    pub async fn preload(&self) -> Result<(), EngineError> {
        self.with_engine(|_| Ok(())).await.map(|_| ())
    }

    /// The current keep-alive.
    pub fn keep_alive(&self) -> KeepAlive {
        *self.inner.keep_alive.borrow()
    }

    /// Changes how long the model stays loaded once idle. `For(Duration::ZERO)` unloads
    /// it as soon as nothing is running (at once, if nothing is).
    pub fn set_keep_alive(&self, keep_alive: KeepAlive) {
        self.inner.keep_alive.send_replace(keep_alive);
    }

    /// When the model will be unloaded if no work arrives: `None` when it is not loaded
    /// or kept forever (or so long that no clock can say when). While it is busy, this
    /// is the keep-alive from now.
    pub fn unloads_at(&self) -> Option<Instant> {
        let loaded = self.lock();
        let loaded = loaded.as_ref()?;
        let KeepAlive::For(keep) = self.keep_alive() else { return None };
        let idle_since = *self.inner.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let from =
            if loaded.engine.is_idle() { idle_since.unwrap_or_else(Instant::now) } else { Instant::now() };
        // A keep-alive past the clock's range is forever (a client may send "300000000000y").
        from.checked_add(keep)
    }

    /// The configuration this engine loads with.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Whether the model is in memory.
    pub fn is_loaded(&self) -> bool {
        self.lock().is_some()
    }

    /// Unloads the model now, even if it is busy: running sequences finish on the old
    /// engine thread, which exits after them.
    pub fn unload(&self) {
        self.lock().take();
    }

    /// Loads the model if needed, then queues a generation (see [`Engine::generate`]).
    pub async fn generate(&self, request: GenerateRequest) -> Result<Generation, EngineError> {
        self.generate_timed(request).await.map(|(generation, _)| generation)
    }

    /// Like [`ManagedEngine::generate`], with the time this call spent loading the
    /// model: zero when it was loaded already (or another call was loading it).
    pub async fn generate_timed(
        &self,
        request: GenerateRequest,
    ) -> Result<(Generation, Duration), EngineError> {
        if request.sampling.format.is_none() {
            return self.with_engine(|engine| engine.generate(request)).await;
        }
        // Compiling an output format costs CPU: not on the async threads.
        let (engine, load) = self.with_engine(|engine| Ok(engine.clone())).await?;
        let generation = tokio::task::spawn_blocking(move || engine.generate(request))
            .await
            .map_err(|err| EngineError::Decode(format!("the generate task failed: {err}")))??;
        Ok((generation, load))
    }

    /// Loads the model if needed, then embeds (see [`Engine::embed`]).
    pub async fn embed(&self, inputs: Vec<String>) -> Result<Vec<Vec<f32>>, EngineError> {
        self.embed_timed(crate::EmbedInput::Texts(inputs), false).await.map(|(vectors, _, _)| vectors)
    }

    /// Like [`ManagedEngine::embed`], for texts or token ids, cutting inputs longer
    /// than the embedding window to it when `truncate` (else refusing them), with the
    /// tokens read and the time this call spent loading the model.
    ///
    /// The inputs are tokenized on a blocking thread, outside the state lock; dropping
    /// the future stops the engine thread before its next input.
    pub async fn embed_timed(
        &self,
        input: crate::EmbedInput,
        truncate: bool,
    ) -> Result<(Vec<Vec<f32>>, usize, Duration), EngineError> {
        let (engine, load) = self.with_engine(|engine| Ok(engine.clone())).await?;
        let tokenized = tokio::task::spawn_blocking(move || engine.tokenize_embed(&input, truncate))
            .await
            .map_err(|_| EngineError::Closed)??;
        let tokens = tokenized.iter().map(Vec::len).sum();
        // Queued on the engine loaded now (a reload between the two reads the same file).
        let (reply, reload) = self.with_engine(|engine| engine.queue_embed(tokenized)).await?;
        Ok((reply.await.map_err(|_| EngineError::Closed)??, tokens, load + reload))
    }

    /// Tokens in `prompt` as the loaded model reads it; `None` while unloaded.
    pub fn count_tokens(&self, prompt: &crate::Prompt) -> Option<usize> {
        self.lock().as_ref().and_then(|loaded| loaded.engine.count_tokens(prompt).ok())
    }

    /// The token ids the loaded model reads for `prompt`; `None` while unloaded.
    pub fn prompt_tokens(&self, prompt: &crate::Prompt) -> Option<Result<Vec<u32>, EngineError>> {
        self.lock().as_ref().map(|loaded| loaded.engine.prompt_tokens(prompt))
    }

    /// The token ids of generated `text` for the loaded model; `None` while unloaded.
    pub fn text_tokens(&self, text: &str) -> Option<Vec<u32>> {
        self.lock().as_ref().map(|loaded| loaded.engine.text_tokens(text))
    }

    /// Facts about the model, if it is loaded.
    pub fn info(&self) -> Option<ModelInfo> {
        self.lock().as_ref().map(|loaded| loaded.engine.info().clone())
    }

    /// Counters accumulated over every load; gauges are zero while unloaded.
    pub fn stats(&self) -> EngineStats {
        match self.lock().as_ref() {
            Some(loaded) => loaded.engine.stats(),
            None => self.inner.counters.snapshot(Default::default()),
        }
    }

    /// Resolves once the loaded engine (if any) has nothing queued or running.
    pub async fn wait_idle(&self) {
        let engine = self.lock().as_ref().map(|loaded| loaded.engine.clone());
        if let Some(engine) = engine {
            engine.wait_idle().await;
        }
    }

    /// Runs `f` on the loaded engine, loading it first if needed, and returns how long
    /// the load took (zero if this call did not load). `f` runs under the state lock, so
    /// the reaper cannot unload between the lookup and `f` queueing work.
    async fn with_engine<T>(
        &self,
        f: impl FnOnce(&Engine) -> Result<T, EngineError>,
    ) -> Result<(T, Duration), EngineError> {
        if let Some(loaded) = self.live().as_ref() {
            return f(&loaded.engine).map(|t| (t, Duration::ZERO));
        }
        let _loading = self.inner.loading.lock().await;
        if let Some(loaded) = self.live().as_ref() {
            return f(&loaded.engine).map(|t| (t, Duration::ZERO));
        }
        let config = self.inner.config.clone();
        let counters = Arc::clone(&self.inner.counters);
        // Wall time on purpose: the load is real work on a blocking thread, and tests
        // that pause Tokio's clock must still see it.
        let started = std::time::Instant::now();
        let engine = tokio::task::spawn_blocking(move || Engine::load_with_counters(config, counters))
            .await
            .map_err(|err| EngineError::Load(format!("load task failed: {err}")))??;
        let load = started.elapsed();
        let epoch = next_epoch();
        let reaper = Some(tokio::spawn(reap(
            Arc::downgrade(&self.inner),
            engine.watch_idle(),
            self.inner.keep_alive.subscribe(),
            epoch,
        )));
        let mut loaded = self.lock();
        let result = f(&engine);
        *loaded = Some(Loaded { engine, epoch, reaper });
        result.map(|t| (t, load))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        self.inner.lock()
    }

    /// The state, with a crashed engine already forgotten so the next use reloads.
    fn live(&self) -> MutexGuard<'_, Option<Loaded>> {
        let mut loaded = self.lock();
        if loaded.as_ref().is_some_and(|l| l.engine.is_closed()) {
            tracing::warn!(model = %self.inner.config.model_path.display(), "engine closed; reloading");
            loaded.take();
        }
        loaded
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Option<Loaded>> {
        // A panic while holding this lock cannot leave `Option<Loaded>` half-updated.
        self.loaded.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops the engine of load `epoch` if it is still current and idle.
    fn unload_if_idle(&self, epoch: u64) -> bool {
        let mut loaded = self.lock();
        let idle = loaded.as_ref().is_some_and(|l| l.epoch == epoch && l.engine.is_idle());
        if idle {
            tracing::info!(model = %self.config.model_path.display(), "unloading idle model");
            // Detach the reaper's own handle so dropping `Loaded` does not abort the
            // task that is running this very code.
            if let Some(mut old) = loaded.take() {
                old.reaper = None;
            }
        }
        idle
    }
}

fn next_epoch() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static EPOCH: AtomicU64 = AtomicU64::new(1);
    EPOCH.fetch_add(1, Ordering::Relaxed)
}

/// Unloads the engine of load `epoch` once it has been idle for the keep-alive.
async fn reap(
    inner: Weak<Inner>,
    mut load: tokio::sync::watch::Receiver<crate::stats::Load>,
    mut keep_alive: tokio::sync::watch::Receiver<KeepAlive>,
    epoch: u64,
) {
    loop {
        if load.wait_for(|load| load.is_idle()).await.is_err() {
            return;
        }
        let keep = *keep_alive.borrow_and_update();
        {
            let Some(inner) = inner.upgrade() else { return };
            let mut since = inner.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            since.get_or_insert_with(Instant::now);
        }
        let expired = async {
            match keep {
                KeepAlive::Forever => std::future::pending().await,
                KeepAlive::For(d) => tokio::time::sleep(d).await,
            }
        };
        tokio::select! {
            () = expired => {
                let Some(inner) = inner.upgrade() else { return };
                if inner.unload_if_idle(epoch) {
                    return;
                }
            }
            changed = load.changed() => {
                if changed.is_err() {
                    return;
                }
                // Work came and maybe went: the idle period starts over.
                let idle = load.borrow().is_idle();
                let Some(inner) = inner.upgrade() else { return };
                *inner.idle_since.lock().unwrap_or_else(std::sync::PoisonError::into_inner) =
                    idle.then(Instant::now);
            }
            changed = keep_alive.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
