//! Admission control per model: at most `max_concurrency` generations run at once;
//! up to `max_queue` more wait, higher priority classes first and first come first
//! served within a class, for at most `max_queue_wait`. A full queue answers 429, a
//! wait that runs out 503, both with `Retry-After`.
//!
//! A finished generation hands its slot straight to the next waiter (nobody can slip
//! in between), and a waiter that gives up (deadline, or its client left) removes
//! itself, or passes on a slot it was handed in the meantime.
//!
//! The priority class of a request comes from its API key, through the request's
//! [`RequestContext`](crate::context::RequestContext).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::metrics::{gauge::Gauge, histogram::Histogram};
use tokio::{sync::oneshot, time::Instant};

use crate::config::ModelPolicy;

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// The queue is full.
    QueueFull,
    /// The request waited `max_queue_wait` without a slot.
    Timeout,
}

impl Rejection {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::QueueFull => "queue_full",
            Rejection::Timeout => "queue_timeout",
        }
    }
}

/// The admission gate of one model.
#[derive(Debug)]
pub struct Gate {
    max_concurrency: usize,
    max_queue: usize,
    /// Longest wait in the queue.
    pub max_wait: Duration,
    depth: Gauge,
    wait: Histogram,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    running: usize,
    queued: usize,
    next_id: u64,
    /// One queue per class, highest priority first.
    queues: Vec<VecDeque<(u64, oneshot::Sender<()>)>>,
}

/// A running slot; dropping it lets the next waiter in.
#[derive(Debug)]
pub struct Permit {
    gate: Arc<Gate>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut g = self.gate.lock();
        self.gate.release(&mut g);
    }
}

