//! How an attachment's flow ends, and why a held read is run elsewhere.

use causeway_protocol::ProtocolError;

#[derive(Debug)]
pub enum End {
    /// The transaction is over and the pool mode lets the server go.
    Release,
    /// Terminate received or the client socket closed.
    ClientGone,
    /// The server socket failed. `clean`: the client is at a message
    /// boundary, so an ErrorResponse can still be sent.
    ServerGone {
        clean: bool,
    },
    ClientProtocol(ProtocolError),
    ServerProtocol(ProtocolError),
    /// A configured timeout fired: (SQLSTATE, message).
    Timeout(&'static str, &'static str),
    /// statement pool mode: the client opened a transaction block.
    StatementModeTxn,
    /// The server failed a held read before any of its reply reached the
    /// client (rows still held are dropped); the unit is still at the front
    /// of the client buffer.
    /// `reusable`: the server finished the unit cleanly (back to the pool).
    Retry {
        cause: RetryCause,
        reusable: bool,
    },
    /// RESET / DISCARD ALL ran and the server is idle: its ReadyForQuery
    /// waits at the front of the server buffer while the session puts the
    /// client's startup values back (see reset.rs); then the flow goes on.
    Restore,
    /// KILL or shutdown while attached: (SQLSTATE, message, log reason).
    Interrupted(&'static str, &'static str, &'static str),
}

/// Why a held read is run again elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryCause {
    /// 25006: the replica refused it as a write. Retried on the primary.
    ReadOnly,
    /// 40001 / 40P01: cancelled by a recovery conflict.
    Conflict,
    /// Shut down (57P01-57P03) or the connection was lost.
    Failure,
}

/// The retry an ErrorResponse from a replica calls for, if any.
pub(super) fn retry_cause(code: &str) -> Option<RetryCause> {
    match code {
        "25006" => Some(RetryCause::ReadOnly),
        "40001" | "40P01" => Some(RetryCause::Conflict),
        "57P01" | "57P02" | "57P03" => Some(RetryCause::Failure),
        _ => None,
    }
}
