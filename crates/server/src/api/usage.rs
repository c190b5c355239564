//! `GET /v1/usage`: the caller's usage over a time range, grouped by day, model, key
//! (or, for admins, user), as JSON or CSV; days split by model, key or user
//! (`split=`, the series of a stacked chart); or the raw records (`group_by=none` or
//! `records=true`, at most [`MAX_RECORDS`]).
//!
//! Whose records: the caller's own (as [`Owner::records`] says); an admin may ask for
//! one user's (`user=ID`) or everyone's (`all=true`). [`scope`] decides, and is the
//! only place that does.

pub(crate) mod calendar;
mod csv;

use axum::{
    Json,
    extract::{Query, State, rejection::QueryRejection},
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};
use serde::Deserialize;
use serde_json::json;
use sluice_store::{UsageFilter, UsageGroup};

use super::{
    Ctx,
    conversations::query,
    data_error::DataError,
    owner::{OwnRecords, Owner, signed_in},
};
use crate::state::AppState;

/// The most raw records one export holds.
pub const MAX_RECORDS: u32 = 100_000;
/// The range when `from` is not given: this long before `to`.
const DEFAULT_SPAN_MS: i64 = 30 * 86_400_000;

/// `GET /v1/usage` query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start, inclusive: RFC 3339 or `YYYY-MM-DD` (UTC). Default: 30 days before `to`.
    from: Option<String>,
    /// End, exclusive; a bare date includes that whole day. Default: now.
    to: Option<String>,
    /// `day` (default), `model`, `key`, `user` (admins) or `none` (raw records).
    group_by: Option<String>,
    /// `json` (default) or `csv`.
    format: Option<String>,
    /// Admins: this user's records.
    user: Option<String>,
    /// Admins: everyone's records.
    #[serde(default)]
    all: bool,
    /// Raw records instead of groups (like `group_by=none`).
    #[serde(default)]
    records: bool,
    /// With days: split each day by `model`, `key` or `user` (admins).
    split: Option<String>,
}

/// Whose records a report covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// The caller's own.
    Own,
    /// One user's (records with this `user_id`).
    User(String),
    /// Everyone's.
    All,
}

/// Whose records `owner` may see with these parameters: its own by default; another
/// user's, everyone's, or a per-user breakdown only for an admin (403 otherwise).
pub fn scope(owner: &Owner, user: Option<&str>, all: bool, by_user: bool) -> Result<Scope, DataError> {
    let own_user = owner.records == OwnRecords::ByUserId && user == Some(owner.id.as_str());
    let others = all || by_user || (user.is_some() && !own_user);
    if others && !owner.admin {
        return Err(DataError::Forbidden("only admins may see other users' usage".into()));
    }
    match (user, all) {
        (Some(_), true) => Err(DataError::bad("give either user or all=true, not both", "user")),
        _ if own_user => Ok(Scope::Own),
        (Some(u), false) => Ok(Scope::User(u.to_owned())),
        (None, true) => Ok(Scope::All),
        (None, false) => Ok(Scope::Own),
    }
}

/// The store filter of `scope` for `owner` over `[from, to)`.
fn filter<'a>(owner: &'a Owner, scope: &'a Scope, from: i64, to: i64) -> UsageFilter<'a> {
    let (user_id, key_id) = match scope {
        Scope::Own => match owner.records {
            OwnRecords::ByUserId => (Some(owner.id.as_str()), None),
            OwnRecords::ByKeyId => (None, Some(owner.id.as_str())),
            OwnRecords::Every => (None, None),
        },
        Scope::User(u) => (Some(u.as_str()), None),
        Scope::All => (None, None),
    };
    UsageFilter { user_id, key_id, from_ms: Some(from), to_ms: Some(to) }
}

/// What the report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Grouping {
    By(UsageGroup),
    Records,
}

impl Grouping {
    fn parse(group_by: Option<&str>, records: bool) -> Result<Grouping, DataError> {
        Ok(match group_by.unwrap_or(if records { "none" } else { "day" }) {
            _ if records => Grouping::Records,
            "day" => Grouping::By(UsageGroup::Day),
            "model" => Grouping::By(UsageGroup::Model),
            "key" => Grouping::By(UsageGroup::Key),
            "user" => Grouping::By(UsageGroup::User),
            "none" => Grouping::Records,
            other => {
                return Err(DataError::bad(
                    format!("group_by: '{other}' is not day, model, key, user or none"),
                    "group_by",
                ));
            }
        })
    }

