//! UI generations that outlive the browser's connection: each is a task of the
//! gateway keyed by (owner, user message id, model) — one message may be answered by
//! several models side by side — writing its text into a buffer that any
//! number of readers attach to — from the start or from an offset — and that stays a
//! short while after the answer ended, for a reader coming back late.
//!
//! Bounded: at most [`Limits::per_owner`] running generations per owner, at most
//! [`Limits::max_text`] bytes of text each (a longer answer is stopped with an error),
//! finished ones forgotten [`Limits::keep_finished`] after they end (checked whenever
//! the table is used: no timer) and, beyond twice the running cap, oldest first.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use tokio::{sync::watch, time::Instant};
use tokio_util::sync::CancellationToken;

/// How an answer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The model finished (`stop`, `length`, …).
    Done {
        /// Why.
        finish_reason: String,
    },
    /// Someone pressed stop (or the gateway shut down).
    Stopped,
    /// The gateway or the backend failed; `message` is what the client is told.
    Failed {
        /// The client-facing error.
        message: String,
        /// Its HTTP status.
        status: u16,
    },
}

/// What a generation has produced so far.
#[derive(Debug, Default)]
pub struct Progress {
    /// The answer's text so far.
    pub text: String,
    /// Set once it ended, with the stored answer's id (`None` if storing failed).
    pub end: Option<(End, Option<String>)>,
}

/// One UI generation.
pub struct Run {
    /// The conversation it answers in.
    pub conversation_id: String,
    /// The user message it answers.
    pub message_id: String,
    /// The model asked for.
    pub model: String,
    started: Instant,
    progress: watch::Sender<Progress>,
    stop: CancellationToken,
    ended_at: Mutex<Option<Instant>>,
    max_text: usize,
}

impl Run {
    /// Appends generated text; false (and nothing appended) once the buffer is full.
    pub fn push(&self, text: &str) -> bool {
        let mut fits = true;
        self.progress.send_if_modified(|p| {
            fits = p.text.len() + text.len() <= self.max_text;
            if fits {
                p.text.push_str(text);
            }
            fits && !text.is_empty()
        });
        fits
    }

    /// Marks the generation ended, with the stored answer's id.
    pub fn finish(&self, end: End, answer_id: Option<String>) {
        *lock(&self.ended_at) = Some(Instant::now());
        self.progress.send_modify(|p| p.end = Some((end, answer_id)));
    }

    /// Watches the progress (text and end).
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Asks the generation to stop (it drops its upstream request).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Resolves when someone asked the generation to stop.
    pub fn stopped(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.stop.cancelled()
    }

    /// True until the generation ended.
    pub fn running(&self) -> bool {
        lock(&self.ended_at).is_none()
    }

    fn ended_before(&self, t: Instant) -> bool {
        lock(&self.ended_at).is_some_and(|e| e <= t)
    }

    fn ended_at(&self) -> Option<Instant> {
        *lock(&self.ended_at)
    }
}

/// The bounds of the table.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Running generations per owner.
    pub per_owner: usize,
    /// Bytes of text per generation.
    pub max_text: usize,
    /// How long a finished generation can still be attached to.
    pub keep_finished: Duration,
}

/// Why a generation cannot start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// The owner runs [`Limits::per_owner`] already.
    #[error("{0} answers are being generated for you already: wait for one to end or stop one")]
    TooMany(usize),
    /// An answer to this message by this model is being generated.
    #[error("this model is answering this message already")]
    Busy,
}

type Key = (String, String, String);

