//! The run: spreads the workers over `--threads` OS threads, each with its own
//! single-threaded runtime (so `run` behaves the same from any caller's runtime),
//! enforces the request and time caps, shows progress and merges the results.

use std::io::IsTerminal;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::LocalSet;

use crate::args::BenchArgs;
use crate::budget::Shared;
use crate::client::{ThreadCtx, worker};
use crate::report::{Report, StopReason};
use crate::request::Plan;
use crate::stats::Stats;

/// What one thread hands back.
struct ThreadOutcome {
    stats: Stats,
    aborted: u64,
    finished_at: Instant,
    hit_deadline: bool,
}

/// Runs the benchmark described by `args`, prints the tables (unless `--quiet`) and
/// writes the JSON report (if `--json`).
///
/// Works from any tokio runtime: the workers run on `--threads` threads of their own.
/// Ctrl-C stops the run early and still reports (tokio's Ctrl-C handler stays
/// installed afterwards, so call this at the end of a CLI's life).
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    let plan = Arc::new(Plan::new(&args).await?);
    let shared = Arc::new(Shared::new(args.warmup, args.requests));
    let started = Instant::now();
    let deadline = started + args.duration;
    let threads = args.threads.min(args.concurrency);

    let mut stops = Vec::new();
    let mut results = Vec::new();
    for thread in 0..threads {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (result_tx, result_rx) = oneshot::channel();
        let workers: Vec<Instant> = (thread..args.concurrency)
            .step_by(usize::try_from(threads).unwrap_or(1))
            .map(|k| started + args.ramp_up.mul_f64(k as f64 / args.concurrency as f64))
            .collect();
        let (plan, shared) = (plan.clone(), shared.clone());
        std::thread::Builder::new()
            .name(format!("sluice-bench-{thread}"))
            .spawn(move || {
                let _ = result_tx.send(drive_thread(plan, shared, workers, deadline, stop_rx));
            })
            .context("cannot spawn a bench thread")?;
        stops.push(stop_tx);
        results.push(result_rx);
    }

    let show_progress = !args.quiet && !args.no_progress && std::io::stdout().is_terminal();
    let bar = progress_bar(show_progress, args.requests);
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    let mut watching_signal = true;
    let mut interrupted = false;
    let mut gather = std::pin::pin!(async move {
        let mut outcomes = Vec::with_capacity(results.len());
        for result in results {
            outcomes.push(result.await.context("a bench thread died")??);
        }
        anyhow::Ok(outcomes)
    });
    let outcomes = loop {
        tokio::select! {
            outcomes = &mut gather => break outcomes?,
            _ = ticker.tick(), if show_progress => {
                let completed = shared.completed.load(Ordering::Relaxed);
                let rate = completed as f64 / started.elapsed().as_secs_f64().max(1e-3);
                let failed = shared.failed.load(Ordering::Relaxed);
                bar.set_position(completed);
                bar.set_message(format!("{rate:.0} req/s, {failed} failed"));
            }
            signal = &mut ctrl_c, if watching_signal => {
                watching_signal = false;
                if signal.is_ok() {
                    interrupted = true;
                    shared.stopped.store(true, Ordering::Relaxed);
                    for stop in stops.drain(..) {
                        let _ = stop.send(());
                    }
                }
            }
        }
    };
    bar.finish_and_clear();

    let mut stats = Stats::new();
    let mut aborted = 0;
    let mut finished_at = started;
    let mut hit_deadline = false;
    for outcome in &outcomes {
        stats.merge(&outcome.stats);
        aborted += outcome.aborted;
        finished_at = finished_at.max(outcome.finished_at);
        hit_deadline |= outcome.hit_deadline;
    }
    let stopped_by = if interrupted {
        StopReason::Interrupted
    } else if hit_deadline {
        StopReason::Duration
    } else {
        StopReason::Requests
    };
    let measure_start = shared.measure_start.get().copied().unwrap_or(started);
    let elapsed = finished_at.saturating_duration_since(measure_start);
    let report = Report::new(&args, &plan, &stats, aborted, elapsed, stopped_by);
    if !args.quiet {
        print!("{}", report.render());
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(report)
}

fn progress_bar(show: bool, requests: u64) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(requests), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// Body of one bench thread: a current-thread runtime running its share of the
/// workers until they finish, the deadline passes or `stop` fires.
fn drive_thread(
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    workers: Vec<Instant>,
    deadline: Instant,
    stop: oneshot::Receiver<()>,
) -> anyhow::Result<ThreadOutcome> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = LocalSet::new();
    let ctx = Rc::new(ThreadCtx { plan, shared, stats: Default::default(), in_flight: Default::default() });
    let hit_deadline = local.block_on(&runtime, async {
        let handles: Vec<_> = workers
            .into_iter()
            .map(|start_at| tokio::task::spawn_local(worker(ctx.clone(), start_at)))
            .collect();
        let all_done = async {
            for handle in handles {
                let _ = handle.await;
            }
        };
        tokio::select! {
            () = all_done => false,
            () = tokio::time::sleep_until(deadline.into()) => true,
            _ = stop => false,
        }
    });
    let finished_at = Instant::now();
    {
        // Dropping the tasks cancels the requests still in flight.
        let _guard = runtime.enter();
        drop(local);
    }
    Ok(ThreadOutcome { stats: ctx.stats.take(), aborted: ctx.in_flight.get(), finished_at, hit_deadline })
}
