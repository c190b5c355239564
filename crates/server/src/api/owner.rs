//! Who owns the data a request reads or writes: the one place mapping a request's
//! [`Principal`] to an [`Owner`] (conversations are stored under [`Owner::id`]; usage
//! records are attributed by `user_id = Owner::id`). Every conversation, usage and
//! retention handler goes through [`owner`], so a new kind of principal is one more
//! arm here.

use sluice_core::context::{Principal, RequestContext};

use super::data_error::DataError;

/// The owner of stored data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The id conversations and usage records are stored under.
    pub id: String,
    /// May see everyone's usage and change retention.
    pub admin: bool,
}

/// The id of the implicit admin of keyless single-user mode.
pub const LOCAL: &str = "local";

/// The owner a request acts for; `None` when it has no identity to own data with.
///
/// Keyless mode (`Anonymous` today) is the implicit admin `local`; a configured
/// service key is an admin named `service:` plus the first 8 bytes of its hash, in hex
/// (stable across restarts, and not the key).
pub fn owner(ctx: &RequestContext) -> Option<Owner> {
    match ctx.principal {
        Principal::Anonymous => Some(Owner { id: LOCAL.to_owned(), admin: true }),
        Principal::ServiceKey(hash) => {
            Some(Owner { id: format!("service:{}", hex::encode(&hash[..8])), admin: true })
        }
    }
}

/// The owner, or the 401 asking the client to sign in.
pub fn signed_in(ctx: &RequestContext) -> Result<Owner, DataError> {
    owner(ctx).ok_or(DataError::SignIn)
}

/// The owner if an admin, else the 403 naming what needs the role.
pub fn admin(ctx: &RequestContext, what: &str) -> Result<Owner, DataError> {
    let owner = signed_in(ctx)?;
    if owner.admin { Ok(owner) } else { Err(DataError::Forbidden(format!("{what} requires the admin role"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_keys_own_data_under_their_hash_prefix() {
        let ctx = RequestContext::new("r", Principal::ServiceKey([0xab; 32]), 0);
        assert_eq!(owner(&ctx), Some(Owner { id: "service:abababababababab".into(), admin: true }));
        let local = RequestContext::new("r", Principal::Anonymous, 0);
        assert_eq!(owner(&local), Some(Owner { id: "local".into(), admin: true }));
    }
}
