//! State shared by every handler, and the intake every POST goes through: record the
//! request, count it, check the key (on `/v1`), parse the JSON.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, header};
use serde::Deserialize;
use serde_json::Value;

use crate::config::MockConfig;
use crate::error::{Dialect, MockError};
use crate::stats::{MockStats, RecordedRequest, Tracker};

/// Handler state: the config, the stats, and a counter for response ids.
#[derive(Debug, Clone)]
pub(crate) struct AppState(Arc<Shared>);

/// What [`AppState`] points to.
#[derive(Debug)]
pub(crate) struct Shared {
    /// The server's configuration.
    pub(crate) cfg: MockConfig,
    /// Counters and the last request.
    pub(crate) stats: Arc<MockStats>,
    next_id: AtomicU64,
    bearer: Option<String>,
}

impl AppState {
    /// State for a server with `cfg` reporting into `stats`.
    pub(crate) fn new(cfg: MockConfig, stats: Arc<MockStats>) -> AppState {
        let bearer = cfg.require_api_key.as_ref().map(|key| format!("Bearer {key}"));
        AppState(Arc::new(Shared { cfg, stats, next_id: AtomicU64::new(1), bearer }))
    }

    /// The server's configuration.
    pub(crate) fn cfg(&self) -> &MockConfig {
        &self.0.cfg
    }

    /// A fresh id for a response object (`chatcmpl-mock-N`), unique per server.
    pub(crate) fn next_id(&self) -> u64 {
        self.0.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Intake of a generation request: counts it and hands back its tracker with the body.
    pub(crate) fn generation(
        &self,
        dialect: Dialect,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(Value, Tracker), MockError> {
        let tracker = Tracker::receive(Arc::clone(&self.0.stats));
        // On error the tracker is dropped unstarted: in flight no more, not cancelled.
        let body = self.intake(dialect, path, headers, body)?;
        Ok((body, tracker))
    }

    /// Intake of any POST: record, authenticate (`/v1` only), parse.
    pub(crate) fn intake(
        &self,
        dialect: Dialect,
        path: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, MockError> {
        let parsed = serde_json::from_slice::<Value>(body);
        self.0.stats.record(RecordedRequest {
            path: path.to_owned(),
            headers: lowercase_headers(headers),
            body: parsed.as_ref().map_or(Value::Null, Value::clone),
        });
        if dialect == Dialect::OpenAi {
            self.authenticate(headers)?;
        }
        parsed.map_err(|e| MockError::BadRequest(e.to_string()))
    }

    /// Checks the bearer key if the server demands one.
    pub(crate) fn authenticate(&self, headers: &HeaderMap) -> Result<(), MockError> {
        let Some(expected) = &self.0.bearer else {
            return Ok(());
        };
        match headers.get(header::AUTHORIZATION) {
            Some(given) if given.as_bytes() == expected.as_bytes() => Ok(()),
            _ => Err(MockError::Unauthorized),
        }
    }

    /// Fails with 404 unless the mock serves `model`.
    pub(crate) fn check_model(&self, model: &str) -> Result<(), MockError> {
        if self.0.cfg.knows_model(model) { Ok(()) } else { Err(MockError::ModelNotFound(model.to_owned())) }
    }
}

/// Deserializes a route's typed body out of the already-parsed JSON.
pub(crate) fn typed<'a, T: Deserialize<'a>>(body: &'a Value) -> Result<T, MockError> {
    T::deserialize(body).map_err(|e| MockError::BadRequest(e.to_string()))
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn lowercase_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut out = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        // `HeaderName`s are already lowercase.
        let value = String::from_utf8_lossy(value.as_bytes());
        out.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    out
}
