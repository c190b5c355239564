//! API-key authentication. Keys are stored only as SHA-256 hashes; a presented key is
//! hashed and compared against every stored hash in constant time.
//!
//! Keys are high-entropy random strings, so a fast hash is the right tool here (as for
//! GitHub or Stripe tokens); passwords, which are not, get argon2id elsewhere.

use http::HeaderMap;
use sha2::{Digest, Sha256};
use sluice_core::context::Principal;
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

    /// True when no key is configured: every request is let through.
    pub fn is_open(&self) -> bool {
        self.hashes.is_empty()
    }

    /// True when `key` is one of the accepted keys.
    pub fn accepts(&self, key: &str) -> bool {
        self.accepts_hash(&Sha256::digest(key.as_bytes()).into())
    }

    fn accepts_hash(&self, h: &[u8; 32]) -> bool {
        // Compare with every hash, without stopping early, so timing reveals nothing.
        self.hashes.iter().fold(0u8, |ok, stored| ok | stored.ct_eq(h).unwrap_u8()) == 1
    }

    /// Checks the request's `Authorization: Bearer` or `x-api-key` header and says
    /// who is asking: anonymous while no key is configured, else the key's principal.
    pub fn check(&self, headers: &HeaderMap) -> Result<Principal, &'static str> {
        if self.is_open() {
            return Ok(Principal::Anonymous);
        }
        match presented_key(headers) {
            None => Err("missing API key: send 'Authorization: Bearer <key>'"),
            Some(k) => {
                let h: [u8; 32] = Sha256::digest(k.as_bytes()).into();
                if self.accepts_hash(&h) { Ok(Principal::ServiceKey(h)) } else { Err("invalid API key") }
            }
        }
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

/// A new random key (`sk-sluice-` and 32 random bytes, hex).
pub fn generate_key() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("sk-sluice-{}", hex::encode(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_configured_keys() {
        let k = generate_key();
        let keys = ApiKeys::from_hashes(&[hash_key(&k), hash_key("other")]);
        assert!(keys.accepts(&k));
        assert!(keys.accepts("other"));
        assert!(!keys.accepts("nope"));
        let mut h = HeaderMap::new();
        assert!(keys.check(&h).is_err());
        h.insert("authorization", format!("Bearer {k}").parse().unwrap());
        assert_eq!(keys.check(&h), Ok(Principal::ServiceKey(Sha256::digest(k.as_bytes()).into())));
        h.insert("authorization", "Bearer wrong".parse().unwrap());
        assert_eq!(keys.check(&h), Err("invalid API key"));
    }

    #[test]
    fn no_keys_means_open() {
        assert_eq!(ApiKeys::default().check(&HeaderMap::new()), Ok(Principal::Anonymous));
    }
}
