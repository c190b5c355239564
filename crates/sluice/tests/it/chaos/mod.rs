//! Chaos: real processes (`sluice serve`, `sluice agent`, `sluice-mock`, a private
//! `redis-server` and Postgres cluster on free ports) killed, signalled or cut off
//! while clients stream. Each test shows that a client always gets a complete answer
//! or an explicit error event, and that the gateway recovers. See docs/security.md.

mod faults;
mod harness;
mod postgres;
mod shutdown;
mod stores;
