//! Authentication: who a request acts for.
//!
//! Keys are stored only as SHA-256 hashes. Keys are high-entropy random strings, so a
//! fast hash is the right tool (as for GitHub or Stripe tokens); passwords, which are
//! not, get argon2id in the store.
//!
//! # Layout
//! - this file: service keys from the configuration, reading a presented key.
//! - [`directory`]: users and their keys in memory, reloaded on change; sessions.
//! - [`gate`]: the rules that turn a request into a [`Principal`] or a refusal.
//! - [`throttle`]: login attempts per account and per client address.

pub mod directory;
pub mod gate;
pub mod throttle;

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The accepted keys.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    hashes: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// From hex hashes (already validated by the configuration).
    pub fn from_hashes(hex_hashes: &[String]) -> Self {
        let hashes = hex_hashes
            .iter()
            .filter_map(|h| hex::decode(h).ok())
            .filter_map(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
            .collect();
        ApiKeys { hashes }
    }

    /// True when no service key is configured.
    pub fn is_open(&self) -> bool {
        self.hashes.is_empty()
    }

    /// True when `key` is one of the accepted keys.
    pub fn accepts(&self, key: &str) -> bool {
        self.accepts_hash(&Sha256::digest(key.as_bytes()).into())
    }

    /// True when `h` is the hash of an accepted key. Compares with every hash, without
    /// stopping early, so timing reveals nothing.
    pub fn accepts_hash(&self, h: &[u8; 32]) -> bool {
        self.hashes.iter().fold(0u8, |ok, stored| ok | stored.ct_eq(h).unwrap_u8()) == 1
    }
}

/// The key a request presents in `Authorization: Bearer` or `x-api-key`, if any.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

/// Hex SHA-256 of a key, as stored in `auth.api_key_sha256`.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// SHA-256 of a key, as the directory indexes it.
pub fn key_digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// A new random key (`sk-sluice-` and 32 random bytes, hex).
pub fn generate_key() -> String {
    sluice_store::api_keys::generate_key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let k = generate_key();
        assert!(k.starts_with("sk-sluice-") && k.len() == 10 + 64, "{k}");
        let keys = ApiKeys::from_hashes(&[hash_key(&k), hash_key("other")]);
        assert!(keys.accepts(&k));
        assert!(keys.accepts("other"));
        assert!(!keys.accepts("nope"));
        assert!(!keys.is_open() && ApiKeys::default().is_open());
    }

    #[test]
    fn keys_come_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", "sk-a".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-a"));
        h.insert("authorization", "Bearer sk-b ".parse().unwrap());
        assert_eq!(presented_key(&h), Some("sk-b"));
    }
}
