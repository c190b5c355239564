//! Structured output: a JSON schema (or "any JSON object") compiled into a token-level
//! constraint that runs inside the sequence's llama.cpp sampler chain, so every sampled
//! token keeps the output a valid prefix of a matching document.
//!
//! The constraint is llguidance's (the structured-output engine llama.cpp itself can
//! build with): it takes JSON Schema directly, refuses what it cannot enforce with an
//! error instead of ignoring it, and computes a token mask in tens of microseconds.
//! The tokenizer tables it needs are built from the model's vocabulary once per
//! loaded model, on the first constrained request.

use std::sync::{Arc, OnceLock};

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llguidance::api::{ParserLimits, TopLevelGrammar};
use llguidance::{JsonCompileOptions, Matcher, ParserFactory};

use crate::{EngineError, OutputFormat, ToolSchema};

/// Whitespace allowed between JSON tokens: some, so the model may write JSON the way
/// it learnt to, but bounded, so a sampled run of spaces cannot fill `max_tokens`.
const WHITESPACE: &str = r"[\x20\x0A\x0D\x09]{1,24}";

/// The per-model grammar compiler, made on first use.
#[derive(Default)]
pub(crate) struct Grammars {
    factory: OnceLock<Result<Arc<ParserFactory>, String>>,
}

impl std::fmt::Debug for Grammars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grammars").field("ready", &self.factory.get().is_some()).finish()
    }
}

/// A compiled constraint for one sequence, ready to join its sampler chain.
/// Boxed: a matcher is large, and it travels inside every queued request.
pub(crate) struct Constraint(Box<Matcher>);

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Constraint")
    }
}

impl Constraint {
    /// The llama.cpp sampler that masks every token the constraint does not allow.
    pub(crate) fn into_sampler(self) -> LlamaSampler {
        LlamaSampler::from(*self.0)
    }
}

