//! Users: name, role (admin or not), argon2id password, disabled flag.
//!
//! Passwords are hashed and verified on the blocking pool (argon2id with the default
//! parameters takes tens of milliseconds of CPU). Verifying an unknown name still
//! runs one verification, against a dummy hash, so timing does not tell which names
//! exist. Every change also bumps the auth version and, on Postgres, notifies
//! `sluice_auth` in the same transaction (see [`crate::changes`]).

use std::{
    sync::LazyLock,
    time::{SystemTime, UNIX_EPOCH},
};

use argon2::{
    Argon2,
    password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sluice_protocol::budget::{Budget, BudgetMode};
use sqlx::{Any, Row as _, Transaction};

use super::{Store, StoreError};

/// A stored user (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    /// Stable id.
    pub id: String,
    /// Unique login name.
    pub name: String,
    /// True for the admin role.
    pub admin: bool,
    /// A disabled user's keys and sessions stop working.
    pub disabled: bool,
    /// The user's monthly spend budget, all keys and sessions together.
    pub budget: Option<Budget>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

/// Unix seconds now.
pub(crate) fn now() -> i64 {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// Hex SHA-256 of a secret.
pub(crate) fn sha256_hex(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random id (16 hex digits).
pub(crate) fn new_id() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

const USER_COLUMNS: &str =
    "id, name, role, disabled, created_at, updated_at, monthly_budget_micros, budget_mode";

/// The budget kept in a row's `monthly_budget_micros` and `budget_mode` columns.
pub(crate) fn budget_from_row(row: &sqlx::any::AnyRow) -> Result<Option<Budget>, sqlx::Error> {
    let micros: Option<i64> = row.try_get("monthly_budget_micros")?;
    let mode: Option<String> = row.try_get("budget_mode")?;
    Ok(micros.map(|m| Budget {
        monthly_micros: u64::try_from(m).unwrap_or(0),
        mode: mode.as_deref().and_then(BudgetMode::parse).unwrap_or(BudgetMode::Hard),
    }))
}

/// A budget as the two columns store it.
pub(crate) fn budget_columns(budget: Option<Budget>) -> (Option<i64>, Option<&'static str>) {
    match budget {
        Some(b) => (Some(i64::try_from(b.monthly_micros).unwrap_or(i64::MAX)), Some(b.mode.as_str())),
        None => (None, None),
    }
}

fn row_to_user(row: &sqlx::any::AnyRow) -> Result<User, sqlx::Error> {
    let role: String = row.try_get("role")?;
    let disabled: i64 = row.try_get("disabled")?;
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        admin: role == "admin",
        disabled: disabled != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        budget: budget_from_row(row)?,
    })
}

fn role(admin: bool) -> &'static str {
    if admin { "admin" } else { "user" }
}

/// A user column [`Store::update_user`] changes.
enum Field {
    Disabled(bool),
    Admin(bool),
    Password(String),
}

/// Checks a new user name: 1–64 characters, no whitespace or control characters.
fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty()
        || name.chars().count() > 64
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(StoreError::Invalid(
            "a user name has 1 to 64 characters, without spaces or control characters".into(),
        ));
    }
    Ok(())
}

/// Checks a new password: at least 8 characters.
fn check_password(password: &str) -> Result<(), StoreError> {
    if password.chars().count() < 8 {
        return Err(StoreError::Invalid("a password has at least 8 characters".into()));
    }
    Ok(())
}

/// Hashes `password` with argon2id on the blocking pool.
async fn hash_password(password: &str) -> Result<String, StoreError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
            .map_err(|e| StoreError::Invalid(format!("salt: {e}")))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| StoreError::Invalid(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| StoreError::Invalid(format!("password hashing task failed: {e}")))?
}

/// A hash of a random password, verified against when the name is unknown.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::encode_b64(&[0u8; 16]).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(&rand::random::<[u8; 16]>(), &salt)
        .map(|h| h.to_string())
        .expect("argon2 with default parameters hashes any input")
});

/// True when `password` matches the PHC string `stored`, on the blocking pool.
async fn verify(password: &str, stored: String) -> bool {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&stored)
            .is_ok_and(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
    })
    .await
    .unwrap_or(false)
}

