//! CSV for `/v1/usage`: a header row, then one row per group or record (RFC 4180
//! quoting). Text cells that a spreadsheet would run as a formula get a leading `'`.

use std::fmt::Write as _;

use sluice_store::{UsageRecord, UsageRow, UsageSeriesRow};

/// One text cell, quoted when it must be and defused when it starts like a formula.
fn cell(out: &mut String, text: &str) {
    let defused;
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        defused = format!("'{text}");
        defused.as_str()
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&text.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(text);
    }
}

/// Groups as CSV; the first column is named after the grouping.
pub fn groups(group_by: &str, rows: &[UsageRow]) -> String {
    let mut out = format!("{group_by},requests,prompt_tokens,completion_tokens,cached,spend\n");
    for r in rows {
        cell(&mut out, r.group.as_deref().unwrap_or(""));
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            ",{},{},{},{},{}",
            r.requests, r.prompt_tokens, r.completion_tokens, r.cached, r.spend
        );
    }
    out
}

/// A day series as CSV: `day`, then the split (`model`, `key` or `user`), then totals.
pub fn series(split: &str, rows: &[UsageSeriesRow]) -> String {
    let mut out = format!("day,{split},requests,prompt_tokens,completion_tokens,cached,spend\n");
    for r in rows {
        out.push_str(&r.day);
        out.push(',');
        cell(&mut out, r.group.as_deref().unwrap_or(""));
        let _ = writeln!(
            out,
            ",{},{},{},{},{}",
            r.requests, r.prompt_tokens, r.completion_tokens, r.cached, r.spend
        );
    }
    out
}

/// Records as CSV, `at` formatted by `time`.
pub fn records(records: &[UsageRecord], time: impl Fn(i64) -> String) -> String {
    let mut out = String::from(
        "at,user_id,key_id,model,backend,dialect,prompt_tokens,completion_tokens,cached,ttft_ms,duration_ms,status,spend\n",
    );
    for r in records {
        out.push_str(&time(r.at));
        for text in [
            r.user_id.as_deref().unwrap_or(""),
            r.key_id.as_deref().unwrap_or(""),
            &r.model,
            &r.backend,
            &r.dialect,
        ] {
            out.push(',');
            cell(&mut out, text);
        }
        let ttft = r.ttft_ms.map(|t| t.to_string()).unwrap_or_default();
        let _ = writeln!(
            out,
            ",{},{},{},{ttft},{},{},{}",
            r.prompt_tokens, r.completion_tokens, r.cached, r.duration_ms, r.status, r.spend
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_and_formulas_defused() {
        let rows = [
            UsageRow {
                group: Some("a,\"b\"".into()),
                requests: 2,
                prompt_tokens: 3,
                completion_tokens: 4,
                cached: 1,
                spend: 0.5,
            },
            UsageRow {
                group: Some("=HYPERLINK()".into()),
                requests: 1,
                prompt_tokens: 0,
                completion_tokens: 0,
                cached: 0,
                spend: 0.0,
            },
            UsageRow {
                group: None,
                requests: 1,
                prompt_tokens: 0,
                completion_tokens: 0,
                cached: 0,
                spend: 0.0,
            },
        ];
        assert_eq!(
            groups("model", &rows),
            "model,requests,prompt_tokens,completion_tokens,cached,spend\n\"a,\"\"b\"\"\",2,3,4,1,0.5\n'=HYPERLINK(),1,0,0,0,0\n,1,0,0,0,0\n"
        );
    }
}
