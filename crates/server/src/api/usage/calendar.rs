//! UTC calendar arithmetic for `/v1/usage`: parsing `from`/`to` (RFC 3339 or
//! `YYYY-MM-DD`) into unix milliseconds and formatting instants back, without a date
//! library (Howard Hinnant's civil-date algorithms). Also [`now_ms`], the wall clock
//! the usage report and retention measure ages against.

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day number since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `digits` ASCII digits as a number.
fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The day number of `YYYY-MM-DD`.
fn parse_date(s: &str) -> Option<i64> {
    let (y, rest) = s.split_at_checked(4)?;
    let (m, d) = rest.strip_prefix('-')?.split_once('-')?;
    let (year, month, day) = (i64::from(num(y)?), num(m)?, num(d)?);
    if m.len() != 2 || d.len() != 2 || !(1..=12).contains(&month) {
        return None;
    }
    (1..=days_in_month(year, month)).contains(&day).then(|| days_from_civil(year, month, day))
}

/// Unix ms of `YYYY-MM-DD` (its first instant, or with `day_end` the first instant of
/// the next day, so `to=2026-11-30` covers that whole day) or of an RFC 3339 time
/// (`2026-11-30T12:00:00Z`, `…+01:00`, fractions allowed). A `+` offset decoded from a
/// query string as a space is read as `+`.
pub fn parse_time(s: &str, day_end: bool) -> Option<i64> {
    let s = s.trim_start();
    if s.len() == 10 {
        return Some((parse_date(s)? + i64::from(day_end)) * MS_PER_DAY);
    }
    let days = parse_date(s.get(..10)?)?;
    let rest = s.get(10..)?.strip_prefix(['T', 't', ' '])?;
    let (h, rest) = rest.split_at_checked(2)?;
    let (mi, rest) = rest.strip_prefix(':')?.split_at_checked(2)?;
    let (sec, mut rest) = rest.strip_prefix(':')?.split_at_checked(2)?;
    let (h, mi, sec) = (num(h)?, num(mi)?, num(sec)?);
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut ms = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = i64::from(num(&padded)?);
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' | b' ' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (oh, om) = rest.get(1..)?.split_once(':')?;
            if oh.len() != 2 || om.len() != 2 || num(oh)? > 23 || num(om)? > 59 {
                return None;
            }
            sign * i64::from(num(oh)? * 60 + num(om)?)
        }
    };
    let secs = i64::from(h * 3600 + mi * 60 + sec.min(59)) - offset_min * 60;
    Some(days * MS_PER_DAY + secs * 1000 + ms)
}

pub use crate::clock::now_ms;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of unix ms.
pub fn rfc3339(ms: i64) -> String {
    let (days, in_day) = (ms.div_euclid(MS_PER_DAY), ms.rem_euclid(MS_PER_DAY));
    let (y, m, d) = civil_from_days(days);
    let (s, milli) = (in_day / 1000, in_day % 1000);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{milli:03}Z", s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2026-11-30T00:00:00Z.
    const NOV30: i64 = 1_796_083_200_000 - MS_PER_DAY;

    #[test]
    fn dates_and_times_parse_in_utc() {
        assert_eq!(parse_time("1970-01-01", false), Some(0));
        assert_eq!(parse_time("2026-11-30", false), Some(NOV30));
        assert_eq!(parse_time("2026-11-30", true), Some(NOV30 + MS_PER_DAY));
        assert_eq!(parse_time("2026-11-30T01:02:03Z", false), Some(NOV30 + 3_723_000));
        assert_eq!(parse_time("2026-11-30T01:02:03.5Z", false), Some(NOV30 + 3_723_500));
        assert_eq!(parse_time("2026-11-30T01:02:03+01:00", false), Some(NOV30 + 123_000));
        assert_eq!(parse_time("2026-11-30T01:02:03 01:00", false), Some(NOV30 + 123_000));
        assert_eq!(parse_time("2026-11-30T00:00:00-00:30", false), Some(NOV30 + 1_800_000));
        assert_eq!(parse_time("2000-02-29", false), Some(days_from_civil(2000, 2, 29) * MS_PER_DAY));
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-29",
            "2026-1-01",
            "2026-11-30T25:00:00Z",
            "2026-11-30T10:00:00",
            "2026-11-30T10:00:00.Z",
            "2026-11-30T10:00Z",
            "1700000000",
        ] {
            assert_eq!(parse_time(bad, false), None, "{bad}");
        }
    }

    #[test]
    fn formatting_round_trips() {
        for ms in [0, NOV30 + 3_723_456, -MS_PER_DAY + 1, 951_782_400_000] {
            assert_eq!(parse_time(&rfc3339(ms), false), Some(ms), "{}", rfc3339(ms));
        }
        assert_eq!(rfc3339(NOV30 + 3_723_456), "2026-11-30T01:02:03.456Z");
        assert_eq!(civil_from_days(days_from_civil(1999, 12, 31)), (1999, 12, 31));
    }
}
