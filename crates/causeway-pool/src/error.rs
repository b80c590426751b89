use causeway_protocol::sqlstate;

/// Why a server connection failed or was dropped.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServerError {
    #[error("could not connect to server {addr}: {reason}")]
    Connect { addr: String, reason: String },
    /// The server refused the login (wrong password, no such database...):
    /// shown to the client as the server said it.
    #[error("{message}")]
    Login { code: String, message: String },
    /// The server answered a query of Causeway's with an error.
    #[error("server error {code}: {message}")]
    Query { code: String, message: String },
    #[error("server connection lost: {0}")]
    Io(String),
    #[error("server protocol error: {0}")]
    Protocol(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
}

impl ServerError {
    /// The SQLSTATE a client should see for this failure.
    pub fn sqlstate(&self) -> &str {
        match self {
            ServerError::Login { code, .. } | ServerError::Query { code, .. } => code,
            _ => sqlstate::CONNECTION_FAILURE,
        }
    }

    /// Failures that new attempts would only make worse (nothing listens,
    /// or the server is too slow to answer): further logins fail fast for
    /// `server_login_retry`. A refused login (3D000 no such database,
    /// 28P01 wrong password, ...) is not among them: it is the client's to
    /// see, as the server said it, and may be fixed any second (`CREATE
    /// DATABASE`), so each client's login is tried.
    pub fn throttles(&self) -> bool {
        matches!(self, ServerError::Connect { .. } | ServerError::Timeout(_))
    }
}

impl From<std::io::Error> for ServerError {
    fn from(e: std::io::Error) -> Self {
        ServerError::Io(e.to_string())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum PoolError {
    #[error("query_wait_timeout")]
    WaitTimeout,
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("server login has been failing, try again later (server_login_retry): {0}")]
    LoginRetry(ServerError),
    #[error("pool is closed")]
    Closed,
}

impl PoolError {
    pub fn sqlstate(&self) -> &str {
        match self {
            PoolError::WaitTimeout => sqlstate::PROTOCOL_VIOLATION,
            PoolError::Server(e) | PoolError::LoginRetry(e) => e.sqlstate(),
            PoolError::Closed => sqlstate::ADMIN_SHUTDOWN,
        }
    }
}
