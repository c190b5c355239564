//! The usage writer's life in the server: started by `serve::run` when
//! `[usage] enabled`, handed to request handlers as a [`UsageSink`] (the state's
//! `usage`), drained at graceful shutdown, and its counters shown in `/metrics`.

use std::{
    fmt::Write as _,
    sync::{Mutex, OnceLock},
    time::Duration,
};

use sluice_store::{UsageSink, UsageStats, UsageWriter};

/// The writer of one gateway: the sink handlers record into, and the writer task to
/// drain at shutdown.
#[derive(Debug, Default)]
pub struct UsageLife {
    sink: OnceLock<UsageSink>,
    writer: Mutex<Option<UsageWriter>>,
}

impl UsageLife {
    /// The sink, once the writer has started.
    pub fn sink(&self) -> Option<&UsageSink> {
        self.sink.get()
    }

    /// Keeps a started writer; false (and the writer is dropped, which stops it) if
    /// one was already kept.
    pub fn keep(&self, sink: UsageSink, writer: UsageWriter) -> bool {
        if self.sink.set(sink).is_err() {
            return false;
        }
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = Some(writer);
        true
    }

    /// Stops accepting records and writes the queued ones, for up to `grace`; returns
    /// how many records the writer wrote in all. If the database does not take them in
    /// time, says how many are lost and moves on.
    pub async fn drain(&self, grace: Duration) -> Option<u64> {
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        let stats = writer.stats().clone();
        match tokio::time::timeout(grace, writer.shutdown()).await {
            Ok(written) => {
                tracing::info!(written, dropped = stats.dropped(), "usage writer drained");
                Some(written)
            }
            Err(_) => {
                tracing::error!(
                    lost = stats.pending(),
                    grace = ?grace,
                    "usage records not written: the store did not take them within the shutdown grace"
                );
                Some(stats.written())
            }
        }
    }
}

/// The writer's counters in the OpenMetrics text format, to append to `/metrics`
/// (before its `# EOF`): `sluice_usage_records_written_total`,
/// `sluice_usage_records_dropped_total`, `sluice_usage_records_pending`.
pub fn render_metrics(stats: &UsageStats, out: &mut String) {
    let lines = [
        ("usage_records_written", "counter", "Usage records written to the store", stats.written()),
        (
            "usage_records_dropped",
            "counter",
            "Usage records dropped (queue full or writer stopped)",
            stats.dropped(),
        ),
        ("usage_records_pending", "gauge", "Usage records waiting to be written", stats.pending()),
    ];
    for (name, kind, help, value) in lines {
        let suffix = if kind == "counter" { "_total" } else { "" };
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "# HELP sluice_{name} {help}.\n# TYPE sluice_{name} {kind}\nsluice_{name}{suffix} {value}\n"
        );
    }
}

/// `text` (a whole exposition ending in `# EOF`) with the usage counters added.
pub fn with_usage_metrics(text: String, stats: Option<&UsageStats>) -> String {
    let Some(stats) = stats else { return text };
    crate::exposition::append(text, |out| render_metrics(stats, out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_go_before_eof() {
        let text = with_usage_metrics("# HELP x y.\nx 1\n# EOF\n".into(), Some(&UsageStats::default()));
        assert!(text.ends_with("sluice_usage_records_pending 0\n# EOF\n"), "{text}");
        assert!(
            text.contains(
                "# TYPE sluice_usage_records_written counter\nsluice_usage_records_written_total 0\n"
            )
        );
        assert_eq!(with_usage_metrics("x\n# EOF\n".into(), None), "x\n# EOF\n");
    }
}
