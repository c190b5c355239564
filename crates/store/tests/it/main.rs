//! `sluice-store` against real databases: SQLite (a file in a temp dir) and the
//! Postgres at `SLUICE_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/test`),
//! each Postgres test in a schema of its own, dropped at the end.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns: a panic is a failed test

mod conversations;
mod db;
mod first_admin;
mod responses;
mod timeouts;
mod usage;
mod usage_writer;
