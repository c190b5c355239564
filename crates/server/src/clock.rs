//! The wall clock, read in one place: unix milliseconds for stored rows (usage records,
//! retention cut-offs, quota periods). Deadlines use Tokio's clock instead.

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    let ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis();
    i64::try_from(ms).unwrap_or(i64::MAX)
}
