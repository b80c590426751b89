//! Causeway's client-facing engine, below the binary (main, cli, signals,
//! listener wiring) and above the pool, routing, monitor and protocol crates.
//!
//! Data flows one way: a client's bytes reach a [`session`] (startup,
//! authentication, then a small state machine), which routes each unit of
//! work over a live database ([`databases`]: servers, pools, topology),
//! leases a server connection and pumps frames both ways. The admin console
//! ([`admin`]) is its own stream type over the same application state
//! ([`app`]).

pub mod admin;
pub mod app;
mod bufpool;
pub mod cancel;
mod client;
pub mod clients;
pub mod connection;
pub mod credentials;
pub mod databases;
mod login_slots;
pub mod metrics;
mod peers;
mod recycled;
pub mod secrets;
pub mod security;
pub mod session;
pub mod wake;