/// Every UI generation of this gateway, by (owner, user message id, model).
pub struct Runs {
    table: Mutex<HashMap<Key, Arc<Run>>>,
    limits: Limits,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing panics while holding these locks; a poisoned one is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Runs {
    /// A table with these bounds.
    pub fn new(limits: Limits) -> Runs {
        Runs { table: Mutex::default(), limits }
    }

    /// Registers a new generation answering `message_id` for `owner`.
    pub fn begin(
        &self,
        owner: &str,
        conversation_id: &str,
        message_id: &str,
        model: &str,
    ) -> Result<Arc<Run>, Refused> {
        let mut table = lock(&self.table);
        self.prune(&mut table);
        let key = (owner.to_owned(), message_id.to_owned(), model.to_owned());
        if table.get(&key).is_some_and(|r| r.running()) {
            return Err(Refused::Busy);
        }
        let mine: Vec<(Key, Option<Instant>)> = table
            .iter()
            .filter(|((o, _, _), _)| o == owner)
            .map(|(k, r)| (k.clone(), r.ended_at()))
            .collect();
        if mine.iter().filter(|(_, ended)| ended.is_none()).count() >= self.limits.per_owner {
            return Err(Refused::TooMany(self.limits.per_owner));
        }
        // Finished ones beyond twice the cap go, oldest first.
        let mut finished: Vec<_> = mine.into_iter().filter_map(|(k, e)| e.map(|e| (e, k))).collect();
        finished.sort();
        let excess = (table.iter().filter(|((o, _, _), _)| o == owner).count() + 1)
            .saturating_sub(2 * self.limits.per_owner);
        for (_, k) in finished.into_iter().take(excess) {
            table.remove(&k);
        }
        let run = Arc::new(Run {
            conversation_id: conversation_id.to_owned(),
            message_id: message_id.to_owned(),
            model: model.to_owned(),
            started: Instant::now(),
            progress: watch::Sender::new(Progress::default()),
            stop: CancellationToken::new(),
            ended_at: Mutex::new(None),
            max_text: self.limits.max_text,
        });
        table.insert(key, run.clone());
        Ok(run)
    }

    /// `owner`'s generation answering `message_id` (running, or finished recently) by
    /// `model`, or without a model the one started last.
    pub fn get(&self, owner: &str, message_id: &str, model: Option<&str>) -> Option<Arc<Run>> {
        let mut table = lock(&self.table);
        self.prune(&mut table);
        table
            .iter()
            .filter(|((o, m, by), _)| o == owner && m == message_id && model.is_none_or(|want| want == by))
            .max_by_key(|(_, r)| r.started)
            .map(|(_, r)| r.clone())
    }

    /// `owner`'s generations in `conversation_id`.
    pub fn of_conversation(&self, owner: &str, conversation_id: &str) -> Vec<Arc<Run>> {
        let mut table = lock(&self.table);
        self.prune(&mut table);
        table
            .iter()
            .filter(|((o, _, _), r)| o == owner && r.conversation_id == conversation_id)
            .map(|(_, r)| r.clone())
            .collect()
    }

    /// False when `owner` may not start another generation now.
    pub fn has_room(&self, owner: &str) -> bool {
        let mut table = lock(&self.table);
        self.prune(&mut table);
        table.iter().filter(|((o, _, _), r)| o == owner && r.running()).count() < self.limits.per_owner
    }

    fn prune(&self, table: &mut HashMap<Key, Arc<Run>>) {
        let Some(cutoff) = Instant::now().checked_sub(self.limits.keep_finished) else { return };
        table.retain(|_, r| !r.ended_before(cutoff));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs() -> Runs {
        Runs::new(Limits { per_owner: 2, max_text: 8, keep_finished: Duration::from_secs(60) })
    }

    #[tokio::test(start_paused = true)]
    async fn finished_runs_are_kept_a_while_then_forgotten() {
        let runs = runs();
        let run = runs.begin("ann", "c", "m1", "model").unwrap();
        assert!(run.push("hello"));
        run.finish(End::Done { finish_reason: "stop".into() }, Some("a1".into()));
        tokio::time::advance(Duration::from_secs(59)).await;
        let again = runs.get("ann", "m1", None).expect("still there for a late reader");
        assert_eq!(again.subscribe().borrow().text, "hello");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(runs.get("ann", "m1", None).is_none(), "forgotten after keep_finished");
    }

    #[tokio::test(start_paused = true)]
    async fn owners_are_capped_and_see_only_their_own() {
        let runs = runs();
        let _a = runs.begin("ann", "c", "m1", "x").unwrap();
        assert_eq!(runs.begin("ann", "c", "m1", "x").err(), Some(Refused::Busy));
        // Another model may answer the same message at the same time (side by side).
        tokio::time::advance(Duration::from_millis(1)).await;
        let _y = runs.begin("ann", "c", "m1", "y").unwrap();
        assert_eq!(runs.get("ann", "m1", Some("x")).map(|r| r.model.clone()), Some("x".into()));
        assert_eq!(runs.get("ann", "m1", None).map(|r| r.model.clone()), Some("y".into()), "the last one");
        _y.finish(End::Stopped, None);
        let b = runs.begin("ann", "c", "m2", "x").unwrap();
        assert_eq!(runs.begin("ann", "c", "m3", "x").err(), Some(Refused::TooMany(2)));
        assert!(runs.begin("bob", "c", "m3", "x").is_ok(), "another owner has a cap of their own");
        assert!(runs.get("bob", "m1", None).is_none(), "another owner's ids are unknown");
        assert_eq!(runs.of_conversation("ann", "c").len(), 3, "two running, one finished");
        b.finish(End::Stopped, None);
        assert!(runs.begin("ann", "c", "m3", "x").is_ok(), "a finished one frees its place");
    }

    #[tokio::test(start_paused = true)]
    async fn the_text_buffer_is_capped() {
        let runs = runs();
        let run = runs.begin("ann", "c", "m1", "x").unwrap();
        assert!(run.push("12345"));
        assert!(!run.push("6789"), "9 bytes do not fit in 8");
        assert_eq!(run.subscribe().borrow().text, "12345");
    }

    #[tokio::test(start_paused = true)]
    async fn finished_runs_beyond_twice_the_cap_go_oldest_first() {
        let runs = runs();
        for i in 0..6 {
            let r = runs.begin("ann", "c", &format!("m{i}"), "x").unwrap();
            r.finish(End::Stopped, None);
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(runs.of_conversation("ann", "c").len(), 4);
        assert!(runs.get("ann", "m0", None).is_none() && runs.get("ann", "m5", None).is_some());
    }
}