impl Store {
    /// Creates a user; the name must be new.
    pub async fn create_user(&self, name: &str, password: &str, admin: bool) -> Result<User, StoreError> {
        check_name(name)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let pool = self.open().await?;
        let at = now();
        let user = User {
            id: new_id(),
            name: name.to_owned(),
            admin,
            disabled: false,
            created_at: at,
            updated_at: at,
            budget: None,
        };
        let mut tx = pool.begin().await?;
        let taken =
            sqlx::query("SELECT id FROM users WHERE name = $1").bind(name).fetch_optional(&mut *tx).await?;
        if taken.is_some() {
            return Err(StoreError::Exists(format!("a user named '{name}' exists")));
        }
        sqlx::query(
            "INSERT INTO users (id, name, role, password_hash, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(role(admin))
        .bind(&hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        self.auth_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(user)
    }

    /// Creates the first user, an admin, only while no user and no API key exists;
    /// `None` when one does. Race-safe: the transaction first bumps the auth version,
    /// which serializes concurrent callers (a row lock on Postgres, the write lock on
    /// SQLite), so the emptiness check and the insert see every committed user.
    pub async fn create_first_admin(&self, name: &str, password: &str) -> Result<Option<User>, StoreError> {
        check_name(name)?;
        check_password(password)?;
        let hash = hash_password(password).await?;
        let pool = self.open().await?;
        let mut tx = pool.begin().await?;
        self.auth_changed(&mut tx).await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1) u) \
                  + (SELECT COUNT(*) FROM (SELECT 1 FROM api_keys LIMIT 1) k) AS n",
        )
        .fetch_one(&mut *tx)
        .await?;
        let n: i64 = row.try_get("n")?;
        if n > 0 {
            // Dropping `tx` rolls the version bump back.
            return Ok(None);
        }
        let at = now();
        let user = User {
            id: new_id(),
            name: name.to_owned(),
            admin: true,
            disabled: false,
            created_at: at,
            updated_at: at,
            budget: None,
        };
        sqlx::query(
            "INSERT INTO users (id, name, role, password_hash, disabled, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, 0, $5, $5)",
        )
        .bind(&user.id)
        .bind(&user.name)
        .bind(role(true))
        .bind(&hash)
        .bind(at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(user))
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let pool = self.open().await?;
        let rows =
            sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name")).fetch_all(pool).await?;
        Ok(rows.iter().map(row_to_user).collect::<Result<_, _>>()?)
    }

    /// The user with id `id`.
    pub async fn get_user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
            .bind(id)
            .fetch_optional(pool)
            .await?;
        Ok(row.as_ref().map(row_to_user).transpose()?)
    }

    /// The user named `name`.
    pub async fn user_by_name(&self, name: &str) -> Result<Option<User>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(pool)
            .await?;
        Ok(row.as_ref().map(row_to_user).transpose()?)
    }

    /// Disables or enables a user; false when no user has this id.
    pub async fn set_user_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
        self.update_user(id, Field::Disabled(disabled)).await
    }

    /// Makes a user an admin or a plain user; false when no user has this id.
    pub async fn set_user_admin(&self, id: &str, admin: bool) -> Result<bool, StoreError> {
        self.update_user(id, Field::Admin(admin)).await
    }

    /// Replaces a user's password; false when no user has this id.
    pub async fn set_password(&self, id: &str, password: &str) -> Result<bool, StoreError> {
        check_password(password)?;
        let hash = hash_password(password).await?;
        self.update_user(id, Field::Password(hash)).await
    }

    /// Sets or clears a user's monthly spend budget; false when no user has this id.
    pub async fn set_user_budget(&self, id: &str, budget: Option<Budget>) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let mut tx = pool.begin().await?;
        let (micros, mode) = budget_columns(budget);
        let done = sqlx::query(
            "UPDATE users SET monthly_budget_micros = $1, budget_mode = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(micros)
        .bind(mode)
        .bind(now())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.auth_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn update_user(&self, id: &str, field: Field) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let mut tx = pool.begin().await?;
        let (sql, at) = ("UPDATE users SET {} = $1, updated_at = $2 WHERE id = $3", now());
        let done = match field {
            Field::Disabled(d) => {
                sqlx::query(&sql.replace("{}", "disabled"))
                    .bind(i64::from(d))
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
            }
            Field::Admin(a) => {
                sqlx::query(&sql.replace("{}", "role"))
                    .bind(role(a))
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
            }
            Field::Password(h) => {
                sqlx::query(&sql.replace("{}", "password_hash"))
                    .bind(h)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?
            }
        };
        self.auth_changed(&mut tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// The enabled user named `name` if `password` is theirs. Unknown names, wrong
    /// passwords and disabled users all give `None`, after the same amount of work.
    pub async fn verify_password(&self, name: &str, password: &str) -> Result<Option<User>, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1"))
            .bind(name)
            .fetch_optional(pool)
            .await?;
        let Some(row) = row else {
            verify(password, DUMMY_HASH.clone()).await;
            return Ok(None);
        };
        let user = row_to_user(&row)?;
        let ok = verify(password, row.try_get("password_hash")?).await;
        Ok((ok && !user.disabled).then_some(user))
    }

    /// True when any user or API key exists (revoked keys included): keyless mode is
    /// over once this is true.
    pub async fn any_credential_exists(&self) -> Result<bool, StoreError> {
        let pool = self.open().await?;
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM (SELECT 1 FROM users LIMIT 1) u) \
                  + (SELECT COUNT(*) FROM (SELECT 1 FROM api_keys LIMIT 1) k) AS n",
        )
        .fetch_one(pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        Ok(n > 0)
    }

    /// Records an auth change inside `tx`: bumps the version a file watcher reads, and
    /// on Postgres notifies `sluice_auth` (delivered when `tx` commits).
    pub(crate) async fn auth_changed(&self, tx: &mut Transaction<'_, Any>) -> Result<(), StoreError> {
        sqlx::query("UPDATE auth_version SET version = version + 1 WHERE id = 1").execute(&mut **tx).await?;
        if self.is_postgres() {
            sqlx::query(&format!("NOTIFY {}", crate::changes::CHANNEL)).execute(&mut **tx).await?;
        }
        Ok(())
    }
}
