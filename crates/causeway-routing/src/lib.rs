//! Where a request goes. Pure: the session hands in what the client sent,
//! its own state and a snapshot of the topology, and gets back a server
//! index. No sockets, no locks, so every decision is unit-testable.
//!
//! [`PrimaryOnly`] is PgBouncer's behaviour; [`ReadWrite`] splits reads
//! over replicas. Both implement [`Policy`].

pub mod balance;
pub mod classify;
mod decision;
pub mod health;
pub mod lag;
pub mod lsn;
mod policy;
mod split;
pub mod token;
mod topology;

pub use classify::{
    statement_count, CausewayCommand, Class, Classified, Classifier, Hazard, Hint, Isolation,
    RouteOverride, TxnControl,
};
pub use decision::{Decision, Reason, StaleCause};
pub use policy::{Intent, Policy, PrimaryOnly, Request, SessionView};
pub use split::{PrimaryReads, ReadWrite, SplitConfig};
pub use token::{Generation, Token, TokenError};
pub use topology::{Role, ServerState, Topology};
