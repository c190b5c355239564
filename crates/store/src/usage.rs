//! Usage: one [`UsageRecord`] per request (who, which model, tokens, timing, spend),
//! kept in `usage_records` and summarised for dashboards, CSV export, quotas and
//! retention.
//!
//! Records arrive through a [`UsageSink`] and are written in batches by a
//! [`UsageWriter`] (see [`writer`]); the queries here read them back.

pub mod writer;

use serde::{Deserialize, Serialize};
use sqlx::{Any, Row as _, any::AnyArguments, query::Query};

pub use writer::{UsageSink, UsageStats, UsageTarget, UsageWriter, UsageWriterConfig};

use crate::{Engine, Store, StoreError};

/// One request's usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageRecord {
    /// When the request finished, unix milliseconds.
    pub at: i64,
    /// The user, when the request was made by a signed-in user.
    pub user_id: Option<String>,
    /// The API key, when the request carried one.
    pub key_id: Option<String>,
    /// The model asked for.
    pub model: String,
    /// The backend that answered.
    pub backend: String,
    /// The API dialect (`openai`, `ollama`, …).
    pub dialect: String,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Answered from the cache.
    pub cached: bool,
    /// Time to first token, when there was one.
    pub ttft_ms: Option<u64>,
    /// Whole request duration.
    pub duration_ms: u64,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Cost in USD.
    pub spend: f64,
}

/// Which records a query covers; every condition given must hold.
#[derive(Debug, Clone, Copy, Default)]
pub struct UsageFilter<'a> {
    /// Only this user's records.
    pub user_id: Option<&'a str>,
    /// Only this key's records.
    pub key_id: Option<&'a str>,
    /// From this time on (unix ms, inclusive).
    pub from_ms: Option<i64>,
    /// Before this time (unix ms, exclusive).
    pub to_ms: Option<i64>,
}

/// How [`Store::usage_summary`] groups records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UsageGroup {
    /// By UTC day, `YYYY-MM-DD`.
    Day,
    /// By model.
    Model,
    /// By API key.
    Key,
    /// By user.
    User,
}

/// One group of a usage summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageRow {
    /// The day, model, key or user; `None` groups records with no key (or no user).
    pub group: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Requests answered from the cache.
    pub cached: u64,
    /// Cost in USD.
    pub spend: f64,
}

/// One day of one group in a usage series ([`Store::usage_series`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UsageSeriesRow {
    /// The UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// The model, key or user; `None` groups records with no key (or no user).
    pub group: Option<String>,
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Requests answered from the cache.
    pub cached: u64,
    /// Cost in USD.
    pub spend: f64,
}

/// The columns written, in bind order. (Read back with `cached` as an integer: the Any
/// driver cannot decode SQLite's BOOLEAN.)
const COLUMNS: &str = "at, user_id, key_id, model, backend, dialect, prompt_tokens, completion_tokens, \
                       cached, ttft_ms, duration_ms, status, spend";
const COLUMN_COUNT: usize = 13;
const MS_PER_DAY: i64 = 86_400_000;

/// Bind variables one statement may carry: SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`
/// (since 3.32; the bundled SQLite is newer) and Postgres' protocol limit.
fn max_binds(engine: Engine) -> usize {
    match engine {
        Engine::Sqlite => 32_766,
        Engine::Postgres => 65_535,
    }
}

/// `INSERT INTO usage_records … VALUES (…), (…)` for `rows` rows. SQLite gets anonymous
/// `?` placeholders: it looks named ones (`$7`) up in a linear list, which made a
/// 512-row batch (6,656 binds) cost ~170 ms to bind.
fn insert_sql(engine: Engine, rows: usize) -> String {
    let mut sql = format!("INSERT INTO usage_records ({COLUMNS}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for col in 0..COLUMN_COUNT {
            if col > 0 {
                sql.push_str(", ");
            }
            match engine {
                Engine::Sqlite => sql.push('?'),
                Engine::Postgres => sql.push_str(&format!("${}", row * COLUMN_COUNT + col + 1)),
            }
        }
        sql.push(')');
    }
    sql
}

/// The row counts of the statements that insert `n` rows: powers of two, largest first,
/// at most `max` rows each. A batch of any size thus uses at most a dozen distinct
/// statements, which stay prepared in the connection's statement cache instead of one
/// new statement (parsed and planned again) per batch size.
fn statement_rows(mut n: usize, max: usize) -> impl Iterator<Item = usize> {
    let cap = if max == 0 { 1 } else { 1 << max.ilog2() };
    std::iter::from_fn(move || {
        if n == 0 {
            return None;
        }
        let rows = if n >= cap { cap } else { 1 << n.ilog2() };
        n -= rows;
        Some(rows)
    })
}

