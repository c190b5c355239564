//! The gateway SIGTERMed with 100 streams in flight.

use std::time::{Duration, Instant};

use sluice_mock::MockConfig;

use super::harness::*;
use crate::util::*;

/// The grace period of the test's gateway.
const GRACE: Duration = Duration::from_secs(2);

/// 100 streams, half in each dialect; half of them end within the grace period (40
/// tokens 25 ms apart, started before the signal), half outlast it (1,000 tokens).
/// After SIGTERM every client gets a complete answer or its dialect's error event,
/// none a silent cut, and the process exits within grace + 1 s of the signal. Beside
/// them, requests that outlast the grace period in other shapes: whole answers (a 503
/// in the dialect's error shape) and streams whose first token never comes (headers
/// sent early, then the error event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigtermed_gateway_answers_or_ends_every_stream_with_an_error_then_exits_in_time() {
    let upstream = mock(MockConfig::default()).await;
    let toml = format!(
        "[server]\nshutdown_grace = \"{}s\"\nearly_headers_after = \"200ms\"\n[store]\nurl = \"sqlite::memory:\"\n{}",
        GRACE.as_secs(),
        backend_toml("mock", "openai", &upstream, "")
    );
    let mut gw = ServeProc::start(&toml).await;
    let opened = (0..100).map(|i| {
        let dialect = if i % 2 == 0 { Dialect::OpenAi } else { Dialect::Ollama };
        let long = i % 4 < 2;
        let content = if long {
            format!("long {i} [mock tokens=1000 delay_ms=25]")
        } else {
            format!("short {i} [mock tokens=40 delay_ms=25]")
        };
        let base = gw.base.clone();
        async move {
            let mut s = Stream::open(&base, dialect, &content, None).await;
            s.first().await;
            (long, s)
        }
    });
    // Every stream has its first token before the signal.
    let streams = futures_util::future::join_all(opened).await;
    let whole: Vec<_> = [Dialect::OpenAi, Dialect::Ollama]
        .into_iter()
        .map(|dialect| {
            let mut body = dialect.body("whole [mock tokens=1000 delay_ms=25]");
            body["stream"] = false.into();
            tokio::spawn(client().post(gw.url(dialect.path())).json(&body).send())
        })
        .collect();
    let mut silent = Vec::new();
    for dialect in [Dialect::OpenAi, Dialect::Ollama] {
        silent.push(Stream::open(&gw.base, dialect, "silent [mock first_ms=60000]", None).await);
    }
    until("every request reached the upstream", START, || async {
        upstream.stats().snapshot().requests >= 104
    })
    .await;

    gw.proc.signal("TERM");
    let signalled = Instant::now();
    let outcomes = streams.into_iter().map(|(long, s)| async move { (long, s.outcome(GRACE + SOON).await) });
    let exit = async {
        let status = gw.proc.exit_within(GRACE + SOON).await;
        (status, signalled.elapsed())
    };
    let (outcomes, (status, took)) = tokio::join!(futures_util::future::join_all(outcomes), exit);
    assert!(status.success(), "a clean exit: {status}");
    assert!(took <= GRACE + Duration::from_secs(1), "exited {took:?} after SIGTERM (grace {GRACE:?})");

    for resp in whole {
        let resp = resp.await.unwrap().expect("an answer, not a dropped connection");
        assert_eq!(resp.status(), 503);
        let body: serde_json::Value = resp.json().await.unwrap();
        let msg = body["error"]["message"].as_str().or(body["error"].as_str()).unwrap_or_default();
        assert!(msg.contains("shutting down"), "{body}");
    }
    for s in silent {
        let outcome = s.outcome(SOON).await;
        assert!(matches!(&outcome, Outcome::Error(m) if m.contains("shutting down")), "{outcome:?}");
    }
    for (long, outcome) in outcomes {
        match (long, outcome) {
            // 40 tokens 25 ms apart: one second, well within the grace period.
            (false, Outcome::Complete) => {}
            (true, Outcome::Error(msg)) => assert!(msg.contains("shutting down"), "{msg}"),
            (long, other) => panic!("long: {long}, ended as {other:?}"),
        }
    }
}
