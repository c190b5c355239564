//! Who owns the data a request reads or writes: the one place mapping a request's
//! [`Principal`] to an [`Owner`] (conversations are stored under [`Owner::id`]; its
//! usage records are found as [`Owner::records`] says, which must agree with how
//! `tenancy::usage_owner` attributes them). Every conversation, usage and retention
//! handler goes through [`owner`], so a new kind of principal is one more arm here.

use sluice_core::context::{Principal, RequestContext, Role};

use super::data_error::DataError;

/// The owner of stored data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The id conversations and usage records are stored under.
    pub id: String,
    /// May see everyone's usage and change retention.
    pub admin: bool,
    /// Which usage records are its own.
    pub records: OwnRecords,
}

/// Which usage records are an owner's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnRecords {
    /// Those whose `user_id` is the owner's id (signed-in users).
    ByUserId,
    /// Those whose `key_id` is the owner's id (service keys).
    ByKeyId,
    /// Every record: keyless mode has one person, and its records name no user or key.
    Every,
}

/// The id of the implicit admin of keyless single-user mode.
pub const LOCAL: &str = "local";

/// The owner a request acts for; `None` when it has no identity to own data with.
///
/// Keyless mode is the implicit admin `local`; a configured service key is an admin
/// named `service:` plus the first 8 bytes of its hash, in hex (stable across restarts,
/// and not the key); a user is their user id, by session or by any of their keys; an
/// anonymous caller (`auth.allow_anonymous`) has nothing to own data with.
pub fn owner(ctx: &RequestContext) -> Option<Owner> {
    match &ctx.principal {
        Principal::Local => Some(Owner { id: LOCAL.to_owned(), admin: true, records: OwnRecords::Every }),
        Principal::Anonymous(_) => None,
        Principal::ServiceKey(hash) => Some(Owner {
            id: format!("service:{}", hex::encode(&hash[..8])),
            admin: true,
            records: OwnRecords::ByKeyId,
        }),
        Principal::User(u) => Some(Owner {
            id: u.user_id.to_string(),
            admin: u.role == Role::Admin,
            records: OwnRecords::ByUserId,
        }),
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
        let want = Owner { id: "service:abababababababab".into(), admin: true, records: OwnRecords::ByKeyId };
        assert_eq!(owner(&ctx), Some(want));
        let anonymous = RequestContext::new("r", Principal::Anonymous([127, 0, 0, 1].into()), 0);
        assert_eq!(owner(&anonymous), None, "anonymous callers own nothing");
        let local = RequestContext::new("r", Principal::Local, 0);
        assert_eq!(
            owner(&local),
            Some(Owner { id: "local".into(), admin: true, records: OwnRecords::Every })
        );
    }
}
