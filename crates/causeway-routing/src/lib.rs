//! Where a request goes. Pure: the session hands in what the client sent,
//! its own state and a snapshot of the topology, and gets back a server
//! index. No sockets, no locks, so every decision is unit-testable.
//!
//! This first policy sends everything to the primary; the read/write
//! splitting policy plugs into the same [`Policy`] trait.

pub mod balance;
pub mod classify;
mod decision;
pub mod health;
pub mod lag;
pub mod lsn;
mod policy;
mod topology;

pub use classify::{
    statement_count, CausewayCommand, Class, Classified, Classifier, Hazard, Hint, Isolation,
    RouteOverride, TxnControl,
};
pub use decision::{Decision, Reason};
pub use policy::{Policy, PrimaryOnly, Request, SessionView};
pub use topology::{Role, ServerState, Topology};