impl Grammars {
    /// Compiles `format` for `model`. Costs CPU (the first call per model walks the
    /// vocabulary): call it off the async runtime's threads.
    pub(crate) fn compile(
        &self,
        model: &LlamaModel,
        format: &OutputFormat,
    ) -> Result<Constraint, EngineError> {
        let factory =
            self.factory.get_or_init(|| new_factory(model).map(Arc::new)).as_ref().map_err(|cause| {
                EngineError::Load(format!("the structured-output compiler failed: {cause}"))
            })?;
        let grammar = match format {
            OutputFormat::ToolCall(tools) => TopLevelGrammar::from_lark(tool_call_grammar(tools)),
            _ => TopLevelGrammar::from_json_schema(schema_with_options(format)),
        };
        let parser = factory.create_parser(grammar).map_err(|err| invalid(&err.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        match matcher.get_error() {
            Some(err) => Err(invalid(&err)),
            None => Ok(Constraint(Box::new(matcher))),
        }
    }
}

fn new_factory(model: &LlamaModel) -> Result<ParserFactory, String> {
    let env = LlamaSampler::llguidance_tok_env(model);
    let mut factory = ParserFactory::new_simple(&env).map_err(|err| err.to_string())?;
    factory.quiet();
    // Errors go back to the client: keep them to the point, without the grammar dump.
    *factory.limits_mut() = ParserLimits { verbose_errors: false, ..ParserLimits::default() };
    Ok(factory)
}

/// The tag that opens a tool call in the Hermes/Qwen convention.
pub const TOOL_CALL_OPEN: &str = "<tool_call>";
/// The tag that closes it.
pub const TOOL_CALL_CLOSE: &str = "</tool_call>";

/// The llguidance (Lark) grammar of exactly one tool call in the Hermes/Qwen
/// convention: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, where
/// the JSON is one of `tools` (an `anyOf` of `{name: const, arguments: schema}`
/// objects, the name first), its arguments matching that function's schema.
pub fn tool_call_grammar(tools: &[ToolSchema]) -> String {
    let calls: Vec<serde_json::Value> = tools
        .iter()
        .map(|tool| {
            let mut arguments =
                tool.parameters.clone().unwrap_or_else(|| serde_json::json!({"type": "object"}));
            close_objects(&mut arguments, false);
            serde_json::json!({
                "type": "object",
                "properties": { "name": { "const": tool.name }, "arguments": arguments },
                "required": ["name", "arguments"],
                "additionalProperties": false,
            })
        })
        .collect();
    let schema = with_options(serde_json::json!({ "anyOf": calls }));
    format!("start: \"{TOOL_CALL_OPEN}\\n\" call \"\\n{TOOL_CALL_CLOSE}\"\ncall: %json {schema}\n")
}

/// The schema to enforce, with the compile options Sluice uses; options a client put
/// in the schema (`x-guidance`) are replaced.
fn schema_with_options(format: &OutputFormat) -> serde_json::Value {
    let schema = match format {
        OutputFormat::Json | OutputFormat::ToolCall(_) => serde_json::json!({ "type": "object" }),
        // `true` is the schema that allows anything.
        OutputFormat::JsonSchema(serde_json::Value::Bool(true)) => serde_json::json!({}),
        OutputFormat::JsonSchema(schema) => {
            let mut schema = schema.clone();
            close_objects(&mut schema, false);
            schema
        }
    };
    with_options(schema)
}

/// `schema` with Sluice's compile options in its `x-guidance`.
fn with_options(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(object) = schema.as_object_mut() {
        let options = JsonCompileOptions {
            whitespace_pattern: Some(WHITESPACE.to_owned()),
            ..JsonCompileOptions::default()
        };
        object.insert(
            "x-guidance".to_owned(),
            serde_json::to_value(&options).unwrap_or(serde_json::Value::Null),
        );
    }
    schema
}

/// Subschema keywords whose value is one schema.
const ONE: &[&str] = &[
    "items",
    "additionalProperties",
    "additionalItems",
    "contains",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
];
/// Subschema keywords whose value is a list of schemas.
const LIST: &[&str] = &["anyOf", "oneOf", "prefixItems", "items"];
/// Subschema keywords whose value maps names to schemas.
const MAP: &[&str] = &["properties", "patternProperties", "$defs", "definitions", "dependentSchemas"];

/// Gives every object schema that lists `properties` and says nothing of other keys
/// `additionalProperties: false`, as llama.cpp's converter (and so Ollama) does: a small
/// model otherwise goes on inventing keys until `max_tokens` cuts the document. The
/// direct members of an `allOf` are left open, or their intersection could not have
/// the keys of more than one of them.
fn close_objects(schema: &mut serde_json::Value, in_all_of: bool) {
    let Some(object) = schema.as_object_mut() else { return };
    let open = !object.contains_key("additionalProperties")
        && !object.contains_key("unevaluatedProperties")
        && !object.contains_key("patternProperties");
    if !in_all_of && open && object.get("properties").is_some_and(serde_json::Value::is_object) {
        object.insert("additionalProperties".to_owned(), serde_json::Value::Bool(false));
    }
    for (key, value) in object.iter_mut() {
        let key = key.as_str();
        if key == "allOf" {
            for member in value.as_array_mut().into_iter().flatten() {
                close_objects(member, true);
            }
        } else if MAP.contains(&key) {
            for sub in value.as_object_mut().into_iter().flat_map(|m| m.values_mut()) {
                close_objects(sub, false);
            }
        } else if LIST.contains(&key) && value.is_array() {
            for sub in value.as_array_mut().into_iter().flatten() {
                close_objects(sub, false);
            }
        } else if ONE.contains(&key) {
            close_objects(value, false);
        }
    }
}

fn invalid(cause: &str) -> EngineError {
    // llguidance prefixes some errors with its own context lines; the first line says it.
    let first = cause.lines().find(|line| !line.trim().is_empty()).unwrap_or(cause);
    EngineError::InvalidSchema(first.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_replace_the_clients() {
        let schema = serde_json::json!({ "type": "string", "x-guidance": { "lenient": true } });
        let with = schema_with_options(&OutputFormat::JsonSchema(schema));
        assert_eq!(with["x-guidance"]["lenient"], false);
        assert_eq!(with["x-guidance"]["whitespace_pattern"], WHITESPACE);
        assert_eq!(schema_with_options(&OutputFormat::Json)["type"], "object");
    }

    #[test]
    fn objects_with_properties_are_closed_unless_they_say_otherwise() {
        let mut schema = serde_json::json!({
            "type": "object",
            "properties": {
                "properties": {"type": "object", "properties": {"x": {"type": "integer"}}},
                "open": {"type": "object", "properties": {}, "additionalProperties": true},
                "list": {"type": "array", "items": {"properties": {"y": {}}}},
                "any": {"type": "object"},
                "both": {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}
            },
            "$defs": {"d": {"anyOf": [{"properties": {"z": {}}}, {"const": {"properties": {}}}]}}
        });
        close_objects(&mut schema, false);
        let props = &schema["properties"];
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(props["properties"]["additionalProperties"], false);
        assert!(props["properties"]["properties"].get("additionalProperties").is_none(), "a property name");
        assert_eq!(props["open"]["additionalProperties"], true);
        assert_eq!(props["list"]["items"]["additionalProperties"], false);
        assert!(props["any"].get("additionalProperties").is_none(), "no properties: any object");
        assert!(props["both"]["allOf"][0].get("additionalProperties").is_none());
        assert_eq!(schema["$defs"]["d"]["anyOf"][0]["additionalProperties"], false);
        assert!(schema["$defs"]["d"]["anyOf"][1]["const"].get("additionalProperties").is_none(), "a value");
    }

    #[test]
    fn tool_call_grammar_wraps_one_call_per_tool_in_the_tags() {
        let tools = [
            ToolSchema {
                name: "get_weather".into(),
                parameters: Some(
                    serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
                ),
            },
            ToolSchema { name: "now".into(), parameters: None },
        ];
        let lark = tool_call_grammar(&tools);
        assert!(
            lark.starts_with("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\ncall: %json {"),
            "{lark}"
        );
        let json = lark.split_once("%json ").unwrap().1;
        let schema: serde_json::Value = serde_json::from_str(json).unwrap();
        let first = &schema["anyOf"][0];
        assert_eq!(first["properties"]["name"]["const"], "get_weather");
        assert_eq!(first["properties"]["arguments"]["additionalProperties"], false, "closed as for schemas");
        let keys: Vec<&String> = first["properties"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "arguments"], "the name comes first");
        assert_eq!(schema["anyOf"][1]["properties"]["arguments"]["type"], "object");
        assert_eq!(schema["x-guidance"]["whitespace_pattern"], WHITESPACE);
    }

    #[test]
    fn invalid_keeps_the_first_line() {
        let err = invalid("\nUnknown type: strin\nat /properties/a");
        assert_eq!(err, EngineError::InvalidSchema("Unknown type: strin".into()));
    }
}
