//! Where a request goes. Pure: the session hands in what the client sent,
//! its own state and a snapshot of the topology, and gets back a server
//! index. No sockets, no locks, so every decision is unit-testable.
//!
//! [`ReadWrite`] sends writes to the primary and spreads reads over the
//! replicas by a [`balance::Strategy`].

pub mod balance;
pub mod classify;
mod decision;
pub mod health;
pub mod lag;
pub mod lsn;
mod request;
mod split;
pub mod token;
mod topology;

pub use classify::{
    statement_count, CausewayCommand, Class, Classified, Classifier, Hazard, Hint, Isolation,
    RouteOverride, TxnControl,
};
pub use decision::{Decision, Reason, StaleCause};
pub use request::{Intent, Request, SessionView};
pub use split::{PrimaryReads, ReadWrite, SplitConfig};
pub use token::{Generation, Token, TokenError};
pub use topology::{Role, ServerState, Topology};
