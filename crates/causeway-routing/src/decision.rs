//! What the policy answers.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// This policy routes everything to the primary.
    PrimaryOnly,
    /// The session is pinned (session pool mode, open transaction...).
    Pinned,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Server {
        index: usize,
        reason: Reason,
    },
    /// No server can take the request; the client gets this error.
    Refuse {
        sqlstate: &'static str,
        message: String,
    },
}
