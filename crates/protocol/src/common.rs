//! Small shapes shared by both dialects.

use serde::{Deserialize, Deserializer, Serialize};

/// Deserializes an optional 32-bit float, refusing a number too large for one: it
/// would become infinity, which JSON cannot carry on (it is written as `null`), so the
/// value a client or the gateway sent would silently change on its way.
pub fn finite_f32<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(wide) => {
            #[allow(clippy::cast_possible_truncation)] // checked just below
            let narrow = wide as f32;
            if narrow.is_finite() {
                Ok(Some(narrow))
            } else {
                Err(serde::de::Error::custom(format!("{wide:e} is out of range for a 32-bit float")))
            }
        }
    }
}

/// A value that clients may send either as one string or as a list of strings
/// (OpenAI `stop`, `input`, `prompt`; Ollama `input`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single string.
    One(String),
    /// A list of strings.
    Many(Vec<String>),
}

impl OneOrMany {
    /// All strings, in order.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }

    /// Number of strings held.
    pub fn len(&self) -> usize {
        match self {
            OneOrMany::One(_) => 1,
            OneOrMany::Many(v) => v.len(),
        }
    }

    /// True when it holds no string at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for OneOrMany {
    fn default() -> Self {
        OneOrMany::Many(Vec::new())
    }
}

/// A string borrowed from the input when it has no escapes, owned otherwise.
///
/// Serde only borrows a `Cow<str>` field directly, not inside an `Option`; this newtype
/// borrows wherever it sits, which keeps token parsing free of copies.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Text<'a>(#[serde(borrow)] pub std::borrow::Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}