    /// The `split` of a day series: by model, key or user; only with days.
    fn split(self, split: Option<&str>) -> Result<Option<UsageGroup>, DataError> {
        let Some(split) = split else { return Ok(None) };
        if self != Grouping::By(UsageGroup::Day) {
            return Err(DataError::bad("split: only days (group_by=day) are split", "split"));
        }
        Ok(Some(match split {
            "model" => UsageGroup::Model,
            "key" => UsageGroup::Key,
            "user" => UsageGroup::User,
            other => {
                return Err(DataError::bad(format!("split: '{other}' is not model, key or user"), "split"));
            }
        }))
    }

    fn name(self) -> &'static str {
        match self {
            Grouping::By(UsageGroup::Day) => "day",
            Grouping::By(UsageGroup::Model) => "model",
            Grouping::By(UsageGroup::Key) => "key",
            Grouping::By(UsageGroup::User) => "user",
            Grouping::Records => "none",
        }
    }
}

/// `[from, to)` in unix ms, from the query, defaults filled in.
fn range(from: Option<&str>, to: Option<&str>, now_ms: i64) -> Result<(i64, i64), DataError> {
    let parse = |s: &str, end, field| {
        calendar::parse_time(s, end).ok_or_else(|| {
            DataError::bad(format!("{field}: '{s}' is neither RFC 3339 nor YYYY-MM-DD"), field)
        })
    };
    let to = to.map(|s| parse(s, true, "to")).transpose()?.unwrap_or(now_ms);
    let from = from.map(|s| parse(s, false, "from")).transpose()?.unwrap_or(to - DEFAULT_SPAN_MS);
    if from >= to {
        return Err(DataError::bad("from must be before to", "from"));
    }
    Ok((from, to))
}

/// `GET /v1/usage?from=&to=&group_by=day|model|key|user|none&format=json|csv&user=&all=`.
pub async fn report(
    State(state): State<AppState>,
    Ctx(ctx): Ctx,
    q: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, DataError> {
    let owner = signed_in(&ctx)?;
    let q = query(q)?;
    let grouping = Grouping::parse(q.group_by.as_deref(), q.records)?;
    let split = grouping.split(q.split.as_deref())?;
    let csv = match q.format.as_deref().unwrap_or("json") {
        "json" => false,
        "csv" => true,
        other => return Err(DataError::bad(format!("format: '{other}' is not json or csv"), "format")),
    };
    let by_user = grouping == Grouping::By(UsageGroup::User) || split == Some(UsageGroup::User);
    let scope = scope(&owner, q.user.as_deref(), q.all, by_user)?;
    let (from, to) = range(q.from.as_deref(), q.to.as_deref(), calendar::now_ms())?;
    let filter = filter(&owner, &scope, from, to);
    let (from_s, to_s) = (calendar::rfc3339(from), calendar::rfc3339(to));
    if let Some(split) = split {
        let rows = state.store.usage_series(&filter, split).await?;
        let split_name = match split {
            UsageGroup::Model => "model",
            UsageGroup::Key => "key",
            _ => "user",
        };
        if csv {
            return Ok(csv_response(csv::series(split_name, &rows), false));
        }
        let body = json!({ "object": "usage.series", "from": from_s, "to": to_s, "group_by": "day", "split": split_name, "data": rows });
        return Ok(Json(body).into_response());
    }
    match grouping {
        Grouping::By(group) => {
            let rows = state.store.usage_summary(&filter, group).await?;
            if csv {
                return Ok(csv_response(csv::groups(grouping.name(), &rows), false));
            }
            let body = json!({ "object": "usage", "from": from_s, "to": to_s, "group_by": grouping.name(), "data": rows });
            Ok(Json(body).into_response())
        }
        Grouping::Records => {
            let mut records = state.store.usage_records(&filter, MAX_RECORDS + 1).await?;
            let truncated = records.len() > MAX_RECORDS as usize;
            records.truncate(MAX_RECORDS as usize);
            if csv {
                return Ok(csv_response(csv::records(&records, calendar::rfc3339), truncated));
            }
            let body = json!({ "object": "usage.records", "from": from_s, "to": to_s, "truncated": truncated, "data": records });
            Ok(Json(body).into_response())
        }
    }
}

/// A CSV download; `x-sluice-truncated: true` when records were left out.
fn csv_response(text: String, truncated: bool) -> Response {
    let mut resp = text.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"usage.csv\""));
    if truncated {
        h.insert("x-sluice-truncated", HeaderValue::from_static("true"));
    }
    resp
}

#[cfg(test)]
mod tests;