impl Gate {
    /// A gate for `policy` with `classes` priority classes, reporting its queue depth
    /// and waits into `depth` and `wait`. `None` when the model has no cap.
    pub fn new(policy: &ModelPolicy, classes: usize, depth: Gauge, wait: Histogram) -> Option<Arc<Gate>> {
        let max_concurrency = usize::try_from(policy.max_concurrency?).unwrap_or(usize::MAX);
        Some(Arc::new(Gate {
            max_concurrency,
            max_queue: usize::try_from(policy.max_queue).unwrap_or(usize::MAX),
            max_wait: policy.max_queue_wait,
            depth,
            wait,
            inner: Mutex::new(Inner {
                running: 0,
                queued: 0,
                next_id: 0,
                queues: (0..classes.max(1)).map(|_| VecDeque::new()).collect(),
            }),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Requests running and waiting.
    pub fn load(&self) -> (usize, usize) {
        let g = self.lock();
        (g.running, g.queued)
    }

    /// A slot at once, if one is free and nobody waits.
    pub fn try_admit(self: &Arc<Self>) -> Option<Permit> {
        let mut g = self.lock();
        (g.queued == 0 && g.running < self.max_concurrency).then(|| {
            g.running += 1;
            Permit { gate: self.clone() }
        })
    }

    /// Waits for a slot in priority `class` (clamped to the lowest class).
    pub async fn admit(self: &Arc<Self>, class: usize) -> Result<Permit, Rejection> {
        let (id, class, rx) = {
            let mut g = self.lock();
            if g.queued == 0 && g.running < self.max_concurrency {
                g.running += 1;
                return Ok(Permit { gate: self.clone() });
            }
            if g.queued >= self.max_queue {
                return Err(Rejection::QueueFull);
            }
            let class = class.min(g.queues.len() - 1);
            let (tx, rx) = oneshot::channel();
            let id = g.next_id;
            g.next_id += 1;
            g.queues[class].push_back((id, tx));
            g.queued += 1;
            self.depth.set(g.queued as i64);
            (id, class, rx)
        };
        let since = Instant::now();
        let mut waiter = Waiter { gate: self.clone(), id, class, rx: Some(rx) };
        let got = tokio::time::timeout(self.max_wait, waiter.rx.as_mut().expect("set above")).await;
        self.wait.observe(since.elapsed().as_secs_f64());
        match got {
            Ok(Ok(())) => {
                waiter.rx = None;
                Ok(Permit { gate: self.clone() })
            }
            // The gate never drops a sender without sending: only a timeout is left.
            _ => match waiter.cancel() {
                true => Ok(Permit { gate: self.clone() }),
                false => Err(Rejection::Timeout),
            },
        }
    }

    /// A slot frees up: hand it to the first live waiter of the highest class, or
    /// count it free.
    fn release(&self, g: &mut Inner) {
        for class in 0..g.queues.len() {
            while let Some((_, tx)) = g.queues[class].pop_front() {
                g.queued -= 1;
                self.depth.set(g.queued as i64);
                if tx.send(()).is_ok() {
                    return;
                }
            }
        }
        g.running -= 1;
    }
}

/// A place in the queue; leaving it (drop or [`Waiter::cancel`]) cleans up.
struct Waiter {
    gate: Arc<Gate>,
    id: u64,
    class: usize,
    rx: Option<oneshot::Receiver<()>>,
}

impl Waiter {
    /// Leaves the queue; true when a slot was handed over meanwhile (it is kept).
    fn cancel(&mut self) -> bool {
        let Some(mut rx) = self.rx.take() else { return false };
        let mut g = self.gate.lock();
        let queue = &mut g.queues[self.class];
        if let Some(pos) = queue.iter().position(|(id, _)| *id == self.id) {
            queue.remove(pos);
            g.queued -= 1;
            self.gate.depth.set(g.queued as i64);
            return false;
        }
        // Not queued any more: release() popped us and sent (under this lock) a slot.
        rx.try_recv().is_ok()
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        if self.cancel() {
            // Handed a slot nobody will use: pass it on.
            let mut g = self.gate.lock();
            self.gate.release(&mut g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(cap: u32, queue: u32) -> Arc<Gate> {
        let policy = ModelPolicy {
            name: "m".into(),
            max_concurrency: Some(cap),
            max_queue: queue,
            max_queue_wait: Duration::from_secs(5),
            fallbacks: vec![],
            fallback_on: vec![],
            price: None,
        };
        Gate::new(&policy, 2, Gauge::default(), Histogram::new([1.0])).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn cap_queue_full_and_wait_deadline() {
        let g = gate(1, 1);
        let first = g.admit(0).await.unwrap();
        let g2 = g.clone();
        let queued = tokio::spawn(async move { g2.admit(0).await.map(|_| ()) });
        tokio::task::yield_now().await;
        assert_eq!(g.load(), (1, 1));
        assert_eq!(g.admit(0).await.unwrap_err(), Rejection::QueueFull);
        // Nobody releases: the queued request gives up after max_wait, not before.
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(!queued.is_finished());
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(queued.await.unwrap(), Err(Rejection::Timeout));
        assert_eq!(g.load(), (1, 0), "the waiter left the queue");
        drop(first);
        assert_eq!(g.load(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn higher_classes_go_first_fifo_within_a_class() {
        let g = gate(1, 10);
        let running = g.admit(0).await.unwrap();
        let (tx, mut order) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = Vec::new();
        for (name, class) in [("batch-1", 1), ("batch-2", 1), ("interactive-1", 0), ("interactive-2", 0)] {
            let (g, tx) = (g.clone(), tx.clone());
            tasks.push(tokio::spawn(async move {
                let permit = g.admit(class).await.unwrap();
                tx.send(name).unwrap();
                drop(permit);
            }));
            // Queue them in this order.
            tokio::task::yield_now().await;
        }
        assert_eq!(g.load(), (1, 4));
        drop(running);
        for t in tasks {
            t.await.unwrap();
        }
        let got: Vec<_> = std::iter::from_fn(|| order.try_recv().ok()).collect();
        assert_eq!(got, ["interactive-1", "interactive-2", "batch-1", "batch-2"]);
        assert_eq!(g.load(), (0, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_leaves_frees_its_place_and_any_slot_it_got() {
        let g = gate(1, 10);
        let running = g.admit(0).await.unwrap();
        let g2 = g.clone();
        let leaver = tokio::spawn(async move { g2.admit(0).await.map(|_| ()) });
        tokio::task::yield_now().await;
        leaver.abort();
        let _ = leaver.await;
        assert_eq!(g.load(), (1, 0));
        // A slot handed to a waiter whose future is then dropped goes to the next one.
        let mut w = Box::pin(g.admit(0));
        assert!(futures_util::poll!(w.as_mut()).is_pending());
        let g3 = g.clone();
        let next = tokio::spawn(async move { g3.admit(0).await.map(|_| ()) });
        tokio::task::yield_now().await;
        drop(running);
        drop(w);
        assert_eq!(tokio::time::timeout(Duration::from_secs(1), next).await.unwrap().unwrap(), Ok(()));
        assert_eq!(g.load(), (0, 0));
    }
}
