//! Server connections and pools.
//!
//! A [`Pool`] holds the connections of one (database, user, server) triple.
//! Clients wait in FIFO order; a released connection goes straight to the
//! oldest waiter. Every open connection owns a slot of its pool (and of the
//! database's and user's limits); dropping the connection frees the slot, so
//! a broken connection can never be counted twice or returned by mistake.

mod cancel;
mod error;
mod expiry;
mod handoff;
mod info;
mod internal;
mod limits;
mod liveness;
mod params;
mod pool;
mod scram_keys;
mod server;
mod settings;
mod slot;
mod statements;

pub use cancel::{forward_cancel, CancelTarget};
pub use error::{PoolError, ServerError};
pub use info::{unix_micros, ServerInfo, ServerState};
pub use internal::InternalReply;
pub use limits::Limit;
pub use params::ParamSet;
pub use pool::{PinGuard, Pool, PoolKey, PoolSnapshot};
pub use server::{Login, ServerConn};
pub use settings::{PoolSettings, DEFAULT_INTERNAL_TIMEOUT as INTERNAL_QUERY_TIMEOUT};
pub use statements::StatementCache;
