//! The field table (`docs/fields.md`) covers every field of every OpenAI, Ollama and
//! Responses API wire type: a field added to a type without a row fails here, as does a row naming a
//! type that does not exist or an unmodeled field of a type that cannot carry it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

/// Field names (serde's, after `rename`) of every `pub struct` in a source file.
fn structs(source: &str) -> BTreeMap<String, Vec<String>> {
    let code = source.split("#[cfg(test)]").next().unwrap_or(source);
    let mut out = BTreeMap::new();
    let mut current: Option<(String, Vec<String>)> = None;
    let mut rename: Option<String> = None;
    for line in code.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("pub struct ") {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            current = Some((name, Vec::new()));
        } else if t == "}" && line.starts_with('}') {
            if let Some((name, fields)) = current.take() {
                out.insert(name, fields);
            }
        } else if let Some((_, fields)) = current.as_mut() {
            if let Some(r) = t.split("rename = \"").nth(1) {
                rename = r.split('"').next().map(str::to_owned);
            }
            if let Some(f) = t.strip_prefix("pub ").and_then(|f| f.split(':').next()) {
                fields.push(rename.take().unwrap_or_else(|| f.to_owned()));
            }
        }
    }
    out
}

/// `(dialect, type, field)` → what Sluice does, from the table's rows.
fn table() -> BTreeMap<(String, String, String), String> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/fields.md")).unwrap();
    doc.lines()
        .filter(|l| ["| openai |", "| ollama |", "| responses |"].iter().any(|d| l.starts_with(d)))
        .map(|l| {
            let cells: Vec<&str> = l.split(" | ").map(|c| c.trim_matches(|c| c == '|' || c == ' ')).collect();
            let field = cells[2].trim_matches('`').to_owned();
            ((cells[0].to_owned(), cells[1].to_owned(), field), cells[3].to_owned())
        })
        .collect()
}

#[test]
fn every_field_of_every_wire_type_has_a_row() {
    let sources = [
        ("openai", include_str!("../src/openai.rs")),
        ("ollama", include_str!("../src/ollama.rs")),
        ("responses", include_str!("../src/responses.rs")),
    ];
    let rows = table();
    let mut missing = Vec::new();
    let mut known = BTreeSet::new();
    for (dialect, source) in sources {
        for (name, fields) in structs(source) {
            known.insert((dialect.to_owned(), name.clone()));
            for field in fields {
                if !rows.contains_key(&(dialect.to_owned(), name.clone(), field.clone())) {
                    missing.push(format!("| {dialect} | {name} | `{field}` | ... |"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "docs/fields.md has no row for:\n{}", missing.join("\n"));
    let all =
        sources.iter().flat_map(|(d, s)| structs(s).into_iter().map(move |(n, f)| ((d.to_string(), n), f)));
    let fields: BTreeMap<(String, String), Vec<String>> = all.collect();
    for ((dialect, ty, field), what) in &rows {
        let key = (dialect.clone(), ty.clone());
        assert!(known.contains(&key), "docs/fields.md names {dialect} type {ty}, which does not exist");
        let own = &fields[&key];
        // A documented field the type does not model must be carried (`extra`) or ignored.
        let ok = own.contains(field) || own.iter().any(|f| f == "extra") || what.starts_with("ignored");
        assert!(ok, "{dialect} {ty}.{field}: not a field, and {ty} neither carries nor ignores it");
    }
}
