//! The `/metrics` text: counters kept outside the Prometheus registry (usage writer,
//! limiter, per-key counts) are written into the registry's exposition here, before
//! its closing `# EOF`.

/// `text` (a whole exposition, ending in `# EOF`) with what `add` writes inserted
/// before that line.
pub fn append(mut text: String, add: impl FnOnce(&mut String)) -> String {
    let eof = text.rfind("# EOF").unwrap_or(text.len());
    let tail = text.split_off(eof);
    add(&mut text);
    text.push_str(&tail);
    text
}
