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

/// Appends every backend's own values (in-process engines), one family per name with
/// a `model` label per backend.
pub fn with_backend_metrics(text: String, metrics: &[sluice_core::backend::BackendMetric]) -> String {
    use std::fmt::Write as _;
    if metrics.is_empty() {
        return text;
    }
    let mut names: Vec<&'static str> = Vec::new();
    for m in metrics {
        if !names.contains(&m.name) {
            names.push(m.name);
        }
    }
    append(text, |out| {
        for name in names {
            let family: Vec<_> = metrics.iter().filter(|m| m.name == name).collect();
            let first = family[0];
            let kind = if first.counter { "counter" } else { "gauge" };
            let suffix = if first.counter { "_total" } else { "" };
            // Writing into a String cannot fail.
            let _ = write!(out, "# HELP {name} {}\n# TYPE {name} {kind}\n", first.help);
            for m in family {
                let _ = writeln!(out, "{name}{suffix}{{model=\"{}\"}} {}", label_value(&m.model), m.value);
            }
        }
    })
}

/// A label value escaped as the exposition format asks (backslash, quote, newline).
fn label_value(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::backend::BackendMetric;

    #[test]
    fn backend_metrics_are_grouped_by_family_before_eof() {
        let metric = |name, counter, model: &str, value| BackendMetric {
            name,
            help: "Help.",
            counter,
            model: model.to_owned(),
            value,
        };
        let text = with_backend_metrics(
            "a 1\n# EOF\n".to_owned(),
            &[
                metric("x_hits", true, "m1", 3),
                metric("x_bytes", false, "m1", 10),
                metric("x_hits", true, "m\"2", 4),
            ],
        );
        assert_eq!(
            text,
            "a 1\n# HELP x_hits Help.\n# TYPE x_hits counter\nx_hits_total{model=\"m1\"} 3\n\
             x_hits_total{model=\"m\\\"2\"} 4\n# HELP x_bytes Help.\n# TYPE x_bytes gauge\nx_bytes{model=\"m1\"} 10\n# EOF\n"
        );
    }
}