/// [`insert_sql`] for `rows` rows (a power of two), built once per engine and size.
fn cached_insert_sql(engine: Engine, rows: usize) -> &'static str {
    use std::sync::OnceLock;
    static SQLITE: [OnceLock<String>; 16] = [const { OnceLock::new() }; 16];
    static POSTGRES: [OnceLock<String>; 16] = [const { OnceLock::new() }; 16];
    let slots = match engine {
        Engine::Sqlite => &SQLITE,
        Engine::Postgres => &POSTGRES,
    };
    // `rows` is a power of two below 2^16 (a statement holds at most 65,535 binds).
    let i = rows.ilog2() as usize;
    slots[i.min(15)].get_or_init(|| insert_sql(engine, rows))
}

/// The column naming the owner `group` sums per: a key or a user.
fn owner_column(group: UsageGroup) -> Result<&'static str, StoreError> {
    match group {
        UsageGroup::Key => Ok("key_id"),
        UsageGroup::User => Ok("user_id"),
        UsageGroup::Day | UsageGroup::Model => {
            Err(StoreError::Invalid("tokens and spend are summed per key or per user".into()))
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// A bound value of a filter condition.
enum Arg<'a> {
    Text(&'a str),
    Int(i64),
}

/// The filter as `(condition, value)` pairs, so the SQL and its binds come from one list.
fn conditions<'a>(f: &UsageFilter<'a>) -> Vec<(&'static str, Arg<'a>)> {
    let mut out = Vec::new();
    if let Some(u) = f.user_id {
        out.push(("user_id =", Arg::Text(u)));
    }
    if let Some(k) = f.key_id {
        out.push(("key_id =", Arg::Text(k)));
    }
    if let Some(from) = f.from_ms {
        out.push(("at >=", Arg::Int(from)));
    }
    if let Some(to) = f.to_ms {
        out.push(("at <", Arg::Int(to)));
    }
    out
}

/// ` WHERE a = $1 AND …` (empty without conditions).
fn where_sql(conds: &[(&str, Arg<'_>)]) -> String {
    if conds.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = conds.iter().enumerate().map(|(i, (c, _))| format!("{c} ${}", i + 1)).collect();
    format!(" WHERE {}", parts.join(" AND "))
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments<'q>>,
    conds: Vec<(&'static str, Arg<'q>)>,
) -> Query<'q, Any, AnyArguments<'q>> {
    for (_, arg) in conds {
        q = match arg {
            Arg::Text(t) => q.bind(t),
            Arg::Int(i) => q.bind(i),
        };
    }
    q
}

/// `YYYY-MM-DD` of a day number since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn day_string(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn row_to_record(row: &sqlx::any::AnyRow) -> Result<UsageRecord, sqlx::Error> {
    Ok(UsageRecord {
        at: row.try_get("at")?,
        user_id: row.try_get("user_id")?,
        key_id: row.try_get("key_id")?,
        model: row.try_get("model")?,
        backend: row.try_get("backend")?,
        dialect: row.try_get("dialect")?,
        prompt_tokens: to_u64(row.try_get("prompt_tokens")?),
        completion_tokens: to_u64(row.try_get("completion_tokens")?),
        cached: row.try_get::<i64, _>("cached_int")? != 0,
        ttft_ms: row.try_get::<Option<i64>, _>("ttft_ms")?.map(to_u64),
        duration_ms: to_u64(row.try_get("duration_ms")?),
        status: u16::try_from(row.try_get::<i64, _>("status")?).unwrap_or(0),
        spend: row.try_get("spend")?,
    })
}

impl Store {
    /// Writes `records` in one transaction, as few multi-row INSERTs as the engine's
    /// bind-variable limit allows (one for batches up to 2,520 rows on SQLite).
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        let pool = self.open().await?;
        let rows_per_statement = max_binds(self.engine()) / COLUMN_COUNT;
        let mut tx = pool.begin().await?;
        let mut rest = records;
        for rows in statement_rows(records.len(), rows_per_statement) {
            let (chunk, tail) = rest.split_at(rows);
            rest = tail;
            let mut q = sqlx::query(cached_insert_sql(self.engine(), rows));
            for r in chunk {
                q = q
                    .bind(r.at)
                    .bind(r.user_id.as_deref())
                    .bind(r.key_id.as_deref())
                    .bind(r.model.as_str())
                    .bind(r.backend.as_str())
                    .bind(r.dialect.as_str())
                    .bind(to_i64(r.prompt_tokens))
                    .bind(to_i64(r.completion_tokens))
                    .bind(r.cached)
                    .bind(r.ttft_ms.map(to_i64))
                    .bind(to_i64(r.duration_ms))
                    .bind(i32::from(r.status))
                    .bind(r.spend);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Totals per `group` of the records `filter` selects, ordered by group.
    pub async fn usage_summary(
        &self,
        filter: &UsageFilter<'_>,
        group: UsageGroup,
    ) -> Result<Vec<UsageRow>, StoreError> {
        let pool = self.open().await?;
        let key = match group {
            // Integer division: the day number, formatted below (same SQL on both engines).
            UsageGroup::Day => "CAST(at / 86400000 AS BIGINT)",
            UsageGroup::Model => "model",
            UsageGroup::Key => "key_id",
            UsageGroup::User => "user_id",
        };
        let conds = conditions(filter);
        // Postgres sums BIGINT into NUMERIC, which the Any driver cannot decode: cast back.
        let sql = format!(
            "SELECT {key} AS grp, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(CASE WHEN cached THEN 1 ELSE 0 END) AS BIGINT) AS cached, \
             SUM(spend) AS spend FROM usage_records{} GROUP BY {key} ORDER BY {key}",
            where_sql(&conds)
        );
        let rows = bind_all(sqlx::query(&sql), conds).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let group = match group {
                UsageGroup::Day => Some(day_string(row.try_get::<i64, _>("grp")?)),
                _ => row.try_get::<Option<String>, _>("grp")?,
            };
            out.push(UsageRow {
                group,
                requests: to_u64(row.try_get("requests")?),
                prompt_tokens: to_u64(row.try_get("prompt_tokens")?),
                completion_tokens: to_u64(row.try_get("completion_tokens")?),
                cached: to_u64(row.try_get("cached")?),
                spend: row.try_get("spend")?,
            });
        }
        Ok(out)
    }

    /// Totals per UTC day and `split` (model, key or user) of the records `filter`
    /// selects: the series of a stacked chart. Ordered by day, then group.
    pub async fn usage_series(
        &self,
        filter: &UsageFilter<'_>,
        split: UsageGroup,
    ) -> Result<Vec<UsageSeriesRow>, StoreError> {
        let pool = self.open().await?;
        let key = match split {
            UsageGroup::Model => "model",
            UsageGroup::Key => "key_id",
            UsageGroup::User => "user_id",
            UsageGroup::Day => {
                return Err(StoreError::Invalid("a series splits days by model, key or user".into()));
            }
        };
        let conds = conditions(filter);
        let sql = format!(
            "SELECT CAST(at / 86400000 AS BIGINT) AS day, {key} AS grp, COUNT(*) AS requests, \
             CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
             CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens, \
             CAST(SUM(CASE WHEN cached THEN 1 ELSE 0 END) AS BIGINT) AS cached, \
             SUM(spend) AS spend FROM usage_records{} \
             GROUP BY CAST(at / 86400000 AS BIGINT), {key} ORDER BY day, {key} IS NULL, {key}",
            where_sql(&conds)
        );
        let rows = bind_all(sqlx::query(&sql), conds).fetch_all(pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(UsageSeriesRow {
                day: day_string(row.try_get::<i64, _>("day")?),
                group: row.try_get::<Option<String>, _>("grp")?,
                requests: to_u64(row.try_get("requests")?),
                prompt_tokens: to_u64(row.try_get("prompt_tokens")?),
                completion_tokens: to_u64(row.try_get("completion_tokens")?),
                cached: to_u64(row.try_get("cached")?),
                spend: row.try_get("spend")?,
            });
        }
        Ok(out)
    }

    /// Up to `limit` records `filter` selects, oldest first (for CSV export).
    pub async fn usage_records(
        &self,
        filter: &UsageFilter<'_>,
        limit: u32,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let pool = self.open().await?;
        let conds = conditions(filter);
        let sql = format!(
            "SELECT at, user_id, key_id, model, backend, dialect, prompt_tokens, completion_tokens, \
             CASE WHEN cached THEN 1 ELSE 0 END AS cached_int, ttft_ms, duration_ms, status, spend \
             FROM usage_records{} \
             ORDER BY at, id LIMIT ${}",
            where_sql(&conds),
            conds.len() + 1
        );
        let rows = bind_all(sqlx::query(&sql), conds).bind(i64::from(limit)).fetch_all(pool).await?;
        Ok(rows.iter().map(row_to_record).collect::<Result<_, _>>()?)
    }

    /// Prompt plus completion tokens of every key or user (by `group`:
    /// [`UsageGroup::Key`] or [`UsageGroup::User`]) since `since_ms`, in one grouped
    /// query (quotas after a restart: one query for all keys, not one per key). Owners
    /// without records are left out.
    pub async fn tokens_since_by(
        &self,
        group: UsageGroup,
        since_ms: i64,
    ) -> Result<std::collections::HashMap<String, u64>, StoreError> {
        let column = owner_column(group)?;
        let pool = self.open().await?;
        let sql = format!(
            "SELECT {column} AS owner, CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT) AS tokens \
             FROM usage_records WHERE at >= $1 AND {column} IS NOT NULL GROUP BY {column}"
        );
        let rows = sqlx::query(&sql).bind(since_ms).fetch_all(pool).await?;
        rows.iter()
            .map(|r| Ok((r.try_get("owner")?, to_u64(r.try_get("tokens")?))))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Spend (micro-dollars) of every key or user (by `group`: [`UsageGroup::Key`] or
    /// [`UsageGroup::User`]) since `since_ms`, for budgets after a restart or from other
    /// replicas. Owners without spend are left out.
    pub async fn spend_since(
        &self,
        group: UsageGroup,
        since_ms: i64,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let column = owner_column(group)?;
        let pool = self.open().await?;
        let sql = format!(
            "SELECT {column} AS owner, SUM(spend) AS spend FROM usage_records \
             WHERE at >= $1 AND {column} IS NOT NULL AND spend > 0 GROUP BY {column}"
        );
        let rows = sqlx::query(&sql).bind(since_ms).fetch_all(pool).await?;
        rows.iter()
            .map(|r| {
                let spend: f64 = r.try_get("spend")?;
                Ok((r.try_get("owner")?, sluice_protocol::budget::usd_to_micros(spend)))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Deletes records older than `before_ms` (retention); returns how many.
    pub async fn delete_usage_before(&self, before_ms: i64) -> Result<u64, StoreError> {
        let pool = self.open().await?;
        let done =
            sqlx::query("DELETE FROM usage_records WHERE at < $1").bind(before_ms).execute(pool).await?;
        Ok(done.rows_affected())
    }
}

/// The first instant of the UTC day `at_ms` falls in (for callers building day ranges).
pub fn day_start_ms(at_ms: i64) -> i64 {
    at_ms.div_euclid(MS_PER_DAY) * MS_PER_DAY
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_format_as_utc_dates() {
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(day_string(59), "1970-03-01");
        assert_eq!(day_string(11_016), "2000-02-29");
        // 2026-12-01 00:00:00 UTC is 1_796_083_200 s.
        assert_eq!(day_string(1_796_083_200 / 86_400), "2026-12-01");
        assert_eq!(day_start_ms(1_796_083_200_000 + 5), 1_796_083_200_000);
    }

    #[test]
    fn inserts_number_postgres_binds_and_leave_sqlite_ones_anonymous() {
        let pg = insert_sql(Engine::Postgres, 2);
        assert!(pg.ends_with("($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13), ($14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)"), "{pg}");
        let lite = insert_sql(Engine::Sqlite, 2);
        assert_eq!(lite.matches('?').count(), 26);
        assert!(!lite.contains('$'));
    }

    #[test]
    fn batches_split_into_few_statement_sizes() {
        let sizes = |n, max| statement_rows(n, max).collect::<Vec<_>>();
        assert_eq!(sizes(0, 2520), Vec::<usize>::new());
        assert_eq!(sizes(512, 2520), [512]);
        assert_eq!(sizes(300, 2520), [256, 32, 8, 4]);
        assert_eq!(sizes(4096, 2520), [2048, 2048]);
        assert_eq!(sizes(5000, 2520), [2048, 2048, 512, 256, 128, 8]);
        assert_eq!(sizes(3, 1), [1, 1, 1]);
        // Every size up to the biggest batch: each row once, at most a dozen SQL texts.
        let mut seen = std::collections::BTreeSet::new();
        for n in 0..=4096 {
            let s = sizes(n, 2520);
            assert_eq!(s.iter().sum::<usize>(), n);
            seen.extend(s);
        }
        assert_eq!(seen.len(), 12, "{seen:?}");
        assert_eq!(cached_insert_sql(Engine::Sqlite, 4), insert_sql(Engine::Sqlite, 4));
    }

    #[test]
    fn filter_sql_and_binds_come_from_one_list() {
        let f = UsageFilter { user_id: Some("u"), key_id: None, from_ms: Some(1), to_ms: Some(2) };
        assert_eq!(where_sql(&conditions(&f)), " WHERE user_id = $1 AND at >= $2 AND at < $3");
        assert_eq!(where_sql(&conditions(&UsageFilter::default())), "");
    }
}
